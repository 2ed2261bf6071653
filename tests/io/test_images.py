from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from emseg.errors import EmsegError
from emseg.io.images import read_stack, write_png, write_tiff


def test_tiff_png_and_folder_round_trip(tmp_path: Path) -> None:
    stack = np.arange(3 * 5 * 7, dtype=np.uint16).reshape(3, 5, 7) * 100
    write_tiff(tmp_path / "s.tif", stack)
    np.testing.assert_array_equal(read_stack(tmp_path / "s.tif"), stack)
    for i, image in enumerate(stack):
        write_png(tmp_path / "png" / f"{i}.png", image)
    np.testing.assert_array_equal(read_stack(tmp_path / "png"), stack)


def test_rgb_png_is_grey_only_when_allowed(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 8, 3), 200, np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(EmsegError, match="colour channels"):
        read_stack(tmp_path / "rgb.png")
    assert read_stack(tmp_path / "rgb.png", allow_rgb=True).shape == (1, 6, 8)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "file is empty"), (b"hello", "not a readable TIFF")],
)
def test_bad_tiff_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.tif"
    path.write_bytes(content)
    with pytest.raises(EmsegError, match=message) as info:
        read_stack(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_tiff(tmp_path: Path) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.ones((4, 64, 64), np.uint8), photometric="minisblack")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(EmsegError, match="cut.tif"):
        read_stack(path)


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(EmsegError, match="unsupported file type"):
        read_stack(tmp_path / "x.bmp")
    with pytest.raises(EmsegError, match="file not found"):
        read_stack(tmp_path / "missing.tif")


def test_tiff_appended_page_by_page_is_read_whole(tmp_path: Path) -> None:
    # each imwrite(append=True) starts a new TIFF series; all of them are slices
    path = tmp_path / "appended.tif"
    stack = np.arange(4 * 6 * 5, dtype=np.uint8).reshape(4, 6, 5)
    tifffile.imwrite(path, stack[0])
    tifffile.imwrite(path, stack[1], append=True)
    tifffile.imwrite(path, stack[2:], append=True)
    np.testing.assert_array_equal(read_stack(path), stack)


def test_tiff_series_of_different_shapes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), append=True)
    with pytest.raises(EmsegError, match=r"mixed\.tif: TIFF holds 2 image series .*4x4 uint8, 8x8 uint8") as info:
        read_stack(path)
    assert "\n" not in str(info.value)


def test_tiff_thumbnail_is_not_a_slice(tmp_path: Path) -> None:
    path = tmp_path / "with-thumbnail.tif"
    stack = np.arange(2 * 12 * 10, dtype=np.uint8).reshape(2, 12, 10)
    with tifffile.TiffWriter(path) as tif:
        tif.write(stack, photometric="minisblack")
        tif.write(np.zeros((3, 3), np.uint8), photometric="minisblack", subfiletype=1)
    np.testing.assert_array_equal(read_stack(path), stack)


