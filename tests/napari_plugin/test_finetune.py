"""emseg.napari_plugin.finetune: correct the cells, mark what was checked, fine-tune on it, segment again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from emseg.config.params import parse_params
from emseg.io.synthetic import synthetic_stack
from emseg.napari_plugin.finetune import CHECKED_SUFFIX, SPLIT_SUFFIX, FinetuneWidget
from emseg.napari_plugin.segment import MODEL_CHOICES, SEGMENT_WIDGETS, SegmentWidget
from emseg.networks.model_file import load_model
from emseg.training.fit import fit

from conftest import TINY_PROFILE, merge

#: the tiny profile with a fine-tune of a few steps, progress reported at every step
TINY = merge(TINY_PROFILE, {"train": {"log_every": 1, "finetune": {"steps": 2, "val_every": 2}},
                            "segment": {"method": "components", "components": {"threshold": [0.3, 0.7]}}})


@pytest.fixture
def segmented(make_napari_viewer, tmp_path: Path, wait_for) -> tuple:
    """A viewer with a 3-slice synthetic stack segmented by a tiny model trained for a few steps, and the fine-tune widget."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    images, labels = synthetic_stack(3, 64, 64, seed=2)
    base = fit(list(images), list(labels), tmp_path / "base.pt", parse_params(TINY), pixel_size=[50.0, 4.0, 4.0]).model_path
    viewer = make_napari_viewer()
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    image = viewer.add_image(images, name="stack", scale=(50.0, 4.0, 4.0), units=("nm", "nm", "nm"))
    segment.model.value = MODEL_CHOICES[2]
    segment.model_file.value = base
    segment.run(image)
    wait_for(segment.panel)
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.cells.value = viewer.layers["stack cells"]
    widget.params_file.value = tmp_path / "params.yaml"
    widget.steps.value = 2
    return viewer, widget, base


def test_a_fine_tune_on_the_checked_slice_writes_a_model_with_its_provenance_and_segments_again(segmented, tmp_path: Path, wait_for, notes) -> None:
    viewer, widget, base = segmented
    assert widget.image.value is viewer.layers["stack"]
    viewer.dims.set_point(0, 50.0)  # slice 1
    widget.mark_slice_checked()
    checked = viewer.layers["stack cells" + CHECKED_SUFFIX].data
    assert checked[1].all() and not checked[0].any() and not checked[2].any()
    widget.out.value = tmp_path / "tuned" / "model.pt"
    (tmp_path / "tuned").mkdir()
    assert widget.run() is not None
    wait_for(widget.panel)
    wait_for(SEGMENT_WIDGETS[viewer].panel)
    _, config = load_model(tmp_path / "tuned" / "model.pt")
    provenance = config.info["provenance"]
    assert provenance["base_model"] == str(base) and provenance["slices"] == [1] and provenance["steps"] == 2
    assert provenance["checked_pixels"] == 64 * 64 and provenance["corrected_layer"] == "stack cells"
    assert config.pixel_size == [50.0, 4.0, 4.0]
    assert viewer.layers["stack cells"].metadata["emseg"]["model"] == str(tmp_path / "tuned" / "model.pt")
    assert widget.panel.progress.text.startswith("step 2/2, loss ")
    assert not [m for k, m in notes if k == "show_error"]


def test_a_fine_tune_goes_next_to_the_image_file_by_default(segmented, tmp_path: Path) -> None:
    from emseg.napari_plugin.finetune import default_model_path

    viewer, _, _ = segmented
    assert default_model_path(viewer.layers["stack"]) == Path.cwd() / "stack_finetuned.pt"  # made in memory: no file


def test_a_cancelled_fine_tune_writes_nothing(segmented, tmp_path: Path, wait_for, notes) -> None:
    _, widget, _ = segmented
    widget.mark_slice_checked()
    widget.steps.value = 500
    widget.out.value = tmp_path / "cancelled.pt"
    assert widget.run() is not None
    widget.panel.cancel()
    wait_for(widget.panel)
    assert not (tmp_path / "cancelled.pt").exists()
    assert ("show_info", "emseg fine-tune cancelled: nothing was added") in notes


def test_nothing_checked_or_no_cells_is_one_notification(segmented, make_napari_viewer, notes) -> None:
    viewer, widget, _ = segmented
    assert widget.run() is None
    for name in ("stack cells", "stack membranes"):  # every labels layer gone
        viewer.layers.remove(name)
    assert widget.run() is None
    shown = [message for kind, message in notes if kind == "show_error"]
    assert shown[0].startswith("emseg fine-tune: nothing is marked as checked")
    assert shown[1] == "emseg fine-tune: no cells layer: segment an image first"


def test_merge_and_split_edit_the_cells_layer(make_napari_viewer, notes) -> None:
    cells = np.zeros((20, 30), np.uint32)
    cells[2:18, 2:14], cells[2:18, 15:28] = 1, 2
    viewer = make_napari_viewer()
    widget = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(widget)
    layer = viewer.add_labels(cells, name="cells")
    widget.cells.value = layer
    layer.selected_label = 1
    widget.merge_with.value = 2
    widget.merge()
    assert set(np.unique(layer.data)) == {0, 1} and layer.data[10, 14] == 1  # the wall between them is gone
    widget.split()  # first press: the layer to draw in
    lines = viewer.layers["cells" + SPLIT_SUFFIX]
    lines.add_lines(np.array([[0.0, 20.0], [19.0, 20.0]]))
    widget.split()
    assert len(np.unique(layer.data)) == 3 and not len(lines.data)
    assert not [m for k, m in notes if k == "show_error"]
