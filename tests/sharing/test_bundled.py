"""emseg.sharing.bundled: which model `emseg predict` takes without --model, and the model in the box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emseg.errors import EmsegError
from emseg.config.layout import png_folder, slice_name
from emseg.io.atomic import write_json
from emseg.io.images import write_png
from emseg.networks.model_file import CELLS_ELSEWHERE_KEY, load_model, with_cell_step
from emseg.sharing import bundled

from conftest import synthetic_stack, tiny_model_file


def test_a_given_model_wins_then_the_pipelines_then_the_bundled_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert bundled.default_model(None) == (bundled.BUNDLED_MODEL, "the bundled ISBI 2012 model (emseg models)")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"made by dvc repro")
    assert bundled.default_model(None) == (bundled.PIPELINE_MODEL, "the pipeline's")
    assert bundled.default_model(Path("mine.pt")) == (Path("mine.pt"), "given")


def test_an_installation_without_the_bundle_asks_for_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bundled, "BUNDLED_MODEL", tmp_path / "absent.pt")
    with pytest.raises(EmsegError, match=r"^models/model.pt: model file not found, and this installation has no bundled model; give --model$"):
        bundled.default_model(None)


def test_the_bundle_ships_inside_the_package_and_loads_with_what_the_cross_validation_chose() -> None:
    assert bundled.BUNDLE.parent.name == "data" and bundled.BUNDLE.parent.parent.name == "emseg"
    _, config = load_model(bundled.BUNDLED_MODEL)
    info = bundled.bundled_info()
    chosen = info["chosen"]
    # the step, the threshold and the cell step travel inside the model file: nothing beside it is needed
    assert config.info["step"] == chosen["step"]["step"] and config.val_threshold == chosen["val_threshold"]
    assert config.cell_step() == (chosen["cell_step"]["method"], chosen["cell_step"]["settings"])
    assert config.info["cross_validated"] == info["cross_validated"] and info["commit"]
    # the step for other stacks, chosen over two labs' stacks: what emseg models advises for another lab's stack
    assert config.info[CELLS_ELSEWHERE_KEY] == info["cells_for_other_stacks"] and info["cells_for_other_stacks"]["method"] == "components"
    assert config.pixel_size_yx() == (4.0, 4.0) and not (bundled.BUNDLE / "segment.json").exists()
    assert ("with auto-context" in info["name"]) == config.auto_context  # the name says which network it is


def _final_folder(root: Path) -> tuple[Path, Path]:
    """A final/ folder of a tiny model with its metrics, and a png folder with three unlabelled slices."""
    final, png = root / "final", root / "png"
    final.mkdir()
    tiny_model_file(final / "network.pt")
    cells = {"method": "components", "settings": {"threshold": 0.5}, "chosen_on": "the validation blocks of folds 0, 1", "v_rand": 0.9}
    info = {"cross_validated": CROSS_VALIDATED, "step": 6, "steps": 10}  # what training and the final stage put there
    with_cell_step(final / "network.pt", final / "model.pt", cells, info, val_threshold=0.5)
    write_json(final / "metrics.json", {"step": {"step": 6}, "cell_step": cells, "val_threshold": 0.5, "cross_validated": CROSS_VALIDATED})
    write_json(final / "split.json", {"train": list(range(8)), "val": [], "test": []})
    images, _ = synthetic_stack(3, 40, 48)
    folder = png_folder(png, "test_images")
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        write_png(folder / slice_name(index), image)
    return final, png


FIGURE = {"mean": 0.95, "ci_low": 0.94, "ci_high": 0.96}
CROSS_VALIDATED = {"slices": 8, "folds": 2, "confidence": 0.95, "cells": {"v_rand": FIGURE}, "validated": {"v_rand": FIGURE}}


def test_the_bundle_of_a_final_model_halves_its_weights_and_checks_them(tmp_path: Path) -> None:
    final, png = _final_folder(tmp_path)
    info = bundled.make_bundle(final, png, out=tmp_path / "bundle")
    _, config = load_model(tmp_path / "bundle" / "model.pt")
    state = torch.load(tmp_path / "bundle" / "model.pt", weights_only=True)["state_dict"]
    assert all(value.dtype == torch.float16 for value in state.values() if value.is_floating_point())
    assert config.cells["settings"] == {"threshold": 0.5} and info["cross_validated"] == CROSS_VALIDATED
    assert info["fp16_check"]["slices"] == 3 and info["fp16_check"]["max_abs_difference"] < 0.02
    assert info["trained_on"] == "all 8 ISBI 2012 training slices, 6 of 10 steps"
    assert json.loads((tmp_path / "bundle" / "info.json").read_text()) == info
    assert CELLS_ELSEWHERE_KEY not in config.info and info["cells_for_other_stacks"] is None


def test_a_transfer_study_gives_the_bundle_its_step_for_other_stacks(tmp_path: Path) -> None:
    final, png = _final_folder(tmp_path)
    study = tmp_path / "cell_transfer_cv.json"
    write_json(study, {"table": {"isbi_cv_val": []}, "vnc_rescaled": {"default": {"chosen": ["components", {"threshold": 0.6}]}}})
    info = bundled.make_bundle(final, png, out=tmp_path / "bundle", transfer_study=study)
    _, config = load_model(tmp_path / "bundle" / "model.pt")
    assert config.info[CELLS_ELSEWHERE_KEY] == info["cells_for_other_stacks"]
    assert info["cells_for_other_stacks"]["method"] == "components" and info["cells_for_other_stacks"]["settings"] == {"threshold": 0.6}
    assert config.cells["settings"] == {"threshold": 0.5}  # its own step stays
    assert info["made_by"].endswith("--cells-for-other-stacks cell_transfer_cv.json (benchmarks/cell_transfer.py --isbi-cv cv/folds)")
    write_json(study, {"table": {"isbi": []}})
    with pytest.raises(EmsegError, match=r"cell_transfer_cv.json: not a cell-transfer study over the cross-validation's folds"):
        bundled.make_bundle(final, png, out=tmp_path / "bundle", transfer_study=study)


def test_a_bundle_that_cannot_be_checked_or_lacks_its_figures_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    final, png = _final_folder(tmp_path)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "model.pt").write_bytes(b"the bundle before")
    with pytest.raises(EmsegError, match=r"png-missing/png/test/images: folder not found"):  # no unlabelled slices to check on
        bundled.make_bundle(final, tmp_path / "png-missing" / "png", out=tmp_path / "bundle")
    assert (tmp_path / "bundle" / "model.pt").read_bytes() == b"the bundle before" and not (tmp_path / "bundle" / "info.json").exists()
    write_json(final / "metrics.json", {"cell_step": {}})
    with pytest.raises(EmsegError, match=r"final/metrics.json: no cross-validated figures or chosen step"):
        bundled.make_bundle(final, png, out=tmp_path / "bundle")
    assert [p.name for p in (tmp_path / "bundle").iterdir()] == ["model.pt"]


@pytest.mark.parametrize(("given", "expected"), [("none", None), ("bundled", bundled.BUNDLED_MODEL)])
def test_init_from_names_a_model_file(given: str, expected) -> None:
    assert bundled.init_model(given) == expected


def test_init_from_a_missing_file_is_one_line(tmp_path) -> None:
    with pytest.raises(EmsegError, match=r"^train.init_from: .*absent.pt: model file not found$"):
        bundled.init_model(str(tmp_path / "absent.pt"))
