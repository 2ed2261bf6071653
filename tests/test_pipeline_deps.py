"""dvc.yaml: each stage depends on exactly the code its script runs.

A stage's code is its script and every ``emseg`` module the script imports, directly or
through other modules, at any depth and wherever the import stands (a function-level
import runs too). A module missing from the stage's deps means ``dvc repro`` can keep
results that the code no longer makes; a dep that no import reaches re-runs the stage for
nothing. A dep may name a folder, which covers the modules under it. Package faces (an
``__init__.py`` holding nothing but its docstring and a version string) change no result
and are not asked for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    path = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from emseg import defaults`
    return {name for name in names if name.split(".")[0] == "emseg"}


def import_closure(script: Path) -> set[Path]:
    """The script and every emseg module (and package) it reaches through imports."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path):
            parts = name.split(".")
            todo += [f for f in (_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)) if f]
    return seen


def _is_package_face(path: Path) -> bool:
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text()).body
    return all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # the docstring
        or isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]
        for node in body
    )


def _code_deps(stage: dict) -> list[str]:
    deps = [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]
    return [dep for dep in deps if dep.split("/")[0] in ("emseg", "stages")]


def _covered(module: str, deps: list[str]) -> bool:
    return any(module == dep or module.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_modules_its_script_imports(name: str) -> None:
    stage = STAGES[name]
    script = REPO_ROOT / "stages" / f"{name}.py"
    assert f"stages/{name}.py" in stage["cmd"]
    needed = sorted(str(p.relative_to(REPO_ROOT)) for p in import_closure(script) if not _is_package_face(p))
    deps = _code_deps(stage)
    missing = [module for module in needed if not _covered(module, deps)]
    assert not missing, f"stage {name}: dvc.yaml deps lack {missing}"
    unused = [dep for dep in deps if not any(_covered(module, [dep]) for module in needed)]
    assert not unused, f"stage {name}: dvc.yaml deps that no import reaches: {unused}"


def test_the_closure_follows_function_level_and_package_imports(tmp_path: Path) -> None:
    """The walk itself: a lazy import inside a function counts, and so does ``from emseg import x``."""
    script = tmp_path / "script.py"
    script.write_text("from emseg import defaults\n\ndef later():\n    from emseg.device import select_device\n")
    found = {str(p.relative_to(REPO_ROOT)) for p in import_closure(script) if p != script}
    assert {"emseg/defaults.py", "emseg/device.py", "emseg/__init__.py", "emseg/errors.py"} <= found
    assert _is_package_face(REPO_ROOT / "emseg" / "__init__.py")
