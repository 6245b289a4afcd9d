# Run the top-level test_* functions of portable test modules on the native MicroPython port.
#
#   micropython native_portable.py MODULE [MODULE ...]
#
# Prints "PASS module name" or "FAIL module name" followed by the traceback, one block per
# test, and "DONE" at the end. The modules are found on sys.path (MICROPYPATH).
import gc
import io
import sys

for modname in sys.argv[1:]:
    mod = __import__(modname)
    names = sorted(n for n in dir(mod) if n.startswith("test_"))
    for name in names:
        fn = getattr(mod, name)
        if not callable(fn):
            continue
        try:
            fn()
            print("PASS", modname, name)
        except BaseException as e:  # noqa: B036 - a test's failure of any kind is reported
            buf = io.StringIO()
            sys.print_exception(e, buf)
            print("FAIL", modname, name)
            print(buf.getvalue())
            print("END")
        gc.collect()
    del sys.modules[modname]
print("DONE")
