"""The correct-and-fine-tune widget: merge and split cells, mark what was checked, fine-tune on it, segment again.

Corrections are napari's own label tools (paint, fill, erase) plus two helpers of
[`emseg.segmentation.editing`][emseg.segmentation.editing]: merge the selected cell with
another, and split cells along lines drawn in a shapes layer. What the user has checked is a
labels layer `<cells> checked` (a whole slice with one button, or painted regions); the
fine-tune trains on the checked pixels only, every other pixel being unlabelled (sparse
labels), through the trainer's fine-tuning entry [`fit`][emseg.training.fit.fit], the one
`emseg train` runs. The new model file is written next to the image's file (or where the
user says) with its provenance, and the image is segmented again with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, FileEdit, PushButton, SpinBox, create_widget
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info

from emseg.errors import EmsegError
from emseg.napari_plugin.layers import cells_run, check_image_layer, follow_layers, layer_pixel_size, segmented_image, source_path
from emseg.napari_plugin.workers import Progress, RunPanel

if TYPE_CHECKING:
    import napari

    from emseg.training.progress import TrainingStatus

#: the layers this widget keeps beside a cells layer, after its name
CHECKED_SUFFIX = " checked"
SPLIT_SUFFIX = " split lines"


def finetune_params(params_file: Path | None, steps: int) -> Any:
    """The params of a fine-tune: a params file's (a project's params.yaml), else emseg's defaults, with `steps` fine-tuning steps.

    Raises:
        EmsegError: A params file that does not validate (one line naming the key).
    """
    from emseg.training.fit import load_run_params

    params = load_run_params(params_file)
    if steps < 1:
        raise EmsegError(f"steps must be at least 1, got {steps}")
    train = params.train.model_copy(update={"finetune": params.train.finetune.model_copy(update={"steps": steps})})
    return params.model_copy(update={"train": train})


def default_model_path(image: Image) -> Path:
    """Where a fine-tuned model goes by default: next to the image's file (`<stem>_finetuned.pt`), else in the current folder."""
    source = source_path(image)
    folder = source.parent if source is not None else Path.cwd()
    stem = source.stem if source is not None else image.name.replace(" ", "_")
    return folder / f"{stem}_finetuned.pt"


class FinetuneWidget(Container):
    """Correct the cells, mark what is checked, fine-tune the model on it and segment again.

    Args:
        viewer: The napari viewer (npe2 passes it).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.cells = create_widget(annotation=Labels, label="cells")
        self.image = create_widget(annotation=Image, label="image")
        self.merge_with = SpinBox(value=0, min=0, max=2**31 - 1, label="merge selected cell with")
        self.merge_button = PushButton(text="Merge")
        self.split_button = PushButton(text="Split along drawn lines")
        self.check_slice_button = PushButton(text="Mark this slice as checked")
        self.steps = SpinBox(value=self._default_steps(), min=1, max=100_000, label="steps")
        self.params_file = FileEdit(mode="r", filter="*.yaml", label="params (optional)")
        self.out = FileEdit(mode="w", filter="*.pt", label="new model")
        self.panel = RunPanel("Fine-tune", "fine-tune")
        super().__init__(widgets=[
            self.cells, self.image, self.merge_with, self.merge_button, self.split_button, self.check_slice_button,
            self.steps, self.params_file, self.out, self.panel,
        ])
        self.merge_button.changed.connect(self.merge)
        self.split_button.changed.connect(self.split)
        self.check_slice_button.changed.connect(self.mark_slice_checked)
        self.panel.run_button.changed.connect(self.run)
        self.cells.changed.connect(self._pick_image)
        follow_layers(viewer, self.cells, self.image)
        #: the model file of the last fine-tune
        self.last_model: Path | None = None

    @staticmethod
    def _default_steps() -> int:
        from emseg.config.params import parse_params

        return parse_params({}, "defaults").train.finetune.steps

    def _pick_image(self, cells: Labels | None) -> None:
        """Default the image to the one the cells were segmented from."""
        image = segmented_image(self.viewer, cells)
        if image is not None:
            self.image.value = image

    def _cells(self) -> Labels:
        if self.cells.value is None or self.cells.value not in self.viewer.layers:  # a removed layer can linger in the choice
            raise EmsegError("no cells layer: segment an image first")
        return self.cells.value

    def _current_slice(self, layer: Labels) -> int | None:
        """The slice of a stack the viewer shows (None for a 2-D layer)."""
        if layer.ndim != 3:
            return None
        return round(float(layer.world_to_data(self.viewer.dims.point)[0]))

    # --- corrections ---------------------------------------------------------------

    def merge(self) -> None:
        """Merge the cells layer's selected cell with the cell number typed in."""
        from emseg.segmentation.editing import merge_cells

        try:
            layer = self._cells()
            keep, other = int(layer.selected_label), int(self.merge_with.value)
            layer.data = merge_cells(np.asarray(layer.data), keep, other)
        except EmsegError as exc:
            show_error(f"emseg merge: {exc}")
            return
        show_info(f"emseg: cell {other} merged into cell {keep}")

    def split_layer(self, layer: Labels) -> Shapes:
        """The shapes layer where split lines are drawn for `layer` (made, in line mode, when missing)."""
        name = layer.name + SPLIT_SUFFIX
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        shapes = self.viewer.add_shapes(name=name, ndim=layer.ndim, scale=layer.scale, translate=layer.translate,
                                        edge_color="cyan", edge_width=2)
        shapes.mode = "add_line"
        return shapes

    def split(self) -> None:
        """Split the cells each drawn line crosses, along the line; the lines are then removed."""
        from emseg.segmentation.editing import split_cell

        try:
            layer = self._cells()
            name = layer.name + SPLIT_SUFFIX
            if name not in self.viewer.layers or not len(self.viewer.layers[name].data):
                self.viewer.layers.selection.active = self.split_layer(layer)
                show_info("emseg split: draw a line across each cell to split (in the 'split lines' layer), then press Split again")
                return
            shapes = self.viewer.layers[name]
            data, made = np.asarray(layer.data), []
            for line in shapes.data:
                points = [layer.world_to_data(shapes.data_to_world(vertex)) for vertex in (line[0], line[-1])]
                index = round(float(points[0][0])) if layer.ndim == 3 else None
                data, new = split_cell(data, tuple(points[0][-2:]), tuple(points[1][-2:]), index)
                made += new
            layer.data = data
            shapes.data = []
        except EmsegError as exc:
            show_error(f"emseg split: {exc}")
            return
        show_info(f"emseg: split into new cells {made}")

    def checked_layer(self, layer: Labels) -> Labels:
        """The labels layer marking the checked pixels of `layer` (1 = checked), made empty when missing."""
        name = layer.name + CHECKED_SUFFIX
        if name in self.viewer.layers and self.viewer.layers[name].data.shape == layer.data.shape:
            return self.viewer.layers[name]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_labels(np.zeros(layer.data.shape, np.uint8), name=name, scale=layer.scale, translate=layer.translate,
                                      opacity=0.3, units=layer.units)

    def mark_slice_checked(self) -> None:
        """Mark the slice on screen (the whole image, in 2-D) as checked."""
        try:
            layer = self._cells()
        except EmsegError as exc:
            show_error(f"emseg: {exc}")
            return
        checked = self.checked_layer(layer)
        index = self._current_slice(layer)
        data = np.asarray(checked.data)
        if index is None:
            data[...] = 1
        else:
            data[index] = 1
        checked.data = data
        show_info("emseg: " + ("the image" if index is None else f"slice {index}") + " marked as checked")

    # --- fine-tuning ---------------------------------------------------------------

    def run(self) -> Any:
        """Fine-tune on the checked pixels on a worker; returns the worker, or None when refused with a notification."""
        try:
            job = self.prepare()
        except EmsegError as exc:
            show_error(f"emseg fine-tune: {exc}")
            return None
        return self.panel.start(job.work, job.done, Progress(job.params.train.finetune.steps))

    def prepare(self) -> FinetuneJob:
        """Check everything a fine-tune needs, on the GUI thread.

        Raises:
            EmsegError: No cells or image layer, shapes that differ, nothing checked, a model
                or params file that does not fit (one line each).
        """
        from emseg.segmentation.editing import checked_slices, training_labels
        from emseg.training.fit import starting_point

        layer = self._cells()
        image = self.image.value
        pixels = check_image_layer(image)
        if pixels.shape != layer.data.shape:
            raise EmsegError(f"image {image.name!r} {pixels.shape} and cells {layer.name!r} {layer.data.shape} differ in shape")
        name = layer.name + CHECKED_SUFFIX
        checked = np.asarray(self.viewer.layers[name].data) > 0 if name in self.viewer.layers else np.zeros(layer.data.shape, bool)
        if checked.shape != layer.data.shape:
            raise EmsegError(f"layer {name!r} does not match the cells' shape")
        labels = training_labels(np.asarray(layer.data), checked)
        slices = checked_slices(checked)
        run = cells_run(layer)
        if not run.get("model"):
            raise EmsegError(f"layer {layer.name!r} was not made by emseg's segment widget: no model to fine-tune from")
        base = Path(run["model"])
        params = finetune_params(Path(self.params_file.value) if _given(self.params_file.value) else None, int(self.steps.value))
        params, base_config, _ = starting_point(base, params)  # the fine-tune trains the base model's network
        images = [pixels] if pixels.ndim == 2 else [pixels[i] for i in slices]
        targets = [labels] if labels.ndim == 2 else [labels[i] for i in slices]
        small = [i for i, slice_ in zip(slices, images, strict=True) if min(slice_.shape) < params.train.patch_size]
        if small:
            raise EmsegError(f"slices {small} are smaller than the training patch ({params.train.patch_size} px)")
        out = Path(self.out.value) if _given(self.out.value) else default_model_path(image)
        pixel_size = self._pixel_size(image, run, base_config)
        provenance = {"image": str(source_path(image) or image.name), "slices": slices, "checked_pixels": int(checked.sum()),
                      "corrected_layer": layer.name}
        return FinetuneJob(self, image, images, targets, out, params, base, pixel_size, provenance)

    @staticmethod
    def _pixel_size(image: Image, run: dict, base_config: Any) -> list[float] | None:
        """The `[z, y, x]` nm the new model records: the segmentation's pixel size, else the layer's, else the base model's."""
        nm = run.get("pixel_size_nm")
        if nm is None:
            size = layer_pixel_size(image)
            nm = size.nm if size else None
        if nm is None:
            return base_config.pixel_size
        thickness = base_config.pixel_size[0] if base_config.pixel_size else nm
        return [thickness, nm, nm]


def _given(value: Any) -> bool:
    """Whether a FileEdit holds a file name (its empty value is the current folder)."""
    return bool(str(value).strip()) and not Path(value).is_dir()


class FinetuneJob:
    """One fine-tune: training on a worker (the trainer's fine-tuning entry), then the image segmented again with the new model."""

    def __init__(self, widget: FinetuneWidget, image: Image, images: list, labels: list, out: Path, params: Any, base: Path,
                 pixel_size: list[float] | None, provenance: dict) -> None:
        self.widget, self.image, self.images, self.labels, self.out = widget, image, images, labels, out
        self.params, self.base, self.pixel_size, self.provenance = params, base, pixel_size, provenance

    def work(self, progress: Progress) -> Any:
        from emseg.training.fit import fit

        def listener(status: TrainingStatus) -> None:
            left = "" if status.seconds_left != status.seconds_left else f", about {status.seconds_left / 60:.1f} min left"  # NaN at first
            val = "" if status.val_v_rand is None else f", val V_rand {status.val_v_rand:.4f}"
            progress.set(status.step, status.total, f"step {status.step}/{status.total}, loss {status.loss:.3f}{val}{left}")

        return fit(self.images, self.labels, self.out, self.params, init=self.base, pixel_size=self.pixel_size,
                   listener=listener, provenance=self.provenance)

    def done(self, result: Any) -> None:
        widget = self.widget
        widget.last_model = result.model_path
        show_info(f"emseg fine-tune: {result.line()}")
        widget.panel.status.value = f"fine-tune: {result.minutes:.1f} min -> {result.model_path}"
        segmenter = find_segment_widget(widget.viewer)
        if segmenter is not None:  # segment the image again with the new model, as the user would next
            segmenter.use_model(result.model_path)
            segmenter.run(self.image, result.model_path)


def find_segment_widget(viewer: Any) -> Any:
    """The viewer's emseg segment widget: the one the user opened, else one made and docked here."""
    from emseg.napari_plugin.segment import SEGMENT_WIDGETS, SegmentWidget

    widget = SEGMENT_WIDGETS.get(viewer)
    if widget is None:
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget, name="emseg: segment", area="right")
    return widget
