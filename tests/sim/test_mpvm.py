"""The MicroPython VM host (tapcash.sim.vm.mpvm) itself: exec, files, reset, .mpy, measuring."""

import os
import textwrap
from pathlib import Path

import pytest

from tapcash.sim.vm.mpvm import (
    MicroPythonError,
    MicroPythonVM,
    MicroPythonVMError,
    ensure_vm_installed,
    portable_test_names,
)


def test_runs_micropython_1_27(mpvm: MicroPythonVM) -> None:
    assert mpvm.version() == "1.27.0"
    assert mpvm.eval_json("__import__('sys').implementation.name") == "micropython"


def test_exec_returns_console_output(mpvm: MicroPythonVM) -> None:
    out = mpvm.exec("import sys\nprint('a', 1)\nsys.stdout.write('b')\nprint('c', file=sys.stderr)")
    assert out == "a 1\nbc\n"


def test_exec_raises_with_vm_traceback(mpvm: MicroPythonVM) -> None:
    with pytest.raises(MicroPythonError) as info:
        mpvm.exec("print('first')\ndef f():\n    raise KeyError('k')\nf()")
    err = info.value
    assert err.exc_type == "KeyError"
    assert err.output == "first\n"
    assert "line 3, in f" in err.traceback
    assert err.traceback.rstrip().endswith("KeyError: k")


def test_syntax_error_and_vm_keeps_working(mpvm: MicroPythonVM) -> None:
    with pytest.raises(MicroPythonError) as info:
        mpvm.exec("def f(:\n    pass")
    assert info.value.exc_type == "SyntaxError"
    assert mpvm.exec("print(6 * 7)") == "42\n"


def test_eval_json(mpvm: MicroPythonVM) -> None:
    assert mpvm.eval_json("{'a': [1, 2**70, None, 'x']}") == {"a": [1, 2**70, None, "x"]}


def test_files_are_binary_safe(mpvm: MicroPythonVM) -> None:
    data = bytes(range(256)) * 3
    mpvm.put_file("/tmp_t/deep/er/blob.bin", data)
    assert mpvm.get_file("/tmp_t/deep/er/blob.bin") == data
    assert mpvm.eval_json("len(open('/tmp_t/deep/er/blob.bin', 'rb').read())") == len(data)
    mpvm.rmtree("/tmp_t")
    with pytest.raises(MicroPythonError):
        mpvm.exec("open('/tmp_t/deep/er/blob.bin', 'rb')")


def test_firmware_installed_as_source(mpvm: MicroPythonVM) -> None:
    assert mpvm.eval_json("__import__('firmware.core.runtime').core.runtime.IS_MICROPYTHON")


def test_firmware_imports_from_mpy(mpvm_compiled: MicroPythonVM) -> None:
    vm = mpvm_compiled
    vm.exec("import firmware.core.runtime")
    files = vm.eval_json(
        "[m.__file__ for k, m in __import__('sys').modules.items() if k.startswith('firmware')]"
    )
    assert files and all(f.endswith(".mpy") for f in files)
    assert any(f.endswith("__init__.mpy") for f in files)


def test_soft_reset_clears_state_keeps_files(mpvm: MicroPythonVM) -> None:
    mpvm.put_file("/keep.txt", b"kept")
    mpvm.exec("x_before_reset = 1\nimport firmware.core.runtime")
    mpvm.soft_reset()
    with pytest.raises(MicroPythonError) as info:
        mpvm.exec("x_before_reset")
    assert info.value.exc_type == "NameError"
    assert mpvm.eval_json("'firmware.core.runtime' in __import__('sys').modules") is False
    assert mpvm.get_file("/keep.txt") == b"kept"
    assert mpvm.eval_json("__import__('firmware.core.runtime').core.runtime.IS_MICROPYTHON")


def test_run_portable_module(mpvm: MicroPythonVM, tmp_path: Path) -> None:
    path = tmp_path / "test_tmp_portable.py"
    path.write_text(
        textwrap.dedent(
            """
            def test_ok():
                assert sum([1, 2]) == 3

            def test_bad():
                assert 1 == 2, "nope"

            def test_takes_fixture(x):
                pass

            def helper():
                pass
            """
        )
    )
    assert portable_test_names(path) == ["test_ok", "test_bad"]
    results = mpvm.run_portable_module(path)
    assert [(name, ok) for name, ok, _ in results] == [("test_ok", True), ("test_bad", False)]
    assert "AssertionError: nope" in results[1][2]
    assert str(path) in results[1][2]
    mpvm.soft_reset()  # the module is copied and imported again after a reset
    assert mpvm.run_portable_module(path)[0] == ("test_ok", True, "")


def test_time_us_and_heap(mpvm: MicroPythonVM) -> None:
    assert mpvm.time_us("sum(range(50))", number=200, repeat=3) > 0
    assert mpvm.heap("pass") == 0
    assert mpvm.heap("b = bytes(1000)") >= 1000
    cost = mpvm.import_heap("firmware.core.runtime")
    assert cost.retained > 0
    assert cost.allocated >= cost.retained - 64


def test_plugin_registers_js_module(tmp_path: Path) -> None:
    plugin = tmp_path / "hw.mjs"
    plugin.write_text(
        "export function setup({ mp, ops }) {\n"
        "  mp.registerJsModule('hw_test', { add: (a, b) => a + b });\n"
        "  ops.echo = (h, payload) => ({ header: { n: payload.length }, payload });\n"
        "}\n"
    )
    with MicroPythonVM(plugins=[plugin]) as vm:
        assert vm.exec("import hw_test\nprint(hw_test.add(2, 3))") == "5\n"
        assert vm.request({"op": "echo"}, b"\x00\xff")[0]["n"] == 2
        vm.soft_reset()
        assert vm.exec("import hw_test\nprint(hw_test.add(1, 1))") == "2\n"


def test_runaway_code_times_out(tmp_path: Path) -> None:
    with MicroPythonVM(timeout_s=1.0) as vm:
        with pytest.raises(MicroPythonVMError, match="no answer"):
            vm.exec("while True:\n    pass")
        assert not vm.running
        with pytest.raises(MicroPythonVMError, match="not running"):
            vm.exec("pass")


def test_install_without_node_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    with pytest.raises(MicroPythonVMError, match="Node.js"):
        ensure_vm_installed(tmp_path / "vm")
    assert os.listdir(tmp_path) == []


def test_call_runs_a_function_without_compiling_code(mpvm: MicroPythonVM) -> None:
    """The bridge's call op: one function of __main__ (or a dotted path from one), one str in,
    its str out; a raise comes back as MicroPythonError with the VM's traceback."""
    mpvm.exec(
        "class _T:\n    def up(self, s):\n        if s == 'x':\n"
        "            raise KeyError(s)\n        return s.upper()\n"
        "_t = _T()\n"
        "def _t_none(s):\n    pass\n"
    )
    assert mpvm.call_serving("_t.up", "ab", lambda r: {}) == "AB"
    assert mpvm.call_serving("_t_none", "", lambda r: {}) == ""
    with pytest.raises(MicroPythonError) as info:
        mpvm.call_serving("_t.up", "x", lambda r: {})
    assert info.value.exc_type == "KeyError" and "in up" in info.value.traceback
    assert mpvm.call_serving("_t.up", "still", lambda r: {}) == "STILL"
