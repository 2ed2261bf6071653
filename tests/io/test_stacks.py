"""emseg.io.stacks: one reader for TIFF stacks and slices, folders of slices, OME-Zarr and HDF5, with the voxel size in nm."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from emseg.errors import EmsegError
from emseg.io.stacks import VoxelSize, hdf5_scale, is_zarr, load_stack, split_hdf5_spec, tiff_voxel_size

STACK = np.arange(3 * 6 * 5, dtype=np.uint16).reshape(3, 6, 5)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def test_a_multi_page_imagej_tiff_and_its_voxel_size(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, STACK, imagej=True, resolution=(1 / 0.004, 1 / 0.004), metadata={"unit": "um", "spacing": 0.05, "axes": "ZYX"})
    stack = load_stack(path)
    np.testing.assert_array_equal(stack.pixels, STACK)
    assert stack.pixel_size == VoxelSize(4.0, 4.0, 50.0) and stack.slice_files is None


def test_tiff_resolution_tags_in_cm_count_and_screen_defaults_do_not(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cm.tif", STACK[0], resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", STACK[0], resolution=(72, 72), resolutionunit="INCH")
    assert tiff_voxel_size(tmp_path / "cm.tif") == VoxelSize(4.0, 4.0)
    assert tiff_voxel_size(tmp_path / "dpi.tif") is None


def test_ome_tiff_physical_sizes(tmp_path: Path) -> None:
    path = tmp_path / "s.ome.tif"
    tifffile.imwrite(path, STACK, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 5.0, "PhysicalSizeXUnit": "nm",
                                                       "PhysicalSizeY": 5.0, "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 0.04})
    assert load_stack(path).pixel_size == VoxelSize(5.0, 5.0, 40.0)  # z in the default unit, µm


def test_single_slices_read_as_one_slice_stacks(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "one.tif", STACK[0])
    mask = _png(tmp_path / "mask.png", STACK[0] > 40)  # a 1-bit PNG
    assert load_stack(tmp_path / "one.tif").pixels.shape == (1, 6, 5)
    read = load_stack(mask)
    assert read.pixels.dtype == bool and read.pixel_size is None
    np.testing.assert_array_equal(read.pixels[0], STACK[0] > 40)


def test_a_folder_is_its_slices_in_name_order(tmp_path: Path) -> None:
    for name, index in (("b.png", 1), ("a.tif", 0), ("c.png", 2)):
        (tmp_path / "f").mkdir(exist_ok=True)
        (tifffile.imwrite(tmp_path / "f" / name, STACK[index]) if name.endswith(".tif") else _png(tmp_path / "f" / name, STACK[index]))
    (tmp_path / "f" / "notes.txt").write_text("not a slice")
    stack = load_stack(tmp_path / "f")
    np.testing.assert_array_equal(stack.pixels, STACK)
    assert stack.slice_files == ("a.tif", "b.png", "c.png")


@pytest.mark.parametrize(
    ("odd", "message"),
    [(np.zeros((6, 4), np.uint16), r"c\.png: slice 6x4 uint16 differs from the folder's first, a\.png, 6x5 uint16"),
     (np.zeros((6, 5), np.uint8), r"c\.png: slice 6x5 uint8 differs")],
)
def test_a_folder_slice_of_another_shape_or_type_is_named(tmp_path: Path, odd: np.ndarray, message: str) -> None:
    _png(tmp_path / "f" / "a.png", STACK[0])
    _png(tmp_path / "f" / "b.png", STACK[1])
    _png(tmp_path / "f" / "c.png", odd)
    with pytest.raises(EmsegError, match=message):
        load_stack(tmp_path / "f")


def test_a_folder_holds_one_slice_per_file(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "a.tif", STACK, photometric="minisblack")
    with pytest.raises(EmsegError, match=r"a\.tif: holds 3 slices; a folder of slices holds one slice per file"):
        load_stack(tmp_path / "f")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmsegError, match="folder holds no image files"):
        load_stack(tmp_path / "empty")


def _ome_zarr(path: Path, data: np.ndarray, axes: list[dict], scale: list[float]) -> Path:
    """An OME-Zarr 0.4 image of one level, written with zarr alone."""
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", data=data, chunks=data.shape)
    root.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}]
    return path


def test_ome_zarr_drops_a_single_channel_and_reads_the_scale(tmp_path: Path) -> None:
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space", "unit": u} for n, u in (("z", "micrometer"), ("y", "nanometer"), ("x", "nanometer"))]
    path = _ome_zarr(tmp_path / "s.ome.zarr", STACK[np.newaxis], axes, [1.0, 0.05, 4.0, 4.0])
    stack = load_stack(path)
    np.testing.assert_array_equal(stack.pixels, STACK)
    assert stack.pixel_size == VoxelSize(4.0, 4.0, 50.0)


def test_ome_zarr_with_channels_is_refused(tmp_path: Path) -> None:
    axes = [{"name": "c", "type": "channel"}] + [{"name": n, "type": "space"} for n in "zyx"]
    path = _ome_zarr(tmp_path / "s.zarr", np.stack([STACK, STACK]), axes, [1.0] * 4)
    with pytest.raises(EmsegError, match=r"s\.zarr: axes czyx .*c=2; give one grey channel"):
        load_stack(path)


def test_a_plain_zarr_array_has_no_pixel_size(tmp_path: Path) -> None:
    zarr.create_array(str(tmp_path / "plain.zarr"), data=STACK)
    stack = load_stack(tmp_path / "plain.zarr")
    assert stack.pixel_size is None and stack.pixels.shape == (3, 6, 5)


def test_hdf5_dataset_and_element_size_um(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["raw"] = STACK
        f["raw"].attrs["element_size_um"] = [0.05, 0.004, 0.004]
        f["labels"] = STACK > 40
    stack = load_stack(f"{tmp_path / 'v.h5'}:/raw")
    np.testing.assert_array_equal(stack.pixels, STACK)
    assert stack.pixel_size == VoxelSize(4.0, 4.0, 50.0)
    assert load_stack(f"{tmp_path / 'v.h5'}:labels").pixels.dtype == bool
    with pytest.raises(EmsegError, match=r"v\.h5: holds 2 datasets \(/labels, /raw\); name one"):
        load_stack(tmp_path / "v.h5")
    with pytest.raises(EmsegError, match=r"v\.h5: no dataset /gt"):
        load_stack(f"{tmp_path / 'v.h5'}:/gt")


def test_hdf5_resolution_with_a_unit_and_a_lone_dataset(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "v.hdf5", "w") as f:
        f["vol"] = STACK[0]
        f["vol"].attrs["resolution"] = [4.6, 4.6]
        f["vol"].attrs["unit"] = "nm"
    stack = load_stack(tmp_path / "v.hdf5")
    assert stack.pixels.shape == (1, 6, 5) and stack.pixel_size == VoxelSize(4.6, 4.6)


@pytest.mark.parametrize(("name", "message"), [("gone.tif", "no such file or folder"), ("notes.txt", "unsupported file type '.txt'"),
                                               ("gone.h5:/raw", "no such file")])
def test_unreadable_specs_are_one_line(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EmsegError, match=message) as info:
        load_stack(f"{tmp_path}/{name}")
    assert "\n" not in str(info.value)


def test_specs_and_voxel_sizes() -> None:
    assert split_hdf5_spec("a/b.h5:/raw") == ("a/b.h5", "/raw") and split_hdf5_spec("b.hdf5") == ("b.hdf5", None)
    assert split_hdf5_spec("b.tif") is None and is_zarr("x.ome.zarr") and not is_zarr("x.tif")
    size = VoxelSize.of([50, 4, 4])
    assert size == VoxelSize(4.0, 4.0, 50.0) and size.as_list() == [50.0, 4.0, 4.0] and VoxelSize.of([4.6, 4.6]).as_list() == [4.6, 4.6]
    assert size.agrees_with(VoxelSize(4.002, 4.0)) and not size.agrees_with(VoxelSize(4.6, 4.6))
    assert not size.agrees_with(VoxelSize(4.0, 4.0, 45.0))
    assert str(size) == "4 nm, sections 50 nm"
    with pytest.raises(EmsegError, match=r"pixel size \[4\]"):
        VoxelSize.of([4])


@pytest.mark.parametrize(("attrs", "expected"), [
    ({"element_size_um": [0.05, 0.004, 0.004]}, ([0.05, 0.004, 0.004], "micrometer")),
    ({"element_size_um": 0.004}, ([0.004] * 3, "micrometer")),  # one number: all three axes
    ({"element_size_um": [0, 1, 1], "resolution": [4, 4], "unit": b"nm"}, ([4.0, 4.0], "nanometer")),  # broken: the next one
    ({"resolution": [50, 4, 4], "unit": "parsecs"}, ([50.0, 4.0, 4.0], None)),  # the numbers, the unit unknown
    ({"resolution": [50, 4, 4, 4]}, None),
    ({}, None),
])
def test_hdf5_scale_is_the_numbers_in_their_own_unit(attrs: dict, expected) -> None:
    assert hdf5_scale(attrs) == expected
