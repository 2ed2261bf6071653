"""emseg.napari_plugin.measure: the per-cell table of a cells layer, its rows, colours and CSV, against `emseg predict`'s CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from emseg.napari_plugin.measure import MeasureWidget, coloured_by, measure


def docked(make_napari_viewer) -> tuple:
    viewer = make_napari_viewer()
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_the_table_and_its_csv_are_emseg_predicts(make_napari_viewer, em_slice, predict_cli, wait_for, tmp_path: Path, notes) -> None:
    out = predict_cli(em_slice, "--pixel-size", "4nm", "--outputs", "cells,measurements")
    viewer, widget = docked(make_napari_viewer)
    image = viewer.add_image(em_slice, name="em", scale=(4.0, 4.0), units=("nm", "nm"))
    cells = viewer.add_labels(tifffile.imread(out / "image_cells.tif"), name="em cells", scale=(4.0, 4.0),
                              metadata={"emseg": {"image_layer": "em", "pixel_size_nm": 4.0}})
    widget.cells.value = cells
    assert widget.image.value is image  # the image the cells were segmented from
    widget.run()
    wait_for(widget.panel)
    expected = (out / "image_cells.csv").read_text()
    assert widget.view.model().rowCount() == len(expected.splitlines()) - 1 > 3
    widget.csv_path.value = tmp_path / "table.csv"
    assert widget.export() == tmp_path / "table.csv"
    assert (tmp_path / "table.csv").read_text() == expected
    assert widget.panel.status.value == f"measurements: {len(expected.splitlines()) - 1} cells"
    assert not [m for k, m in notes if k == "show_error"]


def test_a_row_selects_and_centres_its_cell_in_its_slice(make_napari_viewer, wait_for) -> None:
    cells = np.zeros((3, 40, 50), np.uint32)
    cells[2, 10:20, 30:44] = 5
    cells[0, 2:6, 2:6] = 1
    viewer, widget = docked(make_napari_viewer)
    viewer.add_image(np.full(cells.shape, 100, np.uint8), name="raw", scale=(50.0, 2.0, 2.0))
    layer = viewer.add_labels(cells, name="cells", scale=(50.0, 2.0, 2.0), translate=(0.0, 10.0, 0.0))
    widget.cells.value = layer
    widget.run()
    wait_for(widget.panel)
    rows = widget.table.values
    row = int(np.flatnonzero(rows[:, widget.table.columns.index("label")] == 5)[0])
    widget.view.selectRow(int(np.flatnonzero([widget.view.model().mapToSource(widget.view.model().index(r, 0)).row() == row
                                               for r in range(len(rows))])[0]))
    assert layer.selected_label == 5
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (10 + 2 * 14.5, 2 * 36.5))
    assert viewer.dims.point[0] == 100.0  # slice 2 at 50 nm


def test_colouring_by_a_column_paints_each_cell_with_its_value(make_napari_viewer, wait_for) -> None:
    cells = np.zeros((30, 30), np.uint32)
    cells[:10, :10], cells[15:, 15:] = 1, 2
    viewer, widget = docked(make_napari_viewer)
    viewer.add_image(np.zeros(cells.shape, np.uint8), name="raw")
    widget.cells.value = viewer.add_labels(cells, name="cells")
    widget.run()
    wait_for(widget.panel)
    widget.colour_by.value = "area_px"
    widget.colour()
    coloured = viewer.layers["cells by area_px"].data
    assert coloured[0, 0] == 100 and coloured[20, 20] == 225 and np.isnan(coloured[12, 12])
    assert widget.colour_by.value == "area_px" and "solidity" in widget.colour_by.choices  # a new layer resets no column away


def test_coloured_by_looks_each_slice_up_on_its_own() -> None:
    cells = np.array([[[1, 1, 0]], [[1, 0, 2]]], np.uint32)
    table = measure(cells, np.zeros(cells.shape, np.uint8), None)
    out = coloured_by(cells, table, "area_px")
    np.testing.assert_array_equal(out[0, 0, :2], [2, 2])
    np.testing.assert_array_equal(out[1, 0, [0, 2]], [1, 1])


def test_nothing_to_measure_or_export_is_one_notification(make_napari_viewer, notes) -> None:
    _, widget = docked(make_napari_viewer)
    assert widget.run() is None
    assert widget.export() is None
    shown = [message for kind, message in notes if kind == "show_error"]
    assert shown == ["emseg measurements: no cells layer: segment an image first", "emseg measurements: nothing measured yet"]
