"""The layers, checked by where a module lives.

The sans-I/O folders (``core/``, ``wire/``, and the tap's decoders: every module of
``tap/`` but ``proxy``) import no networking, so lessons and tests drive them
without sockets; nothing imports in a circle; and no sans-I/O module imports an
I/O folder. A new module is checked by the folder it is put in.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "wsdemo"
SANS_IO_FOLDERS = ["core", "wire", "tap"]
IO_EDGES = {"wsdemo.tap.proxy"}  # the tap's one I/O module: the proxy itself
FORBIDDEN = ["socket", "asyncio", "tornado", "ssl", "selectors", "ipywidgets"]


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(folder: str | None = None) -> list[str]:
    root = PACKAGE if folder is None else PACKAGE / folder
    return sorted(module_name(p) for p in root.rglob("*.py") if p.name != "__main__.py")


SANS_IO = [m for f in SANS_IO_FOLDERS for m in modules(f) if m not in IO_EDGES]


def test_the_sans_io_folders_are_found():
    assert "wsdemo.core.protocol" in SANS_IO and "wsdemo.wire.frames" in SANS_IO
    assert "wsdemo.tap.http" in SANS_IO and "wsdemo.tap.proxy" not in SANS_IO


@pytest.mark.parametrize("module", SANS_IO)
def test_sans_io_module_imports_no_networking(module):
    code = (
        f"import sys, importlib; importlib.import_module({module!r}); "
        f"print(','.join(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"


def imports_of(module: str) -> set[str]:
    """The wsdemo modules that ``module`` names in an import (type-only ones too)."""
    path = PACKAGE.parent.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found.update(n for n in [target, *names] if n in ALL)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in ALL)
    found.discard(module)
    # A package's own __init__ is not an arrow to the package's modules' users.
    return {m for m in found if not module.startswith(m + ".")}


ALL = set(modules())


def test_no_sans_io_module_imports_an_io_one():
    for module in SANS_IO:
        wrong = {m for m in imports_of(module) if m not in SANS_IO and m != "wsdemo"}
        assert not wrong, f"{module} (sans-I/O) imports {sorted(wrong)}"


def test_no_import_circles():
    graph = {m: imports_of(m) for m in ALL}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n] if n in path else [m, n]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
