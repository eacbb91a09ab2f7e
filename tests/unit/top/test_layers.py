"""The folders are the architecture (DESIGN.md section 5), checked on the source itself.

Layers, lowest first: dns (pure) < etcd, net (siblings that never import each other) < ops <
register < the top (cli, config, app, api). A module imports only its own layer and lower
ones, at module level or inside a function alike; and a module over 500 lines says why in
its docstring.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[3] / "dnsdisco"
RANK = {"dns": 0, "etcd": 1, "net": 1, "ops": 2, "register": 3}
TOP = 4


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in RANK:
        return parts[1], RANK[parts[1]]
    return "top", TOP


def _imports(path: Path) -> set[str]:
    """Every dnsdisco module `path` imports, wherever the import statement is."""
    here = _name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("dnsdisco"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("dnsdisco"):
                found.add(base)
                for alias in node.names:         # `from dnsdisco.net import tsig` imports a module
                    candidate = f"{base}.{alias.name}"
                    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists():
                        found.add(candidate)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_no_module_imports_a_higher_layer(path):
    here, rank = _layer(_name(path))
    wrong = []
    for target in sorted(_imports(path)):
        if target == "dnsdisco":
            continue                         # the package root: its version and lazy API names
        there, other = _layer(target)
        if other > rank or (other == rank and rank == 1 and there != here):
            wrong.append(target)
    assert not wrong, f"{_name(path)} ({here}) imports {wrong}: a lower layer never imports a higher one"


def test_the_walker_finds_imports_inside_functions():
    """The walker finds imports made inside functions (run_serve imports its parts there), so the
    layer test above sees every import a module makes."""
    module = PACKAGE / "dns" / "names.py"
    found = _imports(module)
    assert all(name.startswith("dnsdisco.dns") or name == "dnsdisco" for name in found)
    app = _imports(PACKAGE / "app.py")
    assert "dnsdisco.dns.responder" in app and "dnsdisco.net.listeners" in app   # imported inside run_serve


@pytest.mark.parametrize("path", _modules(), ids=lambda p: _name(p))
def test_a_long_module_says_why(path):
    lines = path.read_text().count("\n")
    if lines <= 500:
        return
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert "500 lines" in doc, f"{_name(path)} has {lines} lines and its docstring does not say why"
