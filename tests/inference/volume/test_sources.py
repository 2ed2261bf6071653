"""emseg.inference.volume.sources: lazy OME-Zarr / HDF5 / TIFF readers, their voxel sizes, and one clear error per bad input."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from emseg.errors import EmsegError
from emseg.inference.volume.omezarr import create_ome_zarr, open_level
from emseg.inference.volume.sources import VolumeSource, is_volume_spec, open_volume
from emseg.segmentation.measurements import PixelSize

DATA = np.arange(3 * 12 * 17, dtype=np.uint16).reshape(3, 12, 17)
PLANE = np.arange(9 * 13, dtype=np.float32).reshape(9, 13)


def _ome_zarr_v04(path: Path, data: np.ndarray, axes: list[dict], scales: list[float], top_scale: list[float] | None = None) -> Path:
    """An OME-Zarr v0.4 image written by hand (one level), for axes create_ome_zarr never writes."""
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    root = zarr.open_group(str(path), mode="w-", zarr_format=2)
    root.create_array("0", data=data, chunks=data.shape)
    write_multiscales_metadata(root, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scales}]}],
                               fmt=FormatV04(), axes=axes)
    if top_scale is not None:
        image = dict(root.attrs)["multiscales"]
        image[0]["coordinateTransformations"] = [{"type": "scale", "scale": top_scale}]
        root.attrs["multiscales"] = image
    return path


def _space(name: str, unit: str | None = "nanometer") -> dict:
    return {"name": name, "type": "space", **({"unit": unit} if unit else {})}


CHANNEL = {"name": "c", "type": "channel"}
TIME = {"name": "t", "type": "time"}


# --- which inputs are volumes, and their stems ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stack.ome.zarr", True),
        ("stack.zarr/", True),
        ("a.h5", True),
        ("a.hdf5:/raw", True),
        ("dir/a.HDF:volumes/raw", True),
        ("a.tif", False),
        ("a.png", False),
        ("a.h5.tif", False),
        ("folder", False),
    ],
)
def test_is_volume_spec(text: str, expected: bool) -> None:
    assert is_volume_spec(text) is expected


@pytest.mark.parametrize(
    ("spec", "file", "stem"),
    [
        ("d/sample.ome.zarr", "d/sample.ome.zarr", "sample"),
        ("d/sample.zarr", "d/sample.zarr", "sample"),
        ("a.h5:/raw", "a.h5", "a"),
        ("b.hdf5:raw", "b.hdf5", "b"),
        ("c.hdf", "c.hdf", "c"),
        ("big.tiff", "big.tiff", "big"),
        ("big.ome.tif", "big.ome.tif", "big"),
    ],
)
def test_stem_drops_the_image_suffix(spec: str, file: str, stem: str) -> None:
    assert VolumeSource(spec, "hdf5", (1, 1, 1), "uint8", file=file).stem == stem


# --- OME-Zarr and plain zarr ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip(tmp_path: Path, version: str) -> None:
    path = tmp_path / "em.ome.zarr"
    create_ome_zarr(path, DATA.shape, DATA.dtype, 8, (40.0, 4.0, 4.0), "nm", version=version)
    open_level(path, 0)[:] = DATA
    source = open_volume(str(path))
    assert (source.kind, source.shape, source.dtype, source.scale, source.unit) == (
        "ome-zarr", (3, 12, 17), "uint16", (40.0, 4.0, 4.0), "nanometer")
    assert source.pixel_size() == PixelSize(4.0, "nm")
    region = source.read(1, slice(2, 7), slice(3, 15))
    assert region.dtype == np.uint16 and region.shape == (5, 12)
    np.testing.assert_array_equal(region, DATA[1, 2:7, 3:15])
    np.testing.assert_array_equal(source.read(slice(1, 3), slice(0, 4), slice(5, 6)), DATA[1:3, 0:4, 5:6])
    np.testing.assert_array_equal(source.read(-1, slice(None), slice(None)), DATA[-1])


@pytest.mark.parametrize(
    ("axes", "data", "scales", "shape", "scale"),
    [
        # leading t and c of size 1 are dropped
        ([TIME, CHANNEL, _space("z"), _space("y"), _space("x")], DATA[None, None], [1, 1, 50.0, 5.0, 5.0], (3, 12, 17), (50.0, 5.0, 5.0)),
        ([CHANNEL, _space("y"), _space("x")], PLANE[None], [1, 2.0, 2.0], (1, 9, 13), (1.0, 2.0, 2.0)),
        ([_space("y"), _space("x")], PLANE, [3.0, 3.0], (1, 9, 13), (1.0, 3.0, 3.0)),
        # z in micrometres, y and x in nanometres: one unit, y's
        ([_space("z", "micrometer"), _space("y"), _space("x")], DATA, [0.05, 4.0, 4.0], (3, 12, 17), (50.0, 4.0, 4.0)),
    ],
)
def test_ome_zarr_axes(tmp_path: Path, axes, data, scales, shape, scale) -> None:
    path = _ome_zarr_v04(tmp_path / "v.ome.zarr", data, axes, scales)
    source = open_volume(str(path))
    assert source.shape == shape and source.scale == pytest.approx(scale) and source.unit == "nanometer"
    expected = data.reshape(shape)
    np.testing.assert_array_equal(source.read(slice(None), slice(None), slice(None)), expected)
    np.testing.assert_array_equal(source.read(0, slice(1, 4), slice(2, 8)), expected[0, 1:4, 2:8])


def test_multiscale_level_scale_multiplies_the_dataset_scale(tmp_path: Path) -> None:
    path = _ome_zarr_v04(tmp_path / "v.ome.zarr", DATA, [_space(a, "micrometer") for a in "zyx"], [1.0, 2.0, 2.0],
                         top_scale=[0.03, 0.002, 0.002])
    source = open_volume(str(path))
    assert source.scale == pytest.approx((0.03, 0.004, 0.004)) and source.unit == "micrometer"
    assert source.pixel_size() == PixelSize(4.0, "nm")


def test_ome_zarr_without_units_has_no_pixel_size(tmp_path: Path) -> None:
    path = _ome_zarr_v04(tmp_path / "v.ome.zarr", DATA, [_space(a, None) for a in "zyx"], [1.0, 1.0, 1.0])
    source = open_volume(str(path))
    assert source.unit is None and source.pixel_size() is None


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize(("data", "shape"), [(DATA, (3, 12, 17)), (PLANE, (1, 9, 13))])
def test_plain_zarr_array(tmp_path: Path, zarr_format: int, data: np.ndarray, shape) -> None:
    path = tmp_path / "plain.zarr"
    zarr.create_array(str(path), data=data, chunks=(4,) * data.ndim, zarr_format=zarr_format)
    source = open_volume(str(path))
    assert (source.shape, source.dtype, source.scale, source.unit) == (shape, data.dtype.name, (1.0, 1.0, 1.0), None)
    np.testing.assert_array_equal(source.read(0, slice(1, 5), slice(2, 9)), data.reshape(shape)[0, 1:5, 2:9])


# --- HDF5 ----------------------------------------------------------------------------------------


@pytest.fixture()
def h5_file(tmp_path: Path) -> Path:
    path = tmp_path / "sample.h5"
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("raw", data=DATA, chunks=(1, 6, 6))
        raw.attrs["element_size_um"] = [0.04, 0.004, 0.004]
        f.create_dataset("labels", data=DATA.astype(np.uint32))
        f.create_dataset("volumes/plane", data=PLANE)
        f["volumes/plane"].attrs["resolution"] = [8.0, 8.0]
        f["volumes/plane"].attrs["unit"] = "nm"
    return path


@pytest.mark.parametrize(("inner", "shape", "dtype"), [
    (":/raw", (3, 12, 17), "uint16"),
    (":raw", (3, 12, 17), "uint16"),
    (":/labels", (3, 12, 17), "uint32"),
    (":volumes/plane", (1, 9, 13), "float32"),
])
def test_hdf5_dataset_paths(h5_file: Path, inner: str, shape, dtype) -> None:
    source = open_volume(f"{h5_file}{inner}")
    assert (source.kind, source.shape, source.dtype, source.stem) == ("hdf5", shape, dtype, "sample")
    expected = (DATA if dtype != "float32" else PLANE).reshape(shape).astype(dtype)
    np.testing.assert_array_equal(source.read(0, slice(2, 8), slice(1, 12)), expected[0, 2:8, 1:12])
    np.testing.assert_array_equal(source.read(slice(None), slice(None), slice(None)), expected)


def test_hdf5_missing_dataset_names_the_ones_there(h5_file: Path) -> None:
    with pytest.raises(EmsegError) as caught:
        open_volume(f"{h5_file}:/foo")
    assert str(caught.value) == f"{h5_file}: no dataset /foo (datasets: /labels, /raw, /volumes/plane)"


def test_hdf5_without_dataset_needs_a_single_dataset(h5_file: Path, tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match="3 datasets.*/labels, /raw, /volumes/plane"):
        open_volume(str(h5_file))
    single = tmp_path / "one.hdf5"
    with h5py.File(single, "w") as f:
        f.create_dataset("group/inner/em", data=DATA)
    source = open_volume(str(single))
    assert source.shape == (3, 12, 17) and source.stem == "one"
    np.testing.assert_array_equal(source.read(2, slice(None), slice(None)), DATA[2])


@pytest.mark.parametrize(("attrs", "scale", "unit", "size"), [
    ({"element_size_um": [0.04, 0.004, 0.004]}, (0.04, 0.004, 0.004), "micrometer", PixelSize(4.0, "nm")),
    ({"element_size_um": [0.5, 0.5]}, (1.0, 0.5, 0.5), "micrometer", PixelSize(500.0, "nm")),
    ({"resolution": [40.0, 4.0, 4.0], "unit": "nm"}, (40.0, 4.0, 4.0), "nanometer", PixelSize(4.0, "nm")),
    ({"resolution": [40.0, 4.0, 4.0], "unit": b"micrometer"}, (40.0, 4.0, 4.0), "micrometer", PixelSize(4.0, "um")),
    ({"resolution": [40.0, 4.0, 4.0]}, (40.0, 4.0, 4.0), None, None),  # numbers without a unit: unit unknown
    ({}, (1.0, 1.0, 1.0), None, None),
])
def test_hdf5_voxel_size(tmp_path: Path, attrs: dict, scale, unit, size) -> None:
    path = tmp_path / "v.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=DATA).attrs.update(attrs)
    source = open_volume(f"{path}:/raw")
    assert source.scale == pytest.approx(scale) and source.unit == unit and source.pixel_size() == size


# --- TIFF ----------------------------------------------------------------------------------------


def test_tiff_region_is_read_lazily_and_equals_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, DATA, imagej=True, resolution=(1 / 0.004, 1 / 0.004),
                     metadata={"spacing": 0.05, "unit": "um", "axes": "ZYX"})
    source = open_volume(str(path), tiff=True)
    assert (source.kind, source.shape, source.dtype, source.stem) == ("tiff", (3, 12, 17), "uint16", "stack")
    assert source.pixel_size() == PixelSize(4.0, "nm")
    assert source.unit == "nanometer" and source.scale == pytest.approx((50.0, 4.0, 4.0))
    full = tifffile.imread(path)
    np.testing.assert_array_equal(source.read(1, slice(3, 10), slice(2, 16)), full[1, 3:10, 2:16])
    np.testing.assert_array_equal(source.read(slice(0, 2), slice(None), slice(0, 5)), full[0:2, :, 0:5])


def test_ome_tiff_voxel_size_comes_in_the_pixel_unit(tmp_path: Path) -> None:
    path = tmp_path / "v.ome.tif"
    tifffile.imwrite(path, DATA, metadata={"axes": "ZYX", "PhysicalSizeX": 0.004, "PhysicalSizeY": 0.004, "PhysicalSizeZ": 0.05})
    source = open_volume(str(path), tiff=True)
    assert source.unit == "nanometer" and source.scale == pytest.approx((50.0, 4.0, 4.0)) and source.pixel_size() == PixelSize(4.0, "nm")


@pytest.mark.parametrize("pages", [1, 4])
def test_plain_tiff_pages(tmp_path: Path, pages: int) -> None:
    data = np.random.default_rng(3).integers(0, 255, (pages, 10, 11), dtype=np.uint8)
    path = tmp_path / "pages.tiff"
    tifffile.imwrite(path, data if pages > 1 else data[0], photometric="minisblack")
    source = open_volume(str(path), tiff=True)
    assert source.shape == (pages, 10, 11) and source.unit is None and source.pixel_size() is None
    for z in range(pages):
        np.testing.assert_array_equal(source.read(z, slice(None), slice(None)), data[z])


def test_a_tiff_needs_tiff_true(tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, PLANE)
    with pytest.raises(EmsegError, match="a.tif"):
        open_volume(str(path))


# --- 2-D inputs are Z = 1 ------------------------------------------------------------------------


def _plane_sources(tmp_path: Path) -> list[VolumeSource]:
    tifffile.imwrite(tmp_path / "p.tif", PLANE, photometric="minisblack")
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["img"] = PLANE
    zarr.create_array(str(tmp_path / "p.zarr"), data=PLANE)
    create_ome_zarr(tmp_path / "p.ome.zarr", (1, 9, 13), PLANE.dtype, 16, (1.0, 1.0, 1.0), None)
    open_level(tmp_path / "p.ome.zarr", 0)[:] = PLANE[None]
    return [open_volume(str(tmp_path / "p.tif"), tiff=True), open_volume(str(tmp_path / "p.h5")),
            open_volume(str(tmp_path / "p.zarr")), open_volume(str(tmp_path / "p.ome.zarr"))]


def test_two_d_inputs_are_one_slice(tmp_path: Path) -> None:
    for source in _plane_sources(tmp_path):
        assert source.shape == (1, 9, 13), source.kind
        np.testing.assert_array_equal(source.read(0, slice(2, 5), slice(None)), PLANE[2:5])
        assert source.read(slice(None), slice(None), slice(0, 3)).shape == (1, 9, 3)
        assert source.read(slice(1, None), slice(None), slice(None)).shape == (0, 9, 13)
        with pytest.raises(IndexError):
            source.read(1, slice(None), slice(None))


# --- pickling ------------------------------------------------------------------------------------


def _read_corner(source: VolumeSource) -> np.ndarray:
    return source.read(0, slice(0, 3), slice(0, 3))


def test_sources_pickle_and_read_again(tmp_path: Path, h5_file: Path) -> None:
    sources = _plane_sources(tmp_path) + [open_volume(f"{h5_file}:/raw")]
    for source in sources:
        before = _read_corner(source)  # opens (and caches) the file in this process
        copy = pickle.loads(pickle.dumps(source))
        assert copy == source
        np.testing.assert_array_equal(_read_corner(copy), before)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_forked_worker_reopens_the_hdf5_file(h5_file: Path) -> None:
    source = open_volume(f"{h5_file}:/raw")
    expected = _read_corner(source)  # a handle open in the parent before the fork
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.map(_read_corner, [source])[0]
    np.testing.assert_array_equal(got, expected)


# --- bad inputs: one EmsegError naming the path ---------------------------------------------------


def _four_d_two_channels(tmp_path: Path) -> str:
    data = np.zeros((2, 3, 8, 8), np.uint8)
    return str(_ome_zarr_v04(tmp_path / "czyx.ome.zarr", data, [CHANNEL, _space("z"), _space("y"), _space("x")], [1, 1, 1, 1]))


def _not_a_store(tmp_path: Path) -> str:
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "readme.txt").write_text("not zarr")
    return str(folder)


def _plain_folder(tmp_path: Path) -> str:
    (tmp_path / "plain").mkdir()
    return str(tmp_path / "plain")


def _rgb_tiff(tmp_path: Path) -> str:
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((10, 12, 3), np.uint8), photometric="rgb")
    return str(tmp_path / "rgb.tif")


def _complex_h5(tmp_path: Path) -> str:
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["raw"] = np.zeros((2, 4, 4), np.complex64)
    return f"{tmp_path / 'c.h5'}:/raw"


def _complex_zarr(tmp_path: Path) -> str:
    zarr.create_array(str(tmp_path / "c.zarr"), data=np.zeros((2, 4, 4), np.complex64), zarr_format=2)
    return str(tmp_path / "c.zarr")


def _broken_h5(tmp_path: Path) -> str:
    (tmp_path / "broken.h5").write_bytes(b"not hdf5 at all")
    return str(tmp_path / "broken.h5")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (_four_d_two_channels, r"axes czyx .*c=2.*grey \(z, y, x\) volumes"),
        (_not_a_store, "not a zarr store"),
        (_plain_folder, "not a zarr store"),
        (lambda tmp: str(tmp / "missing.ome.zarr"), "no such file"),
        (lambda tmp: str(tmp / "missing.h5") + ":/raw", "no such file"),
        (lambda tmp: str(tmp / "missing.tif"), "no such file"),
        (_rgb_tiff, "colour"),
        (_complex_h5, "complex64"),
        (_complex_zarr, "complex64"),
        (_broken_h5, "not a readable HDF5"),
        (lambda tmp: str(tmp / "image.png"), "not a volume"),
    ],
    ids=["4d-2-channels", "folder-not-zarr", "plain-folder", "missing-zarr", "missing-h5", "missing-tiff", "rgb-tiff",
         "complex-h5", "complex-zarr", "broken-h5", "png"],
)
def test_bad_inputs_raise_one_emseg_error_naming_the_path(tmp_path: Path, make, match: str) -> None:
    spec = make(tmp_path)
    with pytest.raises(EmsegError, match=match) as caught:
        open_volume(spec, tiff=True)
    file = spec.split(".h5:")[0]
    assert file in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (8,)])
def test_hdf5_of_other_dimensions_is_refused(tmp_path: Path, shape) -> None:
    path = tmp_path / "nd.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = np.zeros(shape, np.uint8)
    with pytest.raises(EmsegError, match="grey"):
        open_volume(f"{path}:/raw")
