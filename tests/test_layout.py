"""The package's layout rules: imports point one way along the data flow, and the light packages never import TensorFlow."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import kerasrun

PACKAGE = Path(kerasrun.__file__).parent
# The packages in import order: each may import the ones before it (and the top-level modules), never one after it.
ORDER = ("config", "rundir", "runs", "data", "build", "integrations", "train", "use", "sweep", "cli")
# Top-level modules every package may use; they import no package of kerasrun's (`__main__` is the command itself).
BASE = ("errors", "optional", "startup", "_tf", "keras_private", "imports")
LIGHT = ("config", "rundir", "runs", "cli")  # never import TensorFlow: `--help`, `validate`, `runs` stay fast


def imported_modules(path: Path) -> set[str]:
    """Every `kerasrun...` module a file imports, at any depth (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" for alias in node.names} if node.module == "kerasrun" else {node.module}
    return {name for name in found if name.startswith("kerasrun.")}


def part_of(module: str) -> str:
    """The package (or top-level module) of kerasrun that `module` belongs to."""
    return module.split(".")[1]


def test_packages_import_only_packages_before_them() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = part_of(module) if module != "kerasrun.__init__" else "__init__"
        for target in imported_modules(path):
            other = part_of(target)
            if other == own or own in ("__main__", "examples"):
                continue
            if own in BASE or own == "__init__":
                if other not in BASE:
                    wrong.append(f"{module} (top-level) imports {target}")
            elif other in ORDER and ORDER.index(other) > ORDER.index(own):
                wrong.append(f"{module} ({own}) imports {target} ({other} comes after it)")
    assert not wrong, "\n".join(wrong)


def test_every_module_is_placed() -> None:
    parts = {part_of(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in PACKAGE.rglob("*.py")}
    assert parts <= {*ORDER, *BASE, "__init__", "__main__", "examples"}, parts - {*ORDER, *BASE}


def test_light_packages_never_import_tensorflow() -> None:
    modules = [info.name for package in LIGHT for info in pkgutil.walk_packages([str(PACKAGE / package)], prefix=f"kerasrun.{package}.")]
    assert {part_of(m) for m in modules} == set(LIGHT), modules  # every module of each package, not just its __init__
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print(' '.join(sorted({'tensorflow', 'keras'} & set(sys.modules))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {LIGHT} loaded {out.stdout.strip()}"
