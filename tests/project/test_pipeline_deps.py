"""dvc.yaml, cv/dvc.yaml and final/dvc.yaml: each stage depends on exactly the code its script runs.

A stage's code is its script and every ``emseg`` module the script imports, directly or
through other modules, at any depth and wherever the import stands (a function-level
import runs too). A module missing from the stage's deps means ``dvc repro`` can keep
results that the code no longer makes; a dep that no import reaches re-runs the stage for
nothing. A dep may name a folder when the stage uses every module under it. Package faces
(an ``__init__.py`` holding nothing but its docstring and a version string) change no
result and are not asked for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

PIPELINES = ("dvc.yaml", "cv/dvc.yaml", "final/dvc.yaml")


def _stages() -> dict[str, tuple[str, dict]]:
    """``{"<file>:<stage>": (the file's folder relative to the root, the stage)}``, foreach stages by their ``do``."""
    found = {}
    for pipeline in PIPELINES:
        folder = str(Path(pipeline).parent)
        for name, stage in yaml.safe_load((REPO_ROOT / pipeline).read_text())["stages"].items():
            found[f"{pipeline}:{name}"] = (folder, stage.get("do", stage))
    return found


STAGES = _stages()


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
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from emseg.config import defaults`
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


def _code_deps(stage: dict, folder: str) -> list[str]:
    """The stage's deps on code, as paths from the repository root."""
    deps = [dep if isinstance(dep, str) else next(iter(dep)) for dep in stage.get("deps", [])]
    rooted = [str((Path(folder) / dep)).replace("\\", "/") for dep in deps]
    rooted = [str(Path(p).resolve().relative_to(Path(".").resolve())) if ".." in p else p for p in rooted]
    return [dep for dep in rooted if dep.split("/")[0] in ("emseg", "stages")]


def _covered(module: str, deps: list[str]) -> bool:
    return any(module == dep or module.startswith(dep.rstrip("/") + "/") for dep in deps)


def _modules_under(dep: str) -> list[str]:
    path = REPO_ROOT / dep
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [str(f.relative_to(REPO_ROOT)) for f in files if "__pycache__" not in f.parts and not _is_package_face(f)]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_modules_its_script_imports(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, stage = STAGES[name]
    monkeypatch.chdir(REPO_ROOT)
    script_name = next(word for word in stage["cmd"].split() if word.endswith(".py"))
    script = (REPO_ROOT / folder / script_name).resolve()
    needed = sorted(str(p.relative_to(REPO_ROOT)) for p in import_closure(script) if not _is_package_face(p))
    deps = _code_deps(stage, folder)
    missing = [module for module in needed if not _covered(module, deps)]
    assert not missing, f"{name}: deps lack {missing}"
    unused = [dep for dep in deps if any(module not in needed for module in _modules_under(dep))]
    assert not unused, f"{name}: deps holding modules that no import reaches: {unused}"


def test_the_cv_pipeline_writes_the_fold_files_the_aggregate_stage_reads() -> None:
    from emseg.config.layout import CV_FOLD_FILES

    commands = {name.split(":")[1]: stage["cmd"] for name, (_, stage) in STAGES.items() if name.startswith("cv/")}
    fold = "${paths.folds}/${item}"
    assert f"--out {fold}/{CV_FOLD_FILES['split']}" in commands["split"]
    assert f"--metrics {fold}/{CV_FOLD_FILES['metrics']}" in " ".join(commands["evaluate"].split())
    assert f"--segment {fold}/{CV_FOLD_FILES['segment']}" in " ".join(commands["evaluate"].split())
    plots, name = CV_FOLD_FILES["per_slice"].split("/")
    assert f"--plots {fold}/{plots}" in commands["evaluate"] and name == "per_slice.json"  # what evaluate writes in --plots


def test_the_closure_follows_function_level_and_package_imports(tmp_path: Path) -> None:
    """The walk itself: a lazy import inside a function counts, and so does ``from emseg import x``."""
    script = tmp_path / "script.py"
    script.write_text("from emseg.config import defaults\n\ndef later():\n    from emseg.runtime.device import select_device\n")
    found = {str(p.relative_to(REPO_ROOT)) for p in import_closure(script) if p != script}
    assert {"emseg/config/defaults.py", "emseg/runtime/device.py", "emseg/__init__.py", "emseg/errors.py"} <= found
    assert _is_package_face(REPO_ROOT / "emseg" / "__init__.py")


def test_the_params_schema_imports_no_registry() -> None:
    """Every stage loads the schema: it must reach nothing but the configuration and the error type, so that an
    edit to a network, a loss or a cell method re-runs only the stages that run that code."""
    reached = {str(p.relative_to(REPO_ROOT)) for p in import_closure(REPO_ROOT / "emseg" / "config" / "params.py")}
    assert {p for p in reached if not _is_package_face(REPO_ROOT / p)} == {
        "emseg/config/params.py", "emseg/config/defaults.py", "emseg/config/layout.py", "emseg/errors.py"
    }


@pytest.mark.parametrize(
    ("module", "stages"),
    [
        ("emseg/segmentation/methods.py", {"dvc.yaml:evaluate", "cv/dvc.yaml:evaluate"}),
        ("emseg/networks/architectures.py", {"dvc.yaml:train", "dvc.yaml:evaluate", "cv/dvc.yaml:train", "cv/dvc.yaml:evaluate",
                                             "final/dvc.yaml:train", "final/dvc.yaml:model"}),
        ("emseg/training/losses.py", {"dvc.yaml:train", "cv/dvc.yaml:train", "final/dvc.yaml:train"}),
        ("emseg/preprocessing/fetch.py", {"dvc.yaml:fetch"}),
        ("emseg/preprocessing/labels.py", {"dvc.yaml:fetch", "dvc.yaml:convert"}),
    ],
)
def test_an_edit_to_a_registry_re_runs_only_the_stages_that_run_it(module: str, stages: set[str]) -> None:
    depending = {name for name, (folder, stage) in STAGES.items() if _covered(module, _code_deps(stage, folder))}
    assert depending == stages
