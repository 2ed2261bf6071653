"""The package's layout: phases at the root, one name per module, imports pointing down the layer table of
docs/explanation/architecture.md, and tests mirroring the modules one to one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "emseg"
ARCHITECTURE = REPO_ROOT / "docs" / "explanation" / "architecture.md"
#: test folders that check the repository or run it whole, rather than one module
NOT_MIRRORS = ("project", "end_to_end")


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _layers() -> dict[str, int]:
    """Top-level name under emseg -> its layer, read from the architecture page's table (1 = top)."""
    layers = {}
    for row in re.findall(r"^\| (\d+) \| ([^|]+) \|", ARCHITECTURE.read_text(), re.M):
        for name in re.findall(r"`(\w+)`", row[1]):
            layers[name] = int(row[0])
    return layers


def _top(module: str) -> str:
    """The top-level package (or root module) of a dotted emseg module name."""
    return module.split(".")[1] if module.count(".") else module


def test_the_root_holds_the_version_and_at_most_three_modules() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert "__init__.py" in root and len(root) - 1 <= 3, root
    assert re.search(r'^__version__ = "[^"]+"$', (PACKAGE / "__init__.py").read_text(), re.M)


def test_no_module_is_named_like_another() -> None:
    names = [p.stem for p in _modules() if p.name != "__init__.py"]
    packages = [p.parent.name for p in _modules() if p.name == "__init__.py" and p.parent != PACKAGE]
    repeated = sorted({name for name in names if names.count(name) > 1} | (set(names) & set(packages)))
    assert not repeated, f"modules sharing a name: {repeated}"


def test_every_top_level_package_has_a_layer() -> None:
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _modules()} - {"__init__"}
    layers = _layers()
    assert tops == set(layers), f"not in the architecture page's table: {sorted(tops - set(layers))}; gone: {sorted(set(layers) - tops)}"


def test_imports_point_down_the_layer_table() -> None:
    layers = _layers()
    upward = []
    for path in _modules():
        module = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts).removesuffix(".__init__")
        if module == "emseg":
            continue
        own = layers[_top(module)]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("emseg.") and node.level == 0:
                target = _top(node.module)
                if target != _top(module) and layers[target] <= own:
                    upward.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {node.module} (layer {layers[target]}, own {own})")
    assert not upward, "\n".join(upward)


def test_tests_mirror_the_modules_one_to_one() -> None:
    tests = REPO_ROOT / "tests"
    expected = {
        tests / path.relative_to(PACKAGE).parent / f"test_{path.stem}.py" for path in _modules() if path.name != "__init__.py"
    }
    found = {p for p in tests.rglob("test_*.py") if p.relative_to(tests).parts[0] not in NOT_MIRRORS}
    assert not sorted(expected - found), f"modules without their test file: {sorted(str(p.relative_to(tests)) for p in expected - found)}"
    assert not sorted(found - expected), f"test files mirroring no module: {sorted(str(p.relative_to(tests)) for p in found - expected)}"
