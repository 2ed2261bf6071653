"""Tests of ``emseg score`` (run in-process through emseg.cli.main.main)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from emseg.cli.main import main
from emseg.evaluation.metrics import score

from conftest import tif


def _stack() -> tuple[np.ndarray, np.ndarray]:
    """Two 12x10 label slices (0 = membrane, 255 = cell) and a noisy cell-probability map."""
    labels = np.full((2, 12, 10), 255, np.uint8)
    labels[:, :, 4] = 0
    labels[1, 6, :] = 0
    rng = np.random.default_rng(3)
    proba = np.clip((labels > 0) * 0.8 + rng.normal(0, 0.15, labels.shape), 0, 1).astype(np.float32)
    return labels, proba


def _tif(path: Path, stack: np.ndarray) -> Path:
    tifffile.imwrite(path, stack, photometric="minisblack")
    return path


def _write_png_folder(folder: Path, stack: np.ndarray) -> Path:
    folder.mkdir()
    for i, s in enumerate(stack):
        Image.fromarray(s).save(folder / f"slice_{i:03d}.png")
    return folder


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["score", *argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_tiff_inputs_and_json(tmp_path, capsys):
    labels, proba = _stack()
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "proba.tif", proba)
    out_json = tmp_path / "out" / "scores.json"
    rc, out, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "proba.tif"), "--json", str(out_json))
    assert rc == 0, err
    assert "V_rand" in out and "V_info" in out and "pixel err" in out
    assert len([ln for ln in out.splitlines() if ln.strip().startswith(("0.", "1."))]) >= 11  # the table
    data = json.loads(out_json.read_text())
    expected = score(labels, proba)
    for key in ("v_rand", "v_info", "pixel_error", "pixel_error_plain", "dice", "iou", "v_rand_threshold"):
        assert data[key] == pytest.approx(getattr(expected, key))
    assert len(data["per_threshold"]["v_rand"]) == 11
    assert len(data["per_slice"]["v_rand"]) == 2
    assert data["membrane"] is False


def test_png_folders_with_8bit_map(tmp_path, capsys):
    labels, proba = _stack()
    proba8 = np.round(proba * 255).astype(np.uint8)
    lab_dir = _write_png_folder(tmp_path / "labels", labels)
    prob_dir = _write_png_folder(tmp_path / "proba", proba8)
    out_json = tmp_path / "s.json"
    rc, out, err = _run(capsys, str(lab_dir), str(prob_dir), "--json", str(out_json))
    assert rc == 0, err
    expected = score(labels, (proba8 / 255.0).astype(np.float32))  # 8-bit read as value / 255
    assert json.loads(out_json.read_text())["v_rand"] == pytest.approx(expected.v_rand)


def test_16bit_map(tmp_path, capsys):
    labels, proba = _stack()
    proba16 = np.round(proba * 65535).astype(np.uint16)
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "proba16.tif", proba16)
    rc, _, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "proba16.tif"), "--json", str(tmp_path / "o.json"))
    assert rc == 0, err
    expected = score(labels, (proba16 / 65535.0).astype(np.float32))
    assert json.loads((tmp_path / "o.json").read_text())["v_info"] == pytest.approx(expected.v_info)


def test_membrane_flag(tmp_path, capsys):
    labels, proba = _stack()
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "cell.tif", proba)
    _tif(tmp_path / "membrane.tif", (1 - proba).astype(np.float32))
    rc1, _, _ = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "cell.tif"), "--json", str(tmp_path / "a.json"))
    rc2, _, _ = _run(
        capsys, str(tmp_path / "labels.tif"), str(tmp_path / "membrane.tif"), "--membrane", "--json", str(tmp_path / "b.json")
    )
    assert rc1 == rc2 == 0
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["membrane"] is True
    for key in ("v_rand", "v_info", "pixel_error"):
        assert b[key] == pytest.approx(a[key], abs=1e-6)


def _assert_one_error_line(rc: int, err: str, *names: str) -> None:
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("emseg: error:")
    assert "Traceback" not in err
    for name in names:
        assert name in lines[0]


def test_mismatched_slice_counts(tmp_path, capsys):
    labels, proba = _stack()
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "three.tif", np.concatenate([proba, proba[:1]]))
    rc, out, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "three.tif"))
    _assert_one_error_line(rc, err, "labels.tif", "three.tif")
    assert out == ""


def test_mismatched_slice_size(tmp_path, capsys):
    labels, proba = _stack()
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "small.tif", proba[:, :8, :8])
    rc, _, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "small.tif"))
    _assert_one_error_line(rc, err, "labels.tif", "small.tif")


@pytest.mark.parametrize("bad", ["nan", "range"])
def test_bad_float_map(tmp_path, capsys, bad):
    labels, proba = _stack()
    proba = proba.copy()
    proba[1, 2, 3] = np.nan if bad == "nan" else 1.5
    _tif(tmp_path / "labels.tif", labels)
    _tif(tmp_path / "bad.tif", proba)
    rc, _, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "bad.tif"))
    _assert_one_error_line(rc, err, "bad.tif")
    assert ("NaN" in err) if bad == "nan" else ("[0, 1]" in err)


def test_missing_file(tmp_path, capsys):
    labels, _ = _stack()
    _tif(tmp_path / "labels.tif", labels)
    rc, _, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "nope.tif"))
    _assert_one_error_line(rc, err, "nope.tif")


def test_labels_with_no_cell_are_refused_with_a_reason(tmp_path: Path, capsys) -> None:
    tif(tmp_path / "labels.tif", np.zeros((2, 16, 16), np.uint8))
    tif(tmp_path / "proba.tif", np.full((2, 16, 16), 0.5, np.float32))
    rc, out, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "proba.tif"))
    assert rc == 2 and out == ""
    assert err.strip() == (
        f"emseg: error: {tmp_path / 'labels.tif'}: labels hold no cell (every pixel is 0 = membrane), "
        "so every score would be 0; labels need 0 = membrane and > 0 = cell"
    )


def test_empty_slices_and_inverted_labels_are_warned_about(tmp_path: Path, capsys) -> None:
    labels = np.zeros((3, 16, 16), np.uint8)
    labels[0, :, 3] = 255  # a "cell" one pixel wide: membranes marked > 0, the other way round
    labels[2, 4:6] = 255
    tif(tmp_path / "labels.tif", labels)
    tif(tmp_path / "proba.tif", np.full((3, 16, 16), 0.5, np.float32))
    rc, out, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "proba.tif"))
    assert rc == 0 and "V_rand (best)" in out
    lines = err.strip().splitlines()
    assert lines[0] == f"emseg score: warning: {tmp_path / 'labels.tif'}: slice(s) 2 hold no cell (all 0 = membrane) and score 0"
    assert lines[1].startswith(f"emseg score: warning: {tmp_path / 'labels.tif'}: only 6% of the label pixels are cell (> 0)")
    assert "invert them" in lines[1] and len(lines) == 2


def test_ordinary_labels_draw_no_warning(tmp_path: Path, capsys) -> None:
    labels = np.full((1, 16, 16), 255, np.uint8)
    labels[0, :, 8] = 0
    tif(tmp_path / "labels.tif", labels)
    tif(tmp_path / "proba.tif", (labels / 255.0).astype(np.float32))
    rc, _, err = _run(capsys, str(tmp_path / "labels.tif"), str(tmp_path / "proba.tif"))
    assert rc == 0 and err == ""
