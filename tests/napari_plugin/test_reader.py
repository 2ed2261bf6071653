"""emseg.napari_plugin.reader: emseg predict's outputs (TIFF, PNG, OME-Zarr) as napari layer tuples; other files left to napari.

No viewer is needed: the reader's tuples are checked as data, and built into napari layers
(`Layer.create`, no Qt) to check that napari takes their keyword arguments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from emseg.errors import EmsegError
from emseg.inference.outputs import OUTPUTS
from emseg.inference.volume.omezarr import create_ome_zarr, downsample_2x, level_count, open_level
from emseg.io.images import write_png, write_tiff
from emseg.napari_plugin.reader import emseg_output, get_reader, read_outputs

RNG = np.random.default_rng(0)
PROBA = RNG.random((3, 12, 10), dtype=np.float32)
#: the membrane mask as predict stores it: 255 = membrane
MEMBRANE = np.where(PROBA > 0.5, 0, 255).astype(np.uint8)
CELLS = RNG.integers(0, 9, (3, 12, 10)).astype(np.uint32)


def _prediction(folder: Path, stem: str, is_stack: bool) -> dict[str, Path]:
    """The cells, membrane and proba files of one input, under the names and file types predict gives them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / OUTPUTS[kind].file_name(stem, is_stack) for kind in ("cells", "membrane", "proba")}
    pick = (lambda a: a) if is_stack else (lambda a: a[0])
    write_tiff(paths["proba"], pick(PROBA))
    write_tiff(paths["cells"], pick(CELLS))
    if is_stack:
        write_tiff(paths["membrane"], MEMBRANE)
    else:
        write_png(paths["membrane"], MEMBRANE[0])
    return paths


def _layers(tuples: list) -> list:
    """napari layers made from the reader's tuples, as napari makes them."""
    from napari.layers import Layer

    return [Layer.create(data, kwargs, layer_type) for data, kwargs, layer_type in tuples]


@pytest.mark.parametrize("is_stack", [False, True])
def test_each_kind_of_a_prediction_becomes_its_layer(tmp_path: Path, is_stack: bool) -> None:
    paths = _prediction(tmp_path, "image", is_stack)
    listed = [str(paths[kind]) for kind in ("cells", "membrane", "proba")]
    reader = get_reader(listed)
    assert reader is not None
    (cells, cells_kw, cells_type), (membrane, membrane_kw, membrane_type), (proba, proba_kw, proba_type) = reader(listed)
    pick = (lambda a: a) if is_stack else (lambda a: a[0])

    assert (cells_type, membrane_type, proba_type) == ("labels", "labels", "image")
    assert cells.dtype == np.uint32 and cells.shape == pick(CELLS).shape
    np.testing.assert_array_equal(cells, pick(CELLS))
    assert membrane.dtype == np.uint8
    np.testing.assert_array_equal(membrane, pick(MEMBRANE) // 255)  # 1 = membrane
    assert proba.dtype == np.float32
    np.testing.assert_array_equal(proba, pick(PROBA))
    assert [cells_kw["name"], membrane_kw["name"], proba_kw["name"]] == ["image cells", "image membranes", "image cell probability"]
    assert proba_kw["contrast_limits"] == (0.0, 1.0) and proba_kw["colormap"] == "magma"
    for kind, kwargs in zip(("cells", "membrane", "proba"), (cells_kw, membrane_kw, proba_kw), strict=True):
        assert kwargs["metadata"] == {"emseg_output": kind, "path": str(paths[kind])}
        assert "scale" not in kwargs and "units" not in kwargs  # predict's files carry no pixel size here: napari's pixels


def test_the_layers_are_ones_napari_makes_and_membranes_have_one_colour(tmp_path: Path) -> None:
    paths = _prediction(tmp_path, "a", is_stack=True)
    cells, membrane, proba = _layers(read_outputs([str(paths[k]) for k in ("cells", "membrane", "proba")]))
    assert type(cells).__name__ == "Labels" and type(membrane).__name__ == "Labels" and type(proba).__name__ == "Image"
    assert membrane.ndim == 3 and tuple(proba.contrast_limits) == (0.0, 1.0)
    background, (red, green, blue, _) = membrane.colormap.map(np.array([0, 1], np.uint8))
    assert background[3] == 0.0  # see-through where there is no membrane
    assert red > 0.9 and green < 0.3 and blue < 0.3  # emseg's membrane tint


def test_a_cells_stack_written_a_page_at_a_time_reads_as_one_stack(tmp_path: Path) -> None:
    # predict streams its outputs page by page (tifffile.TiffWriter; uint32 is no ImageJ type)
    path = tmp_path / OUTPUTS["cells"].file_name("vol", is_stack=True)
    with tifffile.TiffWriter(path, imagej=False) as tif:
        for page in CELLS:
            tif.write(page, contiguous=True, photometric="minisblack")
    [(data, kwargs, layer_type)] = read_outputs(str(path))
    assert layer_type == "labels" and kwargs["name"] == "vol cells"
    np.testing.assert_array_equal(data, CELLS)


def test_scale_and_units_from_the_tiff_pixel_size(tmp_path: Path) -> None:
    per_um = (1 / 0.004, 1 / 0.004)  # 4 nm pixels as ImageJ writes them: pixels per micrometre
    tifffile.imwrite(tmp_path / "s_proba.tif", PROBA, imagej=True, resolution=per_um, metadata={"unit": "um", "spacing": 0.05, "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "s_membrane.tif", MEMBRANE, imagej=True, resolution=per_um, metadata={"unit": "um", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "t_cells.tif", CELLS[0], resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER")  # 2-D, 4 nm
    proba, membrane, cells = read_outputs([str(tmp_path / name) for name in ("s_proba.tif", "s_membrane.tif", "t_cells.tif")])

    assert proba[1]["scale"] == [50.0, 4.0, 4.0] and proba[1]["units"] == ["nm", "nm", "nm"]
    # no section thickness in the file: one step per section, in napari's unit for "unknown"
    assert membrane[1]["scale"] == [1.0, 4.0, 4.0] and membrane[1]["units"] == ["pixel", "nm", "nm"]
    assert cells[0].ndim == 2 and cells[1]["scale"] == [4.0, 4.0] and cells[1]["units"] == ["nm", "nm"]
    layers = _layers([proba, membrane, cells])
    assert [str(u) for u in layers[0].units] == ["nanometer"] * 3 and list(layers[1].scale) == [1.0, 4.0, 4.0]


def _store(path: Path, kind: str, data: np.ndarray, unit: str | None, version: str) -> Path:
    """An OME-Zarr output as the volume run writes it: the stores, then each level of the data."""
    create_ome_zarr(path, data.shape, OUTPUTS[kind].dtype, 4, (50.0, 4.0, 4.0), unit, labels=kind == "cells", version=version)
    level = data
    for index in range(level_count(path)):
        open_level(path, index)[:] = level
        level = downsample_2x(level, mean=kind == "proba")
    return path


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_stores_open_lazily_as_their_pyramid(tmp_path: Path, version: str) -> None:
    stores = [
        _store(tmp_path / "vol_cells.ome.zarr", "cells", CELLS, "nm", version),
        _store(tmp_path / "vol_membrane.ome.zarr", "membrane", MEMBRANE, "nm", version),
        _store(tmp_path / "vol_proba.ome.zarr", "proba", PROBA, "nm", version),
    ]
    reader = get_reader([str(p) for p in stores])
    assert reader is not None
    layers = reader([str(p) for p in stores])
    expected = [CELLS, MEMBRANE // 255, PROBA]
    for (data, kwargs, _), store, pixels, kind in zip(layers, stores, expected, ("cells", "membrane", "proba"), strict=True):
        assert isinstance(data, list) and len(data) == level_count(store) == 3
        assert not any(isinstance(level, np.ndarray) for level in data)  # nothing read until napari asks
        np.testing.assert_array_equal(np.asarray(data[0]), pixels)
        assert [tuple(level.shape) for level in data] == [(3, 12, 10), (3, 6, 5), (3, 3, 3)]
        assert kwargs["multiscale"] is True and kwargs["scale"] == [50.0, 4.0, 4.0] and kwargs["units"] == ["nm", "nm", "nm"]
        assert kwargs["metadata"] == {"emseg_output": kind, "path": str(store)}
    assert [layer_type for _, _, layer_type in layers] == ["labels", "labels", "image"]
    assert np.asarray(layers[1][0][1]).dtype == np.uint8 and set(np.unique(np.asarray(layers[1][0][1]))) <= {0, 1}
    assert layers[0][0][0].dtype == np.uint32 and layers[2][1]["contrast_limits"] == (0.0, 1.0)
    made = _layers(layers)
    assert all(layer.multiscale for layer in made) and list(made[0].scale) == [50.0, 4.0, 4.0]


def test_an_ome_zarr_store_without_a_unit_keeps_its_scale_and_gives_no_units(tmp_path: Path) -> None:
    store = _store(tmp_path / "v_proba.ome.zarr", "proba", PROBA, None, "0.4")
    [(_, kwargs, _)] = read_outputs(str(store) + "/")  # a folder as a shell completes it
    assert kwargs["scale"] == [50.0, 4.0, 4.0] and "units" not in kwargs


@pytest.mark.parametrize("name", [
    "image.tif", "image_overlay.png", "image_cells.csv", "image_cells_summary.csv", "image_cells.png", "image_proba.png",
    "image_labels.tif", "volume.ome.zarr", "image_cells.zarr", "image_cellsxtif", "image_membrane.jpg", "test-cells.tif",
])
def test_other_files_are_left_to_napari(tmp_path: Path, name: str) -> None:
    assert get_reader(str(tmp_path / name)) is None
    assert emseg_output(tmp_path / name) is None


def test_a_list_is_taken_only_when_every_path_is_an_output(tmp_path: Path) -> None:
    paths = _prediction(tmp_path, "x", is_stack=False)
    assert get_reader([str(paths["cells"]), str(tmp_path / "x.tif")]) is None
    assert get_reader([]) is None
    assert get_reader([str(paths["cells"])]) is not None


def test_a_list_mixing_kinds_and_formats_keeps_its_order(tmp_path: Path) -> None:
    paths = _prediction(tmp_path, "x", is_stack=False)
    store = _store(tmp_path / "y_membrane.ome.zarr", "membrane", MEMBRANE, "nm", "0.4")
    listed = [str(paths["proba"]), str(store), str(paths["cells"])]
    layers = get_reader(listed)(listed)
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["x cell probability", "y membranes", "x cells"]
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels", "labels"]
    assert "multiscale" not in layers[0][1] and layers[1][1]["multiscale"] is True


def test_names_are_matched_whatever_the_case_and_the_stem(tmp_path: Path) -> None:
    found = emseg_output(tmp_path / "Run_cells_PROBA.TIFF")
    assert found is not None and (found.kind, found.stem, found.is_zarr) == ("proba", "Run_cells", False)
    found = emseg_output(tmp_path / "a_b_membrane.ome.zarr")
    assert found is not None and (found.kind, found.stem, found.is_zarr) == ("membrane", "a_b", True)


def test_damaged_or_wrong_files_raise_one_line_naming_them(tmp_path: Path) -> None:
    paths = _prediction(tmp_path, "d", is_stack=True)
    whole = paths["proba"].read_bytes()
    paths["proba"].write_bytes(whole[: len(whole) // 2])  # a cut file
    paths["membrane"].write_bytes(b"")
    junk = tmp_path / "j_cells.ome.zarr"
    junk.mkdir()
    (junk / "zarr.json").write_text("not json")
    plain = tmp_path / "p_cells.ome.zarr"  # a zarr group that is no OME-Zarr image
    import zarr

    zarr.open_group(str(plain), mode="w")
    float_cells = tmp_path / "f_cells.tif"
    write_tiff(float_cells, PROBA)
    for path in (paths["proba"], paths["membrane"], junk, plain, float_cells, tmp_path / "missing_cells.tif", tmp_path / "missing_proba.ome.zarr"):
        reader = get_reader(str(path))
        assert reader is not None, path
        with pytest.raises(EmsegError) as caught:
            reader(str(path))
        message = str(caught.value)
        assert str(path) in message and "\n" not in message, message
    with pytest.raises(EmsegError, match="not an emseg output"):
        read_outputs(str(tmp_path / "raw.tif"))


def test_dropping_emseg_predicts_outputs_on_the_viewer_opens_them_through_the_plugin(make_napari_viewer, em_slice, predict_cli) -> None:
    out = predict_cli(em_slice, "--outputs", "proba,membrane,cells")
    viewer = make_napari_viewer()
    viewer.open([str(out / "image_cells.tif"), str(out / "image_membrane.png"), str(out / "image_proba.tif")], plugin="emseg")
    assert [(layer.name, layer._type_string) for layer in viewer.layers] == [
        ("image cells", "labels"), ("image membranes", "labels"), ("image cell probability", "image")]
    np.testing.assert_array_equal(viewer.layers["image cells"].data, tifffile.imread(out / "image_cells.tif"))
