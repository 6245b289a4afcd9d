"""Fold the firmware's integer `const()` names into the code that uses them, for boards.

MicroPython folds `X = const(1)` only inside the module that defines it; everywhere else
`fields.PAY_AMOUNT` is a run-time lookup, and every public constant costs the board a name
(an interned qstr, never freed) and a module dict entry for as long as it runs: about 40 bytes
each on the 64-bit port, some 400 constants in the protocol and state modules. For a board
(`tapcash deploy`, the native port's workspaces in sim/vm/native.py) the sources are folded
before mpy-cross compiles them:

- in every module, `alias.NAME` of a module in `DEFINING` (imported as `from ..core import
  fields`, `from . import state as st`) becomes the literal, as do names imported from one
  (`from .apdu import SW_OK`), and the import goes when nothing else of the module is used;
- in the protocol's modules (`PRIVATE`) the constants themselves become private (`_NAME =
  const(...)`), so the compiler keeps them out of the module entirely, and `fields.py` is
  not even imported on a board any more.

Lines from a `# board: omit` comment to the next `# board: end` are CPython's own (PyNaCl and
hashlib backends, their switches): a board never runs them, so its copy has empty lines there.

Edits are token by token on the same lines (tracebacks keep their line numbers); comments and
strings are untouched. The host, the simulator and the portable tests run the sources as
written; the payment-day replays check the folded board code byte for byte against them.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

# Modules whose integer constants are folded into their users (path under firmware/); those
# in PRIVATE also lose the names themselves. The apps' state modules are private too (#16:
# wallet ROMFS payment-day minimum 55.0 -> 54.2 KB32): nothing on a board or talking to one
# reads a state key by name (provision over the REPL runs process(), the hosts import the
# sources), and each public name was an interned string and a module dict entry.
DEFINING = ("core/apdu.py", "core/fields.py", "wallet/state.py", "pos/state.py")
PRIVATE = DEFINING
# Left as written: the hosts' one namespace of the protocol (it re-exports by name).
KEEP = ("core/proto.py",)


def const_table(text: str) -> dict[str, int]:
    """The module-level `NAME = const(<int literal>)` of a source, public names only."""
    out: dict[str, int] = {}
    for node in ast.parse(text).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target, value = node.targets[0], node.value
        if not (isinstance(target, ast.Name) and isinstance(value, ast.Call)):
            continue
        if getattr(value.func, "id", "") != "const" or target.id.startswith("_"):
            continue
        try:
            v = ast.literal_eval(value.args[0])
        except ValueError:
            continue
        if isinstance(v, int) and not isinstance(v, bool):
            out[target.id] = v
    return out


def _module_of(rel: str, node: ast.ImportFrom, name: str | None) -> str:
    """The firmware path an import names: the module itself (name None: `from .apdu import
    X`, `from ..core.apdu import X`) or its submodule `name` (`from ..core import fields`)."""
    parts = rel.split("/")[:-1]
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    if node.module:
        parts = parts + node.module.split(".")
    if name is not None:
        parts = parts + [name]
    return "/".join(parts) + ".py"


def _edits_apply(text: str, edits: list[tuple[int, int, int, str]]) -> str:
    lines = text.splitlines(keepends=True)
    for row, c0, c1, rep in sorted(edits, reverse=True):
        ln = lines[row - 1]
        lines[row - 1] = ln[:c0] + rep + ln[c1:]
    return "".join(lines)


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    return [
        t
        for t in tokenize.generate_tokens(io.StringIO(text).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT)
    ]


OMIT, END = "# board: omit", "# board: end"


def omit_host_lines(text: str) -> str:
    """`text` with the lines of each `# board: omit` ... `# board: end` block (the markers
    included) made empty, so line numbers stay. A block's markers are comments of their own
    line, at any indentation (inside a function: the lines of a CPython-only branch)."""
    out = []
    omitting = False
    for line in text.splitlines(keepends=True):
        marker = line.lstrip()
        if marker.startswith(OMIT):
            if omitting:
                raise ValueError("# board: omit inside an omitted block")
            omitting = True
        if omitting:
            out.append("\n" if line.endswith("\n") else "")
            if marker.startswith(END):
                omitting = False
        else:
            if marker.startswith(END):
                raise ValueError("# board: end without # board: omit")
            out.append(line)
    if omitting:
        raise ValueError("# board: omit without # board: end")
    return "".join(out)


def fold_source(rel: str, text: str, tables: dict[str, dict[str, int]]) -> str:
    """`text` (firmware/`rel`) with the constants of `tables` ({defining path: table}) folded
    and the host-only lines omitted."""
    if rel in KEEP:
        return text
    text = omit_host_lines(text)
    tree = ast.parse(text)
    aliases: dict[str, dict[str, int]] = {}  # module alias -> its table
    names: dict[str, int] = {}  # constant imported by name -> value
    from_imports: list[tuple[ast.ImportFrom, str]] = []  # (node, defining module)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        whole = _module_of(rel, node, None)
        if whole in tables:
            from_imports.append((node, whole))
            for a in node.names:
                if a.name in tables[whole]:
                    names[a.asname or a.name] = tables[whole][a.name]
            continue
        for a in node.names:
            mod = _module_of(rel, node, a.name)
            if mod in tables and mod != rel:
                aliases[a.asname or a.name] = tables[mod]
    own = tables.get(rel, {}) if rel in PRIVATE else {}
    toks = _tokens(text)
    edits = []
    import_rows = {
        r for n, _ in from_imports for r in range(n.lineno, (n.end_lineno or n.lineno) + 1)
    }
    for i, t in enumerate(toks):
        if t.type != tokenize.NAME:
            continue
        prev = toks[i - 1].string if i else ""
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        if prev == ".":
            continue
        if t.string in aliases and nxt == "." and i + 2 < len(toks):
            attr = toks[i + 2]
            if attr.string in aliases[t.string] and attr.start[0] == t.start[0]:
                value = repr(aliases[t.string][attr.string])
                edits.append((t.start[0], t.start[1], attr.end[1], value))
        elif t.string in names and t.start[0] not in import_rows:
            edits.append((t.start[0], t.start[1], t.end[1], repr(names[t.string])))
        elif t.string in own:
            edits.append((t.start[0], t.start[1], t.end[1], "_" + t.string))
    text = _edits_apply(text, edits)
    return _drop_unused_imports(text, set(aliases), set(names))


def _drop_unused_imports(text: str, aliases: set[str], names: set[str]) -> str:
    """Remove folded names, and module aliases no longer used, from the import lines (a line
    left empty becomes `pass`, so line numbers stay)."""
    used = {
        n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)
    }  # a module alias is used as a Name (alias.attr)
    gone = names | {a for a in aliases if a not in used}
    if not gone:
        return text

    def strip(m: re.Match[str]) -> str:
        indent, head, body = m.group(1), m.group(2), m.group(3)
        paren = body.startswith("(")
        inner = body[1:-1] if paren else body
        kept = []
        for part in inner.split(","):
            name = part.strip()
            if not name:
                continue
            alias = name.split(" as ")[-1].strip()
            if alias not in gone:
                kept.append(name)
        newlines = body.count("\n")
        if not kept:
            return indent + "pass" + "\n" * newlines
        joined = ", ".join(kept)
        return f"{indent}{head} import {joined}" + "\n" * newlines

    return re.sub(r"^([ \t]*)(from [.\w]+) import (\([^)]*\)|[^\n(]+)$", strip, text, flags=re.M)


def fold_tree(src: Path) -> dict[str, str]:
    """{path under firmware/: folded source} for every .py file under `src` (firmware/)."""
    tables = {rel: const_table((src / rel).read_text()) for rel in DEFINING if (src / rel).exists()}
    out = {}
    for path in sorted(src.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(src).as_posix()
        out[rel] = fold_source(rel, path.read_text(), tables)
    return out
