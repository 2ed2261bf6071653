"""emseg.inference.volume.omezarr: pyramid shapes, the OME-Zarr writer (checked with ome-zarr's own reader), 2x downsampling, attrs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import zarr

from emseg.errors import EmsegError
from emseg.inference.volume.omezarr import (
    create_ome_zarr,
    downsample_2x,
    get_attrs,
    level_count,
    open_level,
    pyramid_shapes,
    set_attrs,
)
from emseg.inference.volume.sources import open_volume

ZARR_FORMAT = {"0.4": 2, "0.5": 3}


@pytest.mark.parametrize(
    ("shape", "chunk", "expected"),
    [
        ((5, 64, 64), 64, [(5, 64, 64)]),  # fits one chunk: level 0 only
        ((5, 65, 10), 64, [(5, 65, 10), (5, 33, 5)]),
        ((1, 50, 70), 16, [(1, 50, 70), (1, 25, 35), (1, 13, 18), (1, 7, 9)]),  # ceil halving, Z kept
        ((3, 8, 300), 100, [(3, 8, 300), (3, 4, 150), (3, 2, 75)]),
        ((2, 1, 1), 1, [(2, 1, 1)]),
    ],
)
def test_pyramid_halves_y_and_x_until_one_chunk_holds_a_slice(shape, chunk, expected) -> None:
    assert pyramid_shapes(shape, chunk) == expected


def test_pyramid_refuses_a_chunk_under_one() -> None:
    with pytest.raises(ValueError):
        pyramid_shapes((1, 10, 10), 0)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_store_layout_chunks_and_metadata(tmp_path: Path, version: str) -> None:
    path = tmp_path / "pred.ome.zarr"
    create_ome_zarr(path, (3, 50, 70), "uint8", 16, (40.0, 4.0, 4.0), "nm", version=version)
    assert level_count(path) == 4
    for level, shape in enumerate(pyramid_shapes((3, 50, 70), 16)):
        array = open_level(path, level, mode="r")
        assert array.shape == shape and array.dtype == np.uint8
        assert array.chunks == (1, min(16, shape[1]), min(16, shape[2]))
        assert array.metadata.zarr_format == ZARR_FORMAT[version]
        assert not array[:].any()  # filled with 0
    root = zarr.open_group(str(path), mode="r")
    attrs = root.attrs["ome"] if version == "0.5" else root.attrs
    image = attrs["multiscales"][0]
    assert image["name"] == "pred"
    assert [d["coordinateTransformations"][0]["scale"] for d in image["datasets"]] == [
        [40.0, 4.0 * 2**k, 4.0 * 2**k] for k in range(4)
    ]
    assert image["axes"] == [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    assert "image-label" not in attrs


def test_chunks_are_clipped_to_a_small_volume(tmp_path: Path) -> None:
    create_ome_zarr(tmp_path / "s.zarr", (2, 5, 7), np.float32, 512, (1.0, 1.0, 1.0), None)
    array = open_level(tmp_path / "s.zarr", 0)
    assert array.chunks == (1, 5, 7) and level_count(tmp_path / "s.zarr") == 1


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize(("unit", "ome_unit"), [("nm", "nanometer"), ("micrometer", "micrometer"), (None, None)])
def test_round_trip_through_open_volume(tmp_path: Path, version: str, unit, ome_unit) -> None:
    path = tmp_path / f"img_{version}.ome.zarr"
    data = np.random.default_rng(0).integers(0, 65535, (3, 20, 30), dtype=np.uint16)
    create_ome_zarr(path, data.shape, data.dtype, 8, (30.0, 5.0, 5.0), unit, version=version)
    open_level(path, 0)[:] = data
    source = open_volume(str(path))
    assert (source.kind, source.shape, source.dtype) == ("ome-zarr", (3, 20, 30), "uint16")
    assert source.scale == (30.0, 5.0, 5.0) and source.unit == ome_unit
    expected_size = None if unit is None else (5.0, {"nanometer": "nm", "micrometer": "um"}[ome_unit])
    size = source.pixel_size()
    assert (None if size is None else (size.value, size.unit)) == expected_size
    np.testing.assert_array_equal(source.read(slice(None), slice(None), slice(None)), data)
    np.testing.assert_array_equal(source.read(2, slice(3, 9), slice(10, 25)), data[2, 3:9, 10:25])
    assert source.stem == f"img_{version}"


@pytest.mark.parametrize("version", ["0.4", "0.5"])
@pytest.mark.parametrize("labels", [False, True])
def test_ome_zarr_reader_sees_the_pyramid(tmp_path: Path, version: str, labels: bool) -> None:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    path = tmp_path / "out.ome.zarr"
    create_ome_zarr(path, (2, 40, 40), "uint32" if labels else "uint8", 16, (50.0, 4.0, 4.0), "nm",
                    labels=labels, version=version)
    logging.getLogger("ome_zarr").setLevel(logging.ERROR)  # "no parent found" for a label image without its image
    location = parse_url(str(path), fmt=FormatV05() if version == "0.5" else FormatV04())
    assert location is not None
    nodes = list(Reader(location)())
    node = nodes[0]
    assert node.load(Multiscales) is not None
    assert (node.load(Label) is not None) == labels
    assert len(node.data) == 3 == level_count(path)
    assert [tuple(level.shape) for level in node.data] == pyramid_shapes((2, 40, 40), 16)
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    assert {a["type"] for a in node.metadata["axes"]} == {"space"}


def test_written_levels_read_back_through_the_reader(tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "p.ome.zarr"
    data = np.arange(2 * 9 * 11, dtype=np.uint8).reshape(2, 9, 11)
    create_ome_zarr(path, data.shape, data.dtype, 5, (1.0, 1.0, 1.0), None)
    open_level(path, 0)[:] = data
    open_level(path, 1)[:] = downsample_2x(data, mean=False)
    node = next(iter(Reader(parse_url(str(path)))()))
    np.testing.assert_array_equal(np.asarray(node.data[1]), data[:, ::2, ::2])


def test_refuses_an_existing_path_and_an_unknown_version(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.zarr"
    path.mkdir()
    with pytest.raises(EmsegError, match="already exists"):
        create_ome_zarr(path, (1, 4, 4), "uint8", 4, (1.0, 1.0, 1.0), None)
    with pytest.raises(EmsegError, match="0.3"):
        create_ome_zarr(tmp_path / "y.ome.zarr", (1, 4, 4), "uint8", 4, (1.0, 1.0, 1.0), None, version="0.3")


def test_open_level_names_a_missing_level_and_a_missing_store(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.zarr"
    create_ome_zarr(path, (1, 4, 4), "uint8", 4, (1.0, 1.0, 1.0), None)
    with pytest.raises(EmsegError, match="no level 1"):
        open_level(path, 1)
    with pytest.raises(EmsegError, match="nothing.zarr"):
        level_count(tmp_path / "nothing.zarr")


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (np.array([[[0, 2], [4, 6]]], np.uint8), np.array([[[3.0]]])),
        # odd sizes: the edge means are of the pixels present
        (np.array([[[1, 3, 5], [7, 9, 11], [13, 15, 17]]], np.uint16), np.array([[[5.0, 8.0], [14.0, 17.0]]])),
        (np.arange(10, dtype=np.float64).reshape(2, 1, 5), np.array([[[0.5, 2.5, 4.0]], [[5.5, 7.5, 9.0]]])),
        (np.array([[[True, False], [False, False]]]), np.array([[[0.25]]])),
    ],
)
def test_mean_downsample(block: np.ndarray, expected: np.ndarray) -> None:
    out = downsample_2x(block, mean=True)
    assert out.dtype == np.float32 and out.shape == expected.shape
    np.testing.assert_allclose(out, expected)


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 7, 5), (2, 1, 9), (1, 1, 1)])
def test_stride_downsample_keeps_values_and_dtype(shape) -> None:
    block = np.random.default_rng(1).integers(0, 2**31, shape, dtype=np.int64).astype(np.uint32)
    out = downsample_2x(block, mean=False)
    assert out.dtype == np.uint32 and out.shape == (shape[0], -(-shape[1] // 2), -(-shape[2] // 2))
    np.testing.assert_array_equal(out, block[:, ::2, ::2])
    assert set(np.unique(out)) <= set(np.unique(block))  # no invented label ids
    assert out.flags.c_contiguous


@pytest.mark.parametrize("shape", [(2, 7, 5), (1, 16, 3), (3, 1, 1)])
def test_mean_downsample_shape_is_ceil_and_keeps_the_mean_of_even_blocks(shape) -> None:
    block = np.random.default_rng(2).random(shape).astype(np.float32)
    out = downsample_2x(block, mean=True)
    assert out.shape == (shape[0], -(-shape[1] // 2), -(-shape[2] // 2))
    even = block[:, : shape[1] // 2 * 2, : shape[2] // 2 * 2]
    if even.size:
        reference = even.reshape(shape[0], shape[1] // 2, 2, shape[2] // 2, 2).mean(axis=(2, 4))
        np.testing.assert_allclose(out[:, : shape[1] // 2, : shape[2] // 2], reference, rtol=1e-6)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_emseg_attrs_are_merged_and_leave_ome_metadata_alone(tmp_path: Path, version: str) -> None:
    path = tmp_path / "a.ome.zarr"
    create_ome_zarr(path, (1, 8, 8), "uint8", 8, (1.0, 1.0, 1.0), None, version=version)
    assert get_attrs(path) == {}
    set_attrs(path, model="unet", threshold=0.5)
    set_attrs(path, threshold=0.6, blocks=[1, 2])
    assert get_attrs(path) == {"model": "unet", "threshold": 0.6, "blocks": [1, 2]}
    assert level_count(path) == 1
    assert open_volume(str(path)).shape == (1, 8, 8)
