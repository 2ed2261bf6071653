"""emseg.inference.inputs: finding and checking what `emseg predict` is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from emseg.errors import EmsegError
from emseg.inference.inputs import colour_note, discover_inputs, inspect_inputs

from conftest import synthetic_slice


def test_folders_expand_to_their_image_files(tmp_path: Path) -> None:
    folder = tmp_path / "slices"
    folder.mkdir()
    for name in ("b.png", "a.tif", "notes.txt"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "c.jpg"
    assert discover_inputs([folder, single]) == [folder / "a.tif", folder / "b.png", single]
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmsegError, match="empty: folder holds no image files"):
        discover_inputs([tmp_path / "empty"])


def test_inspect_reads_flags_colour_and_refuses_non_finite(tmp_path: Path) -> None:
    grey, _ = synthetic_slice(20, 24, 0)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    items = inspect_inputs([tmp_path / "grey.png", tmp_path / "rgb.png"], cache_bytes=grey.nbytes)
    assert [item.colour for item in items] == [False, True]
    assert [item.shape for item in items] == [(1, 20, 24)] * 2
    assert items[0].array is not None and items[1].array is None  # over the cache budget: read again later
    np.testing.assert_array_equal(items[1].read()[0], items[0].read()[0])
    bad = np.ones((8, 8), np.float32)
    bad[2, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    with pytest.raises(EmsegError, match="nan.tif: image contains NaN"):
        inspect_inputs([tmp_path / "nan.tif"])
    assert colour_note(items) == f"colour converted to grey (0.299 R + 0.587 G + 0.114 B) for {tmp_path / 'rgb.png'}"
    assert colour_note(items[:1]) is None
