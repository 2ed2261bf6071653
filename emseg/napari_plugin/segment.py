"""The segment widget: an image layer through `emseg predict`'s in-memory path, on a worker thread, into three layers.

The model (bundled, the pipeline's `models/model.pt`, or a file), the pixel size (the
layer's scale when its units are lengths, or typed), test-time augmentation and the cell
method are those of `emseg predict`; the image runs through
[`segment_image`][emseg.inference.in_memory.segment_image], which shares
[`predict_slice`][emseg.inference.in_memory.predict_slice] with the command line, so the
cells are the ones `emseg predict` writes for the same image and settings.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, create_widget
from napari.layers import Image
from napari.utils.notifications import show_error

from emseg.errors import EmsegError
from emseg.napari_plugin.layers import check_image_layer, follow_layers, layer_pixel_size, output_layers, put_layers
from emseg.napari_plugin.workers import Progress, RunPanel

if TYPE_CHECKING:
    import napari

#: the segment widget of each viewer (the fine-tune widget segments again with it)
SEGMENT_WIDGETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: the model choices: the bundled one, the pipeline's in the current folder, or a file
MODEL_CHOICES = ("bundled", "pipeline (models/model.pt)", "file")
#: the cell-method choice that takes the model's own cell step (as `emseg predict` without --cells)
MODEL_CELLS = "the model's"


def cell_choices() -> list[str]:
    """The cell methods offered: the model's own step, then every registered method."""
    from emseg.segmentation.methods import METHODS

    return [MODEL_CELLS, *METHODS]


def resolve_model(choice: str, file: Path | None) -> Path:
    """The model file a choice names.

    Raises:
        EmsegError: No bundled model, no pipeline model in the current folder, or no file given.
    """
    from emseg.sharing.bundled import BUNDLED_MODEL, PIPELINE_MODEL

    if choice == MODEL_CHOICES[0]:
        if not BUNDLED_MODEL.is_file():
            raise EmsegError("this installation has no bundled model: choose a model file")
        return BUNDLED_MODEL
    if choice == MODEL_CHOICES[1]:
        if not PIPELINE_MODEL.is_file():
            raise EmsegError(f"{Path.cwd() / PIPELINE_MODEL}: not found (run dvc repro in the project, or choose another model)")
        return PIPELINE_MODEL.resolve()
    if file is None or not str(file).strip() or Path(file).is_dir():
        raise EmsegError("no model file chosen")
    if not Path(file).is_file():
        raise EmsegError(f"{file}: model file not found")
    return Path(file)


class LoadedModels:
    """Model files loaded once per path and modification time (loading the bundled one takes a moment)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, float], tuple[Any, Any]] = {}

    def load(self, path: Path) -> tuple[Any, Any]:
        """The network and its config; raises EmsegError for a file that is not an emseg model."""
        from emseg.networks.model_file import load_model
        from emseg.runtime.device import select_device

        key = (str(path.resolve()), path.stat().st_mtime)
        if key not in self._cache:
            self._cache.clear()  # one model at a time in memory
            self._cache[key] = load_model(path, select_device("auto"))
        return self._cache[key]


class SegmentWidget(Container):
    """Segment an image layer into membrane probability, membranes and cells (`emseg predict` in the viewer).

    Args:
        viewer: The napari viewer (npe2 passes it).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image = create_widget(annotation=Image, label="image")
        self.model = ComboBox(choices=MODEL_CHOICES, value=MODEL_CHOICES[0], label="model")
        self.model_file = FileEdit(mode="r", filter="*.pt", label="model file", visible=False)
        self.pixel_size = LineEdit(value="", label="pixel size")
        self.pixel_size.native.setPlaceholderText("from the layer's scale, e.g. 4nm")
        self.tta = CheckBox(value=False, text="test-time augmentation (8x slower)")
        self.cells = ComboBox(choices=cell_choices(), value=MODEL_CELLS, label="cells")
        self.panel = RunPanel("Segment", "segmentation")
        super().__init__(widgets=[self.image, self.model, self.model_file, self.pixel_size, self.tta, self.cells, self.panel])
        self.models = LoadedModels()
        SEGMENT_WIDGETS[viewer] = self
        self.model.changed.connect(lambda choice: setattr(self.model_file, "visible", choice == MODEL_CHOICES[2]))
        self.panel.run_button.changed.connect(self.run)
        follow_layers(viewer, self.image)

    def use_model(self, path: Path) -> None:
        """Segment with this model file from now on (the fine-tune widget's new model)."""
        self.model_file.value = path
        self.model.value = MODEL_CHOICES[2]

    def run(self, image: Image | None = None, model_path: Path | None = None) -> Any:
        """Segment the chosen (or given) image layer; returns the worker, or None when refused with a notification."""
        try:
            job = self.prepare(image if isinstance(image, Image) else self.image.value, model_path)
        except EmsegError as exc:
            show_error(f"emseg segmentation: {exc}")
            return None
        return self.panel.start(job.work, job.done)

    def prepare(self, image: Image | None, model_path: Path | None = None) -> SegmentJob:
        """Check the layer and the settings on the GUI thread (cheap checks only: the model is found and loaded on the worker).

        Raises:
            EmsegError: Any problem, in one line.
        """
        from emseg.segmentation.measurements import parse_pixel_size

        data = check_image_layer(image if image in self.viewer.layers else None)  # a removed layer can linger in the choice
        assert image is not None
        choice = (MODEL_CHOICES[2], model_path) if model_path else (self.model.value, self.model_file.value)
        typed = self.pixel_size.value.strip()
        pixel_size = parse_pixel_size(typed) if typed else layer_pixel_size(image)
        asked = None if self.cells.value == MODEL_CELLS else self.cells.value
        return SegmentJob(self, image, data, choice, pixel_size, asked, self.tta.value)


@dataclass
class SegmentJob:
    """One segmentation run: the model loaded and the image segmented on a worker, the layers put in the viewer on the GUI thread."""

    widget: SegmentWidget
    image: Image
    data: np.ndarray
    #: the model choice and file (resolved on the worker: the bundled model's module imports torch, seconds at first)
    model_choice: tuple[str, Path | None]
    pixel_size: Any
    cells: str | None
    tta: bool

    def work(self, progress: Progress) -> tuple[Any, dict[str, Any], int]:
        """Load the model (a file that is not an emseg model fails here, in one line), segment, count the cells."""
        from emseg.inference.cell_step import cell_method
        from emseg.inference.in_memory import PredictOptions, context_note, segment_image, tiles_of_image

        model_path = resolve_model(*self.model_choice)
        model, config = self.widget.models.load(model_path)
        method, settings, source = cell_method(model_path, self.cells, config, option="cells")
        threshold, _ = config.threshold(None)
        options = replace(
            PredictOptions(threshold=threshold, tta=self.tta, device=next(model.parameters()).device),
            cells=method, cell_settings=settings, pixel_size=self.pixel_size,
        )
        progress.total = tiles_of_image(config, self.data.shape, options)
        result = segment_image(model, config, self.data, options, progress.advance)
        np.subtract(np.float32(1), result.cell, out=result.cell)  # the membrane probability, in the same buffer
        pages = result.cells[None] if result.cells.ndim == 2 else result.cells
        slices = len(pages)
        count = sum(int(np.count_nonzero(np.bincount(page.ravel())[1:])) for page in pages)
        run = {"model": str(model_path), "image_layer": self.image.name, "pixel_size_nm": self.pixel_size.nm if self.pixel_size else None,
               "threshold": threshold, "cells": method, "settings": settings, "cells_source": source, "tta": self.tta,
               "note": "; ".join(n for n in (result.rescaling.note, context_note(slices, config.context)) if n)}
        return result, run, count

    def done(self, outcome: tuple[Any, dict[str, Any], int]) -> list[Callable[[], Any]]:
        """The steps that put the three layers in the viewer, one per turn of the GUI's event loop, and say what was done."""
        result, run, count = outcome
        viewer, panel = self.widget.viewer, self.widget.panel
        note = f"; {run['note']}" if run["note"] else ""
        steps: list[Callable[[], Any]] = [
            lambda layer=layer: put_layers(viewer, [layer]) for layer in output_layers(self.image, result.cell, result.membrane, result.cells, run, result.uncertainty)
        ]
        return [*steps, lambda: setattr(panel.status, "value", f"segmentation: {count} cells in {result.seconds:.1f} s ({run['cells']}{note})")]
