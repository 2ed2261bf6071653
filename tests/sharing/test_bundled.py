"""emseg.sharing.bundled: which model `emseg predict` takes without --model, and the model in the box."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg.errors import EmsegError
from emseg.networks.model_file import load_model
from emseg.sharing import bundled


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


def test_the_bundle_ships_inside_the_package_and_loads_with_its_scores_and_segmentation() -> None:
    assert bundled.BUNDLE.parent.name == "data" and bundled.BUNDLE.parent.parent.name == "emseg"
    model, config = load_model(bundled.BUNDLED_MODEL)
    info = bundled.bundled_info()
    assert config.val_threshold == info["test_scores"]["val_threshold"]
    assert {"v_rand", "v_info", "pixel_error"} <= set(info["test_scores"]) and info["commit"]
    # the cell step and the pixel size travel inside the model file: nothing beside it is needed
    # thresholded cells at the validated threshold: the step that carried over to a second stack (benchmarks/cell_transfer.py)
    assert config.cell_step() == ("components", {"threshold": config.val_threshold})
    assert config.pixel_size_yx() == (4.0, 4.0) and not (bundled.BUNDLE / "segment.json").exists()


@pytest.mark.parametrize(("given", "expected"), [("none", None), ("bundled", bundled.BUNDLED_MODEL)])
def test_init_from_names_a_model_file(given: str, expected) -> None:
    assert bundled.init_model(given) == expected


def test_init_from_a_missing_file_is_one_line(tmp_path) -> None:
    with pytest.raises(EmsegError, match=r"^train.init_from: .*absent.pt: model file not found$"):
        bundled.init_model(str(tmp_path / "absent.pt"))
