"""`emseg train`: a lab's own slices in any layout, trained or fine-tuned without DVC, and its bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from emseg.cli.main import main
from emseg.networks.model_file import load_model

from conftest import TINY_PROFILE, merge, synthetic_stack, tif

SETTINGS = {"train": {"finetune": {"steps": 2, "val_every": 2}}, "segment": {"method": "components", "components": {"threshold": [0.3, 0.7]}}}


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(merge(TINY_PROFILE, SETTINGS)))
    return path


def _lab_data(folder: Path, n: int = 3) -> tuple[Path, Path]:
    """Images as a TIFF stack; labels as a folder of 1-bit PNGs with True = membrane, the other lab's conventions."""
    images, labels = synthetic_stack(n, 48, 48, seed=2)
    tif(folder / "raw.tif", images)
    (folder / "membranes").mkdir(parents=True)
    for index, label in enumerate(labels):
        Image.fromarray(label == 0).save(folder / "membranes" / f"{index:02d}.png")
    return folder / "raw.tif", folder / "membranes"


def test_train_then_fine_tune_from_the_model_with_the_pixel_size_given(tmp_path: Path, params_file: Path, capsys) -> None:
    images, labels = _lab_data(tmp_path / "lab")
    base = tmp_path / "base.pt"
    assert main(["train", str(images), str(labels), "--out", str(base), "--params", str(params_file), "--pixel-size", "4.6nm"]) == 0
    captured = capsys.readouterr()
    assert "3 labelled slices of 48x48" in captured.err and "membrane value 1" in captured.err  # True (the rarer value) is membrane
    assert f"-> {base}" in captured.out
    _, config = load_model(base)
    assert config.pixel_size == [50.0, 4.6, 4.6] and config.cells["chosen_on"] == "held-out labelled slices [2]"
    tuned = tmp_path / "tuned.pt"
    assert main(["train", str(images), str(labels), "--out", str(tuned), "--params", str(params_file), "--init", str(base), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "the files carry no pixel size: taken to be the --init model's, 4.6 nm" in err and "model block differs" not in err
    _, tuned_config = load_model(tuned)
    assert tuned_config.info["steps"] == 1 and tuned_config.info["init_from"] == str(base) and tuned_config.pixel_size == [50.0, 4.6, 4.6]


def test_a_fine_tune_trains_the_init_models_network_and_says_the_params_block_is_not_used(tmp_path: Path, params_file: Path, capsys) -> None:
    from conftest import tiny_model_file

    images, labels = _lab_data(tmp_path / "lab")
    boundary = tiny_model_file(tmp_path / "boundary.pt")
    tuned = tmp_path / "tuned.pt"
    assert main(["train", str(images), str(labels), "--out", str(tuned), "--params", str(params_file), "--init", str(boundary), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    assert f"fine-tuning trains the --init model's network; {params_file}'s model block differs in target, offsets, out_channels" in err
    assert load_model(tuned)[1].target == "boundary"


def test_instance_labels_with_an_unlabelled_value(tmp_path: Path, params_file: Path, capsys) -> None:
    images, labels = synthetic_stack(2, 48, 48, seed=4)
    from scipy import ndimage

    instances = np.stack([ndimage.label(label > 0)[0] for label in labels]).astype(np.uint16)
    instances[1, :, :20] = 65535  # a region nobody labelled
    tif(tmp_path / "raw.tif", images)
    tif(tmp_path / "cells.tif", instances)
    out = tmp_path / "model.pt"
    args = ["train", str(tmp_path / "raw.tif"), str(tmp_path / "cells.tif"), "--labels", "instances", "--unlabelled", "65535"]
    assert main([*args, "--out", str(out), "--params", str(params_file)]) == 0
    assert "membranes from the instances' borders" in capsys.readouterr().err and out.is_file()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("shape", r"does not match"),
        ("one_value", r"one value"),
        ("init_not_a_model", r"raw.tif.*a TIFF image"),
        ("membrane_value", r"--membrane-value 'dark': give auto or an integer label value"),
        ("out_is_a_folder", r"--out .*: is a folder; give the model file to write"),
    ],
)
def test_bad_inputs_are_one_line_and_write_no_model(case: str, message: str, tmp_path: Path, params_file: Path, capsys) -> None:
    images, labels = _lab_data(tmp_path / "lab")
    out = tmp_path / "model.pt"
    extra: list[str] = []
    if case == "shape":
        tif(tmp_path / "small.tif", np.zeros((3, 40, 48), np.uint8))
        images = tmp_path / "small.tif"
    elif case == "one_value":
        tif(tmp_path / "flat.tif", np.full((3, 48, 48), 255, np.uint8))
        labels = tmp_path / "flat.tif"
    elif case == "init_not_a_model":
        extra = ["--init", str(images)]
    elif case == "membrane_value":
        extra = ["--membrane-value", "dark"]
    elif case == "out_is_a_folder":
        out = tmp_path / "models"
        out.mkdir()
    assert main(["train", str(images), str(labels), "--out", str(out), "--params", str(params_file), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("emseg: error: "), err
    assert pytest.importorskip("re").search(message, err[0]), err[0]
    assert (out.is_dir() and not any(out.iterdir())) if case == "out_is_a_folder" else not out.exists()
    assert not list(tmp_path.glob(".emseg-train-*"))
