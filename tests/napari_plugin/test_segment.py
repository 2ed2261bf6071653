"""emseg.napari_plugin.segment: the segment widget, driven as a user would, against `emseg predict` on the same image."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage

from emseg.napari_plugin.layers import OUTPUT_SUFFIXES
from emseg.napari_plugin.segment import MODEL_CHOICES, SegmentWidget, resolve_model
from emseg.sharing.bundled import BUNDLED_MODEL


def docked(make_napari_viewer) -> tuple:
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def test_cells_membranes_and_probability_equal_emseg_predicts_and_overlay_the_image(make_napari_viewer, em_slice, predict_cli, wait_for, notes) -> None:
    viewer, widget = docked(make_napari_viewer)
    image = viewer.add_image(em_slice, name="em", scale=(4.0, 4.0), translate=(10.0, -20.0), units=("nm", "nm"))
    widget.image.value = image
    assert widget.run() is not None
    wait_for(widget.panel)
    out = predict_cli(em_slice, "--pixel-size", "4nm")
    cells, membranes, probability = (viewer.layers["em" + OUTPUT_SUFFIXES[key]] for key in ("cells", "membranes", "membrane_probability"))
    np.testing.assert_array_equal(cells.data, tifffile.imread(out / "image_cells.tif"))
    np.testing.assert_array_equal(membranes.data * 255, np.asarray(PILImage.open(out / "image_membrane.png")))
    np.testing.assert_allclose(probability.data, 1 - tifffile.imread(out / "image_proba.tif"), atol=1e-6)
    for layer in (cells, membranes, probability):
        np.testing.assert_array_equal(layer.scale, image.scale)
        np.testing.assert_array_equal(layer.translate, image.translate)
    assert cells.metadata["emseg"]["model"] == str(BUNDLED_MODEL) and cells.metadata["emseg"]["pixel_size_nm"] == 4.0
    assert cells.data.max() > 3 and not [m for k, m in notes if k == "show_error"]
    assert widget.panel.status.value.startswith("segmentation: ") and " cells in " in widget.panel.status.value
    # a second run replaces the layers' data rather than adding more layers
    widget.run()
    wait_for(widget.panel)
    assert len(viewer.layers) == 4


def test_a_stack_at_another_pixel_size_is_rescaled_and_agglomerated_as_the_command_line_does(make_napari_viewer, predict_cli, wait_for) -> None:
    from emseg.io.synthetic import synthetic_stack

    stack = synthetic_stack(2, 96, 112, seed=7, cells=8)[0]
    viewer, widget = docked(make_napari_viewer)
    image = viewer.add_image(stack, name="stack", scale=(50.0, 6.0, 6.0), units=("nm", "nm", "nm"))
    widget.image.value = image
    widget.cells.value = "gasp"
    widget.run()
    wait_for(widget.panel)
    out = predict_cli(stack, "--pixel-size", "6nm", "--cells", "gasp", "--outputs", "cells")
    cells = viewer.layers["stack cells"]
    assert cells.data.shape == stack.shape and cells.data.dtype == np.uint32
    np.testing.assert_array_equal(cells.data, tifffile.imread(out / "image_cells.tif"))
    assert "predicted at" in cells.metadata["emseg"]["note"] and cells.metadata["emseg"]["cells"] == "gasp"


def test_tta_adds_the_uncertainty_of_emseg_predict(make_napari_viewer, predict_cli, wait_for) -> None:
    from emseg.io.synthetic import synthetic_stack

    stack = synthetic_stack(2, 64, 72, seed=3, cells=6)[0]
    viewer, widget = docked(make_napari_viewer)
    widget.image.value = viewer.add_image(stack, name="stack")
    widget.tta.value = True
    widget.run()
    wait_for(widget.panel)
    out = predict_cli(stack, "--tta", "--outputs", "uncertainty")
    uncertainty = viewer.layers["stack" + OUTPUT_SUFFIXES["uncertainty"]]
    np.testing.assert_allclose(uncertainty.data, tifffile.imread(out / "image_uncertainty.tif"), atol=1e-7)
    assert uncertainty.data.shape == stack.shape and not uncertainty.visible


def test_a_typed_pixel_size_wins_over_the_layers_scale(make_napari_viewer, em_slice, predict_cli, wait_for) -> None:
    viewer, widget = docked(make_napari_viewer)
    widget.image.value = viewer.add_image(em_slice, name="em")  # no units: the scale says nothing of nanometres
    widget.pixel_size.value = "5 nm"
    widget.run()
    wait_for(widget.panel)
    out = predict_cli(em_slice, "--pixel-size", "5nm", "--outputs", "cells")
    np.testing.assert_array_equal(viewer.layers["em cells"].data, tifffile.imread(out / "image_cells.tif"))


def test_cancel_stops_the_run_and_adds_no_layer(make_napari_viewer, wait_for, notes) -> None:
    viewer, widget = docked(make_napari_viewer)
    widget.image.value = viewer.add_image(np.random.default_rng(0).integers(0, 255, (1024, 1024), np.uint8), name="big")
    assert widget.run() is not None
    widget.panel.cancel()
    wait_for(widget.panel)
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert ("show_info", "emseg segmentation cancelled: nothing was added") in notes
    assert widget.panel.status.value == "segmentation: cancelled" and widget.panel.run_button.enabled


def test_the_viewer_answers_while_a_slice_segments(make_napari_viewer, qtbot, wait_for) -> None:
    from qtpy.QtCore import QTimer

    viewer, widget = docked(make_napari_viewer)
    widget.image.value = viewer.add_image(np.random.default_rng(1).integers(0, 255, (1024, 1024), np.uint8), name="slice")
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    start = time.perf_counter()
    widget.run()  # the first run: the model loads on the worker too
    wait_for(widget.panel)
    qtbot.wait(300)  # ticks after the layers were put in the viewer: that part runs on the GUI thread
    seconds = time.perf_counter() - start
    timer.stop()
    gaps = np.diff([start, *ticks])
    # the GUI thread's event loop kept running: ticks all through the run, none held up for long
    assert "slice cells" in viewer.layers and len(ticks) > seconds / 0.2, (len(ticks), seconds)
    assert gaps.max() < 1.5, f"the GUI thread stalled for {gaps.max():.2f} s of a {seconds:.1f} s run"


def test_bad_inputs_give_one_notification_and_no_layer(make_napari_viewer, tmp_path: Path, wait_for, notes) -> None:
    viewer, widget = docked(make_napari_viewer)
    assert widget.run() is None
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    assert widget.run(rgb) is None
    four = viewer.add_image(np.zeros((2, 2, 32, 32), np.uint8), name="4d")
    assert widget.run(four) is None
    grey = viewer.add_image(np.zeros((32, 32), np.uint8), name="grey")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    widget.model.value = MODEL_CHOICES[2]
    for name in ("missing.pt", "other.pt"):  # the model is found and loaded on the worker: no import of torch on the GUI thread
        widget.model_file.value = tmp_path / name
        assert widget.run(grey) is not None
        wait_for(widget.panel)
    shown = [message for kind, message in notes if kind == "show_error"]
    assert shown[0] == "emseg segmentation: no image layer: open an EM image first (File > Open, or File > Open Sample > emseg)"
    assert "'rgb' is RGB" in shown[1] and "'4d' has 4 dimensions" in shown[2]
    assert "missing.pt: model file not found" in shown[3]
    assert shown[4].startswith(f"emseg segmentation: {tmp_path / 'other.pt'}") and widget.panel.status.value == "segmentation: failed"
    assert len(shown) == 5 and all("\n" not in message for message in shown)
    assert [layer.name for layer in viewer.layers] == ["rgb", "4d", "grey"]


def test_the_pipeline_model_must_exist_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from emseg.errors import EmsegError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EmsegError, match=r"models/model\.pt: not found"):
        resolve_model(MODEL_CHOICES[1], None)
    assert resolve_model(MODEL_CHOICES[0], None) == BUNDLED_MODEL
