"""A few checks on the real ISBI 2012 stacks (skipped where ../shared/isbi2012 is absent)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from emseg.config.layout import RAW_NAMES, png_folder
from emseg.evaluation.metrics import score
from emseg.io.images import read_stack
from emseg.preprocessing.convert import convert
from emseg.preprocessing.fetch import fetch, sha256_of

from conftest import ISBI_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not ISBI_DIR.is_dir(), reason="ISBI data not beside the repository")]

SHA256 = {
    "train-volume.tif": "a05df637d576b2387966b7323a34e90e2cdbf86dcaeee86c44d1fd2d616be489",
    "train-labels.tif": "9a9f1056ffd8bac61060b58dc84ad40295c02fc5ff15e68ddfc2f12d211c3dcf",
}


def test_fetch_and_convert_the_isbi_stacks_losslessly(tmp_path: Path) -> None:
    info = fetch(str(ISBI_DIR), tmp_path / "raw", dict(RAW_NAMES), SHA256)
    assert info["train_images"].shape == (30, 512, 512) and info["test_images"].shape == (30, 512, 512)
    counts = convert(tmp_path / "raw", tmp_path / "png")
    assert counts == {"train/images": 30, "train/labels": 30, "test/images": 30}
    original = tifffile.imread(ISBI_DIR / "train-volume.tif")
    np.testing.assert_array_equal(read_stack(png_folder(tmp_path / "png", "train_images")), original)
    assert sha256_of(tmp_path / "raw" / "train-labels.tif") == SHA256["train-labels.tif"]


def test_ground_truth_scores_perfectly_against_itself() -> None:
    labels = tifffile.imread(ISBI_DIR / "train-labels.tif")[25:30]
    result = score(labels, (labels > 0).astype(np.float32))
    assert result.v_rand == pytest.approx(1.0) and result.v_info == pytest.approx(1.0)
    assert result.pixel_error == pytest.approx(0.0)
