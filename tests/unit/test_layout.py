"""The package's floors, as the tree shows them: a subpackage imports only from floors below its own
(or itself), so there is no import cycle between subpackages and the CLI is imported by nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import dataops

PACKAGE = Path(dataops.__file__).parent
FLOORS = [  # bottom first
    {"core"},
    {"sources", "history"},
    {"warehouse", "ops"},
    {"project", "quality", "publish"},
    {"commands", "airflow"},
    {"cli"},
]
FLOOR_OF = {package: level for level, packages in enumerate(FLOORS) for package in packages}


def _imports(path: Path) -> set[str]:
    """The dataops subpackages a module imports, at any depth (imports inside functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "dataops" else [f"dataops.{a.name}" for a in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("dataops.")}
    return found


def test_every_module_lives_in_a_subpackage_but_the_entry_points() -> None:
    flat = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py"]
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(FLOOR_OF)


def test_each_subpackage_imports_only_from_floors_below_it() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:
            continue  # __main__ runs the CLI
        own = relative.parts[0]
        for imported in _imports(path) - {own}:
            if FLOOR_OF[imported] >= FLOOR_OF[own]:
                upward.append(f"{relative} imports dataops.{imported}")
    assert upward == []
