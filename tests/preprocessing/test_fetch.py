from pathlib import Path

import numpy as np
import pytest
import tifffile

from emseg.errors import EmsegError
from emseg.preprocessing.fetch import RAW_NAMES, fetch, sha256_of

NAMES = dict(RAW_NAMES)


def test_fetch_copies_and_reports_stacks(isbi_like_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    info = fetch(str(isbi_like_source), out, NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(RAW_NAMES.values())
    assert info["train_images"].shape == (8, 96, 80)
    assert info["test_images"].shape == (3, 96, 80)


def test_fetch_checks_sha256(isbi_like_source: Path, tmp_path: Path) -> None:
    good = sha256_of(isbi_like_source / "train-volume.tif")
    fetch(str(isbi_like_source), tmp_path / "ok", NAMES, {"train-volume.tif": good})
    with pytest.raises(EmsegError, match="sha256"):
        fetch(str(isbi_like_source), tmp_path / "bad", NAMES, {"train-volume.tif": "0" * 64})
    assert not any((tmp_path / "bad").glob("*.tif"))


def test_missing_source_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match="source folder not found"):
        fetch(str(tmp_path / "nowhere"), tmp_path / "raw", NAMES)


def test_mismatched_counts_leave_nothing_behind(isbi_like_source: Path, tmp_path: Path) -> None:
    labels = tifffile.imread(isbi_like_source / "train-labels.tif")
    tifffile.imwrite(isbi_like_source / "train-labels.tif", labels[:5], photometric="minisblack")
    out = tmp_path / "raw"
    with pytest.raises(EmsegError, match="train-labels.tif.*does not match"):
        fetch(str(isbi_like_source), out, NAMES)
    assert not any(out.glob("*.tif"))


def test_non_binary_labels_are_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    labels = tifffile.imread(isbi_like_source / "train-labels.tif")
    labels[0, 0, :3] = [1, 2, 3]
    tifffile.imwrite(isbi_like_source / "train-labels.tif", labels, photometric="minisblack")
    with pytest.raises(EmsegError, match="binary"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)


def test_text_file_named_tif_is_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    (isbi_like_source / "test-volume.tif").write_text("not an image")
    with pytest.raises(EmsegError, match="test-volume.tif: not a readable TIFF"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)


def test_four_dimensional_tiff_is_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    tifffile.imwrite(isbi_like_source / "test-volume.tif", np.zeros((2, 2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(EmsegError, match="expected a 2-D image or 3-D stack"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)
