"""Import layering: dependencies run upward only (DESIGN.md section 2).

* imcc/targets, imcc/ir, imcc/report and imcc/analysis never import imcc.passes, nor the
  drivers imcc.compiler, imcc.sweep and imcc.cli;
* imcc/ir (the bottom layer) never imports imcc.frontend or imcc.targets either.

Every import is found by parsing the source with `ast`: module-level and function-level
(lazy) imports, `import imcc.x.y`, `from imcc.x import y`, `from imcc import x`, relative
imports, and `importlib.import_module("imcc.x")` with a literal name.

`KNOWN_VIOLATIONS` lists the violations present when this test was written; they are being
removed. The test fails on any violation not listed, and on a listed one that no longer
occurs, so the set can only shrink (to empty).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "imcc"

DRIVERS = ("imcc.passes", "imcc.compiler", "imcc.sweep", "imcc.cli")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "imcc.targets": DRIVERS,
    "imcc.report": DRIVERS,
    "imcc.analysis": DRIVERS,
    "imcc.ir": DRIVERS + ("imcc.frontend", "imcc.targets"),
}

# (source file relative to the repository, imported module)
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()  # all three removed by issue 9


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` (the code of `module`) imports, anywhere in the file. For
    `from a import b` both `a` and `a.b` are listed (b may be a submodule)."""
    # The package relative imports resolve against.
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[:-(node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            found.add(node.args[0].value)
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package_dir: Path = PACKAGE, root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, imported module) for every import the layering forbids."""
    out: set[tuple[str, str]] = set()
    for path in sorted(package_dir.rglob("*.py")):
        mod = module_name(path, root)
        rules = [banned for layer, banned in FORBIDDEN.items() if _within(mod, layer)]
        if not rules:
            continue
        imports = imported_modules(path.read_text(), mod, path.name == "__init__.py")
        for banned in rules:
            for name in imports:
                if any(_within(name, b) for b in banned):
                    out.add((path.relative_to(root).as_posix(), name))
    # `from imcc.passes.map import f` yields imcc.passes.map and imcc.passes.map.f (f might
    # be a submodule): name the module, the shortest forbidden name, once.
    return {(f, n) for f, n in out
            if not any(f == f2 and n.startswith(n2 + ".") for f2, n2 in out)}


def test_layering() -> None:
    found = violations()
    new = sorted(found - KNOWN_VIOLATIONS)
    gone = sorted(KNOWN_VIOLATIONS - found)
    problems = [f"{f} imports {n} (a lower layer must not import a higher one)"
                for f, n in new]
    problems += [f"{f} no longer imports {n}: remove it from KNOWN_VIOLATIONS"
                 for f, n in gone]
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the checker itself


@pytest.mark.parametrize("source,module,expected", [
    ("import imcc.passes.map\n", "imcc.targets.emit", {"imcc.passes.map"}),
    ("from imcc.passes.map import node_geometry\n", "imcc.targets.emit",
     {"imcc.passes.map", "imcc.passes.map.node_geometry"}),
    ("from imcc import passes\n", "imcc.targets.emit", {"imcc", "imcc.passes"}),
    ("def f():\n    from imcc.passes.quantize import q\n", "imcc.ir.onnx_export",
     {"imcc.passes.quantize", "imcc.passes.quantize.q"}),
    ("from ..passes import lowrank\n", "imcc.report.build",
     {"imcc.passes", "imcc.passes.lowrank"}),
    ("from . import ops\n", "imcc.ir.graph", {"imcc.ir", "imcc.ir.ops"}),
    ("import importlib\nimportlib.import_module('imcc.cli')\n", "imcc.analysis.budget",
     {"importlib", "imcc.cli"}),
])
def test_imported_modules(source: str, module: str, expected: set[str]) -> None:
    assert imported_modules(source, module) == expected


def test_checker_finds_every_form(tmp_path: Path) -> None:
    pkg = tmp_path / "imcc"
    files = {
        "targets/a.py": "from imcc import passes\n",
        "report/b.py": "def lazy():\n    import imcc.compiler\n",
        "analysis/c.py": "from ..sweep import run\n",
        "ir/d.py": "from imcc.frontend import import_model\nfrom imcc.targets.cost import x\n",
        "ir/__init__.py": "from .d import y\nfrom ..cli import main\n",
        "passes/e.py": "from imcc.compiler import compile_graph\n",  # passes may
        "targets/f.py": "from imcc.ir import Graph\nfrom imcc.targets import cost\n",  # allowed
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    assert violations(pkg, tmp_path) == {
        ("imcc/targets/a.py", "imcc.passes"),
        ("imcc/report/b.py", "imcc.compiler"),
        ("imcc/analysis/c.py", "imcc.sweep"),
        ("imcc/ir/d.py", "imcc.frontend"),
        ("imcc/ir/d.py", "imcc.targets.cost"),
        ("imcc/ir/__init__.py", "imcc.cli"),
    }
