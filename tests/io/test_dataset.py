from pathlib import Path

import numpy as np
import pytest

from emseg.config.layout import png_folder, slice_name
from emseg.errors import EmsegError
from emseg.io.dataset import count_labelled, read_unlabelled
from emseg.io.images import write_png


def test_unlabelled_slices_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    folder = png_folder(tmp_path, "test_images")
    for index in (0, 1, 3):
        write_png(folder / slice_name(index), np.full((4, 5), index, np.uint8))
    with pytest.raises(EmsegError, match=r"test/images/slice_002.png: file not found \(the unlabelled slices must be numbered"):
        read_unlabelled(tmp_path)
    write_png(folder / slice_name(2), np.full((4, 5), 2, np.uint8))
    assert [int(s[0, 0]) for s in read_unlabelled(tmp_path)] == [0, 1, 2, 3]
    for index in range(2):
        write_png(png_folder(tmp_path, "train_images") / slice_name(index), np.zeros((4, 5), np.uint8))
    assert count_labelled(tmp_path) == 2


