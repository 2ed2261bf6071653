"""Tests of ``emseg predict`` (run in-process through emseg.cli.main.main)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from emseg.cli.main import main
from emseg.config.params import ModelParams, TrainParams
from emseg.inference.outputs import OUTPUT_KINDS, default_outputs
from emseg.io.images import read_stack
from emseg.networks.model_file import load_model
from emseg.training.run import train
from emseg.training.sampler import TrainingData

from conftest import TINY_UNET, synthetic_slice, synthetic_stack, tif, tiny_model_file

PATCH = 32
#: what a model file without a pixel size (the tiny test models) makes emseg predict say
OLD_MODEL_NOTE = "the model file records no pixel size (older format): predicted on the input's own grid"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained UNet saved the way training saves it (patch 32)."""
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt", PATCH)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _img(path: Path, array: np.ndarray, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.stack([grey, (grey * 0.8).astype(grey.dtype), grey // 2], axis=-1)


def _make_input(kind: str, folder: Path) -> tuple[Path, dict[str, tuple[int, int, int]]]:
    """An input of ``kind`` and the (slices, H, W) expected per output stem."""
    if kind == "multipage_tiff":
        stack, _ = synthetic_stack(3, 48, 40, seed=1)
        return tif(folder / "vol.tif", stack), {"vol": (3, 48, 40)}
    if kind == "single_tiff":
        return tif(folder / "one.tiff", synthetic_slice(50, 44, 2)[0]), {"one": (1, 50, 44)}
    if kind == "png":
        return _img(folder / "p.png", synthetic_slice(40, 56, 3)[0]), {"p": (1, 40, 56)}
    if kind == "jpeg":
        return _img(folder / "j.jpg", synthetic_slice(40, 56, 4)[0], quality=90), {"j": (1, 40, 56)}
    if kind == "folder":
        sub = folder / "slices"
        sub.mkdir()
        _img(sub / "s0.png", synthetic_slice(36, 36, 5)[0])
        tif(sub / "s1.tif", synthetic_slice(33, 47, 6)[0])  # folder files may differ in size
        (sub / "README.txt").write_text("not an image")
        return sub, {"s0": (1, 36, 36), "s1": (1, 33, 47)}
    if kind == "uint16_tiff":
        stack, _ = synthetic_stack(2, 45, 67, seed=7, dtype=np.uint16)
        return tif(folder / "deep.tif", stack), {"deep": (2, 45, 67)}
    if kind == "uint16_png":
        return _img(folder / "deep.png", synthetic_slice(38, 42, 8, dtype=np.uint16)[0]), {"deep": (1, 38, 42)}
    if kind == "rgb_png":
        return _img(folder / "colour.png", _rgb(synthetic_slice(40, 44, 9)[0])), {"colour": (1, 40, 44)}
    if kind == "rgb_tiff":
        return tif(folder / "colour.tif", _rgb(synthetic_slice(40, 44, 9)[0]), photometric="rgb"), {"colour": (1, 40, 44)}
    if kind == "odd_67x45":
        return _img(folder / "odd.png", synthetic_slice(67, 45, 10)[0]), {"odd": (1, 67, 45)}
    if kind == "smaller_than_patch":
        return _img(folder / "tiny.png", synthetic_slice(20, 12, 11)[0]), {"tiny": (1, 20, 12)}
    if kind == "a_few_pixels":  # smaller than the network's coarsest level: padded, not refused
        return _img(folder / "speck.png", synthetic_slice(3, 2, 12, cells=2)[0]), {"speck": (1, 3, 2)}
    raise AssertionError(kind)


def _check_outputs(
    out: Path, stem: str, shape: tuple[int, int, int], outputs=("proba", "membrane", "cells", "overlay", "measurements", "summary"), threshold: float = 0.5
) -> None:
    n, h, w = shape
    stack = n > 1
    expected = {
        "proba": f"{stem}_proba.tif",
        "membrane": f"{stem}_membrane.{'tif' if stack else 'png'}",
        "cells": f"{stem}_cells.tif",
        "overlay": f"{stem}_overlay.png",
        "measurements": f"{stem}_cells.csv",
        "summary": f"{stem}_cells_summary.csv",
    }
    for kind, name in expected.items():
        assert (out / name).is_file() == (kind in outputs), name
    if "proba" in outputs:
        proba = tifffile.imread(out / expected["proba"])
        assert proba.dtype == np.float32 and proba.shape == ((n, h, w) if stack else (h, w))
        assert 0.0 <= proba.min() and proba.max() <= 1.0 and np.isfinite(proba).all()
        proba = proba.reshape(n, h, w)
    if "membrane" in outputs:
        mask = read_stack(out / expected["membrane"])
        assert mask.dtype == np.uint8 and mask.shape == (n, h, w)
        assert set(np.unique(mask)) <= {0, 255}
        if "proba" in outputs:  # the mask is exactly "not cell" at the threshold
            np.testing.assert_array_equal(mask == 255, ~(proba > np.float32(threshold)))
    if "cells" in outputs:
        cells = tifffile.imread(out / expected["cells"])
        assert cells.dtype == np.uint32 and cells.shape == ((n, h, w) if stack else (h, w))
        if "proba" in outputs:
            cells = cells.reshape(n, h, w)
            assert (cells[proba > np.float32(threshold)] > 0).all()  # every cell pixel is in an instance
            assert (proba[cells == 0] <= np.float32(threshold)).all()  # outlines lie on membrane
    if "overlay" in outputs:
        with Image.open(out / expected["overlay"]) as img:
            assert img.mode == "RGB" and img.size == (w, h)
    if "measurements" in outputs and "cells" in outputs:
        rows = list(csv.DictReader((out / expected["measurements"]).open()))
        cells = tifffile.imread(out / expected["cells"]).reshape(n, h, w)
        assert sum(float(r["area_px"]) for r in rows) == (cells > 0).sum()  # every cell pixel, once
        assert {int(r["slice"]) for r in rows} <= set(range(n))
    if "summary" in outputs:
        assert len(list(csv.DictReader((out / expected["summary"]).open()))) == n


INPUT_KINDS = [
    "multipage_tiff",
    "single_tiff",
    "png",
    "jpeg",
    "folder",
    "uint16_tiff",
    "uint16_png",
    "rgb_png",
    "rgb_tiff",
    "odd_67x45",
    "smaller_than_patch",
    "a_few_pixels",
]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_every_input_kind_gives_all_outputs(kind: str, model_path: Path, tmp_path: Path, capsys) -> None:
    source, expected = _make_input(kind, tmp_path)
    out = tmp_path / "out"
    rc, stdout, stderr = _run(capsys, source, "--model", model_path, "--out", out)
    assert rc == 0, stderr
    for stem, shape in expected.items():
        _check_outputs(out, stem, shape)
    assert len(list(out.iterdir())) == len(default_outputs(tta=False)) * len(expected)  # and nothing else (no temp files)
    slices = sum(s[0] for s in expected.values())
    assert f"predicted {len(expected)} image(s), {slices} slice(s)" in stdout and "MPix/s" in stdout
    assert "; threshold 0.5: default;" in stdout  # an untrained model file carries no validated threshold
    if kind.startswith("rgb"):
        assert stderr.count("converted to grey") == 1 and "colour" in stderr
    else:  # no progress bar when stderr is not a terminal; one line on the pixel size
        assert stderr == f"emseg predict: {OLD_MODEL_NOTE}\n"


def test_several_inputs_colour_note_once_and_quiet(model_path: Path, tmp_path: Path, capsys) -> None:
    a = _img(tmp_path / "a.png", _rgb(synthetic_slice(24, 24, 1)[0]))
    b = _img(tmp_path / "b.png", _rgb(synthetic_slice(24, 24, 2)[0]))
    c = _img(tmp_path / "c.png", synthetic_slice(24, 24, 3)[0])
    rc, stdout, stderr = _run(capsys, a, b, c, "--model", model_path, "--out", tmp_path / "out", "--quiet")
    assert rc == 0 and stdout == ""
    colour, pixel_size = stderr.splitlines()  # one note each, not one per input
    assert "a.png, " in colour and "b.png" in colour and "c.png" not in colour and pixel_size == f"emseg predict: {OLD_MODEL_NOTE}"


@pytest.mark.parametrize("outputs", ["proba", "membrane,cells", "overlay,proba"])
def test_outputs_subset(outputs: str, model_path: Path, tmp_path: Path, capsys) -> None:
    source, expected = _make_input("multipage_tiff", tmp_path)
    out = tmp_path / "out"
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", out, "--outputs", outputs)
    assert rc == 0, stderr
    chosen = tuple(outputs.split(","))
    _check_outputs(out, "vol", expected["vol"], chosen)
    assert len(list(out.iterdir())) == len(chosen)


def test_threshold_tta_and_options(model_path: Path, tmp_path: Path, capsys) -> None:
    source, _ = _make_input("odd_67x45", tmp_path)
    args = [source, "--model", model_path, "--outputs", "proba,membrane", "--batch-size", "1", "--overlap", "0.25"]
    assert _run(capsys, *args, "--out", tmp_path / "plain", "--device", "cpu")[0] == 0
    assert _run(capsys, *args, "--out", tmp_path / "tta", "--tta", "--threshold", "0.3")[0] == 0
    plain = tifffile.imread(tmp_path / "plain" / "odd_proba.tif")
    tta = tifffile.imread(tmp_path / "tta" / "odd_proba.tif")
    assert not np.array_equal(plain, tta)  # a random network is not flip-invariant
    mask = np.asarray(Image.open(tmp_path / "tta" / "odd_membrane.png"))
    np.testing.assert_array_equal(mask == 255, ~(tta > np.float32(0.3)))


def test_tile_sets_the_sliding_window(model_path: Path, tmp_path: Path, capsys) -> None:
    source = tif(tmp_path / "big.tif", synthetic_slice(96, 80, 5)[0])
    maps = {}
    for name, extra in [("default", []), ("patch", ["--tile", str(PATCH)]), ("whole", ["--tile", "96"])]:
        assert _run(capsys, source, "--model", model_path, "--outputs", "proba", "--out", tmp_path / name, *extra)[0] == 0
        maps[name] = tifffile.imread(tmp_path / name / "big_proba.tif")
    np.testing.assert_array_equal(maps["patch"], maps["default"])  # the default window is the model's patch
    assert maps["whole"].shape == (96, 80) and not np.array_equal(maps["whole"], maps["default"])  # one 96x80 window


def test_a_trained_model_predicts(tmp_path: Path, capsys) -> None:
    images, labels = synthetic_stack(4, 48, 48)
    data = TrainingData(list(images[:3]), list(labels[:3]), [images[3]], [labels[3]])
    tiny = ModelParams(arch="unet", unet=TINY_UNET)
    params = TrainParams(steps=4, batch_size=2, patch_size=32, val_every=2, log_every=2)
    model = tmp_path / "train" / "model.pt"
    train(data, tiny, params, seed=3, model_path=model, live_dir=tmp_path / "train" / "live")
    test_image = tif(tmp_path / "test.tif", synthetic_stack(2, 56, 52, seed=50)[0])
    rc, stdout, stderr = _run(capsys, test_image, "--model", model, "--out", tmp_path / "out")
    assert rc == 0, stderr
    _, config = load_model(model)
    validated = config.info["val"]["threshold"]
    assert config.val_threshold == validated
    assert f"; threshold {validated:g}: the model's validated one;" in stdout
    _check_outputs(tmp_path / "out", "test", (2, 56, 52), threshold=validated)
    rc, stdout, _ = _run(capsys, test_image, "--model", model, "--out", tmp_path / "given", "--threshold", "0.25")
    assert rc == 0 and "; threshold 0.25: given;" in stdout
    _check_outputs(tmp_path / "given", "test", (2, 56, 52), threshold=0.25)


# ---------------------------------------------------------------- bad input


def _bad_model(kind: str, tmp_path: Path, good_model: Path) -> Path:
    if kind == "non_emseg":
        path = tmp_path / "other.pt"
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        path = tmp_path / "rgb_model.pt"
        payload = torch.load(good_model, weights_only=True)
        payload["config"]["in_channels"] = 3
        torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "case, named",
    [
        ("text_as_tif", "fake.tif"),
        ("unsupported_suffix", "picture.bmp"),
        ("truncated_png", "cut.png"),
        ("missing_file", "nowhere.png"),
        ("non_emseg_model", "other.pt"),
        ("in_channels_3_model", "rgb_model.pt"),
        ("empty_folder", "empty"),
    ],
)
def test_bad_input_fails_cleanly_before_any_output(case: str, named: str, model_path: Path, tmp_path: Path, capsys) -> None:
    good = _img(tmp_path / "good.png", synthetic_slice(30, 30, 1)[0])
    model = model_path
    inputs: list[Path] = [good]
    if case == "text_as_tif":
        (tmp_path / "fake.tif").write_text("this is not a TIFF\n")
        inputs.append(tmp_path / "fake.tif")
    elif case == "unsupported_suffix":
        inputs.append(_img(tmp_path / "picture.bmp", synthetic_slice(30, 30, 2)[0]))
    elif case == "truncated_png":
        full = _img(tmp_path / "full.png", synthetic_slice(60, 60, 2)[0]).read_bytes()
        (tmp_path / "cut.png").write_bytes(full[: len(full) // 2])
        inputs.append(tmp_path / "cut.png")
    elif case == "missing_file":
        inputs.append(tmp_path / "nowhere.png")
    elif case == "empty_folder":
        (tmp_path / "empty").mkdir()
        inputs.append(tmp_path / "empty")
    else:
        model = _bad_model("non_emseg" if case == "non_emseg_model" else "in3", tmp_path, model_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("already here")
    rc, stdout, stderr = _run(capsys, *inputs, "--model", model, "--out", out)
    assert rc == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("emseg: error: ") and named in lines[0], stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert stdout == ""


def test_tta_adds_the_uncertainty_and_each_cells_confidence(model_path: Path, tmp_path: Path, capsys) -> None:
    source, expected = _make_input("multipage_tiff", tmp_path)
    out = tmp_path / "out"
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", out, "--tta")
    assert rc == 0, stderr
    _check_outputs(out, "vol", expected["vol"])
    assert len(list(out.iterdir())) == len(OUTPUT_KINDS)
    variance = tifffile.imread(out / "vol_uncertainty.tif")
    assert variance.dtype == np.float32 and variance.shape == expected["vol"]
    assert 0.0 <= variance.min() and variance.max() <= 0.25 and variance.max() > 0.0  # a random network is not flip-invariant
    rows = list(csv.DictReader((out / "vol_cells.csv").open()))
    confidence = np.array([float(r["confidence"]) for r in rows])
    assert len(rows) and ((0.0 <= confidence) & (confidence <= 1.0)).all()
    np.testing.assert_allclose(confidence, 1 - 2 * np.sqrt([float(r["uncertainty"]) for r in rows]))
    # without --tta there is no variance to give: the default set leaves it out, asking for it is one error line
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "plain", "--outputs", "measurements")
    assert rc == 0 and "confidence" not in (tmp_path / "plain" / "vol_cells.csv").read_text().splitlines()[0]
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "no", "--outputs", "uncertainty")
    assert rc == 2 and "needs --tta" in stderr and len(stderr.splitlines()) == 1 and not (tmp_path / "no").exists()


def test_a_model_of_context_reads_each_slices_sections_and_a_lone_slice_is_its_own(tmp_path: Path, capsys) -> None:
    from emseg.inference.in_memory import PredictOptions, predict_slice
    from emseg.inference.predictor import Predictor
    from emseg.io.sections import with_neighbours

    model_file = tiny_model_file(tmp_path / "m" / "model.pt", PATCH, context=1)
    stack, _ = synthetic_stack(3, 40, 36, seed=4)
    source = tif(tmp_path / "s.tif", stack)
    rc, _, stderr = _run(capsys, source, "--model", model_file, "--out", tmp_path / "out", "--outputs", "proba")
    assert rc == 0 and "own neighbours" not in stderr, stderr
    model, config = load_model(model_file)
    assert config.context == 1 and config.in_channels == 3
    predictor = Predictor(model, config)
    expected = [predict_slice(predictor, with_neighbours(stack, i, 1), PredictOptions(), with_cells=False).cell for i in range(3)]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "s_proba.tif"), np.stack(expected))
    lone = _img(tmp_path / "one.png", stack[1])
    rc, _, stderr = _run(capsys, lone, "--model", model_file, "--out", tmp_path / "one", "--outputs", "proba")
    assert rc == 0 and "reads 1 section on each side of a slice; a single slice is given as its own neighbours" in stderr
    single = tifffile.imread(tmp_path / "one" / "one_proba.tif")
    np.testing.assert_array_equal(single, predict_slice(predictor, np.stack([stack[1]] * 3), PredictOptions(), with_cells=False).cell)


def test_bad_options_and_name_clash(model_path: Path, tmp_path: Path, capsys) -> None:
    good = _img(tmp_path / "x.png", synthetic_slice(30, 30, 1)[0])
    same_stem = tif(tmp_path / "x.tif", synthetic_slice(30, 30, 2)[0])
    out = tmp_path / "out"
    for extra, message in [
        (["--outputs", "proba,labels"], "--outputs: unknown output labels"),
        (["--threshold", "2"], "--threshold"),
        (["--overlap", "1"], "--overlap"),
        (["--batch-size", "0"], "--batch-size"),
        (["--tile", "8"], "--tile must be at least 16"),
    ]:
        rc, _, stderr = _run(capsys, good, "--model", model_path, "--out", out, *extra)
        assert rc == 2 and message in stderr and len(stderr.splitlines()) == 1
    rc, _, stderr = _run(capsys, good, same_stem, "--model", model_path, "--out", out)
    assert rc == 2 and "would both write" in stderr and "x.tif" in stderr
    if not torch.cuda.is_available():
        rc, _, stderr = _run(capsys, good, "--model", model_path, "--out", out, "--device", "cuda")
        assert rc == 2 and "cuda" in stderr
    rc, _, stderr = _run(capsys, good, "--model", model_path, "--out", out, "--threads", "-1")
    assert rc == 2 and "--threads" in stderr
    assert not out.exists()


def test_out_that_is_a_file_or_cannot_be_made(model_path: Path, tmp_path: Path, capsys) -> None:
    good = _img(tmp_path / "x.png", synthetic_slice(30, 30, 1)[0])
    (tmp_path / "file").write_text("")
    rc, _, stderr = _run(capsys, good, "--model", model_path, "--out", tmp_path / "file")
    assert rc == 2 and "file: exists and is not a folder" in stderr
    # a folder that cannot be created (its parent is a file): an OSError at write time
    rc, _, stderr = _run(capsys, good, "--model", model_path, "--out", tmp_path / "file" / "sub")
    assert rc == 2 and stderr.splitlines()[0] == f"emseg predict: {OLD_MODEL_NOTE}"
    error = stderr.splitlines()[1:]
    assert len(error) == 1 and "cannot write outputs of" in error[0] and "x.png" in error[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "x.png"]


def test_kill_term_mid_prediction_leaves_no_temporary_file(model_path: Path, tmp_path: Path) -> None:
    """SIGTERM (what `kill`, systemd and job schedulers send) cleans up as Ctrl-C does."""
    big = tif(tmp_path / "big.tif", synthetic_stack(8, 1024, 1024, seed=3)[0])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "emseg.cli.main", "predict", str(big), "--model", str(model_path), "--out", str(out), "--tta"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob(".*.tmp")) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    assert child.poll() is None, f"predict ended before it could be interrupted: {child.communicate()}"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == "emseg: terminated"
    assert not list(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_cells_by_another_method_and_its_bad_names(model_path: Path, tmp_path: Path, capsys) -> None:
    source, expected = _make_input("odd_67x45", tmp_path)
    rc, stdout, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "ws", "--cells", "watershed")
    assert rc == 0, stderr
    assert "cells: watershed, default settings" in stdout and "s/slice)" in stdout
    cells = tifffile.imread(tmp_path / "ws" / "odd_cells.tif")
    assert cells.dtype == np.uint32 and cells.shape == (67, 45)
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "x", "--cells", "mwz")
    assert rc == 2 and stderr.strip().startswith("emseg: error: --cells: unknown method 'mwz'; registered: components")
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "y", "--cells", "mws")
    assert rc == 2 and "--cells mws needs an affinity model" in stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_method_chosen_by_evaluate_is_the_default(model_path: Path, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(model_path.read_bytes())
    (model.parent / "segment.json").write_text(json.dumps({"method": "multicut", "settings": {"beta": 0.6, "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 25}}))
    source, _ = _make_input("odd_67x45", tmp_path)
    rc, stdout, stderr = _run(capsys, source, "--model", model, "--out", tmp_path / "out")
    assert rc == 0, stderr
    assert f"cells: multicut (beta=0.6, threshold=0.3, sigma_seeds=1, min_size=25), settings from {model.parent / 'segment.json'}" in stdout


def test_a_resolution_tag_gives_physical_columns_and_a_bad_pixel_size_is_one_error(model_path: Path, tmp_path: Path, capsys) -> None:
    stack, _ = synthetic_stack(2, 40, 36, seed=8)
    source = tmp_path / "sized.tif"
    tifffile.imwrite(source, stack, imagej=True, resolution=(250, 250), metadata={"unit": "um", "axes": "ZYX"})
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "out", "--outputs", "cells,measurements,summary")
    assert rc == 0, stderr
    rows = list(csv.DictReader((tmp_path / "out" / "sized_cells.csv").open()))
    assert rows and float(rows[0]["area_nm2"]) == pytest.approx(float(rows[0]["area_px"]) * 16)
    rc, _, stderr = _run(capsys, source, "--model", model_path, "--out", tmp_path / "out2", "--pixel-size=-4nm")
    assert rc == 2 and stderr.startswith("emseg: error: --pixel-size '-4nm'") and not (tmp_path / "out2").exists()
    rc, _, _ = _run(capsys, source, "--model", model_path, "--out", tmp_path / "out3", "--pixel-size", "5 um", "--outputs", "summary")
    assert rc == 0 and "median_area_um2" in (tmp_path / "out3" / "sized_cells_summary.csv").read_text()


# ---------------------------------------------------------------- pixel size and the model file's cell step


def _sized_model(model_path: Path, folder: Path, **fields) -> Path:
    """The tiny model saved again with more config fields (a pixel size, a cell step)."""
    from dataclasses import replace

    from emseg.networks.model_file import save_model

    model, config = load_model(model_path)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(folder / "model.pt", model, replace(config, **fields))
    return folder / "model.pt"


def test_an_input_of_another_pixel_size_is_predicted_at_the_models_and_written_on_its_own(model_path: Path, tmp_path: Path, capsys) -> None:
    sized = _sized_model(model_path, tmp_path / "m", pixel_size=[50, 4, 4])
    stack, _ = synthetic_stack(2, 40, 36, seed=8)
    source = tmp_path / "s.tif"
    tifffile.imwrite(source, stack, imagej=True, resolution=(125, 125), metadata={"unit": "um", "axes": "ZYX"})  # 8 nm/px
    rc, _, stderr = _run(capsys, source, "--model", sized, "--out", tmp_path / "out")
    assert rc == 0, stderr
    assert stderr == "emseg predict: input 8 nm/px, model 4 nm/px: predicted at 2x\n"
    _check_outputs(tmp_path / "out", "s", (2, 40, 36))
    rows = list(csv.DictReader((tmp_path / "out" / "s_cells.csv").open()))
    assert rows and float(rows[0]["area_nm2"]) == pytest.approx(float(rows[0]["area_px"]) * 64)
    # --no-rescale: today's outputs, those of the same weights without a pixel size; no line
    rc, _, stderr = _run(capsys, source, "--model", sized, "--out", tmp_path / "kept", "--no-rescale")
    assert rc == 0 and stderr == ""
    rc, _, _ = _run(capsys, source, "--model", model_path, "--out", tmp_path / "today")
    for name in ("s_proba.tif", "s_cells.tif"):
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "kept" / name), tifffile.imread(tmp_path / "today" / name))
    assert not np.array_equal(tifffile.imread(tmp_path / "out" / "s_proba.tif"), tifffile.imread(tmp_path / "today" / "s_proba.tif"))
    # --pixel-size wins over the tags; within 1% of the model's: as is
    rc, _, stderr = _run(capsys, source, "--model", sized, "--out", tmp_path / "same", "--pixel-size", "4.02nm", "--outputs", "proba")
    assert rc == 0 and stderr == "emseg predict: input 4.02 nm/px, model 4 nm/px: predicted as is\n"
    # an input that says nothing: the model's pixel size is assumed, in one line for all inputs
    png = _img(tmp_path / "p.png", synthetic_slice(30, 30, 1)[0])
    rc, _, stderr = _run(capsys, png, _img(tmp_path / "q.png", synthetic_slice(30, 30, 2)[0]), "--model", sized, "--out", tmp_path / "png")
    assert rc == 0 and stderr == "emseg predict: input pixel size unknown: assumed the model's 4 nm/px (give --pixel-size to rescale)\n"


def test_the_cell_step_of_the_model_file_comes_before_segment_json(model_path: Path, tmp_path: Path, capsys) -> None:
    cells = {"method": "multicut", "settings": {"beta": 0.7, "threshold": 0.3, "sigma_seeds": 1.0, "min_size": 25}, "chosen_on": "test"}
    model = _sized_model(model_path, tmp_path / "m", cells=cells)
    (model.parent / "segment.json").write_text(json.dumps({"method": "watershed", "settings": {"threshold": 0.5}}))
    source, _ = _make_input("odd_67x45", tmp_path)
    rc, stdout, stderr = _run(capsys, source, "--model", model, "--out", tmp_path / "out", "--outputs", "cells")
    assert rc == 0, stderr
    assert f"cells: multicut (beta=0.7, threshold=0.3, sigma_seeds=1, min_size=25), settings from the model file {model})" in stdout
    rc, stdout, _ = _run(capsys, source, "--model", model, "--out", tmp_path / "ws", "--outputs", "cells", "--cells", "watershed")
    assert rc == 0 and "cells: watershed, default settings" in stdout  # the model file chose another method
