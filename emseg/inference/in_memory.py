"""`emseg predict` as a library: run the model over checked inputs and write their outputs.

Every output name is checked for clashes before the first output file is written, so that
a bad input fails the whole run cleanly ([`emseg.inference.inputs`][emseg.inference.inputs]
checks the inputs). Each input's outputs are streamed slice by slice into temporary files
that are renamed onto their final names only once the whole input has been predicted, so
that an error or an interrupt never leaves a partial file behind. The kinds of output are
those of [`emseg.inference.outputs`][emseg.inference.outputs].

An input whose pixel size is known and differs from the model's is predicted at the model's
scale, a slice at a time, and every output is put back on the input's own grid
([`emseg.inference.rescale`][emseg.inference.rescale]).
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from PIL import Image
from torch import nn

from emseg.config.defaults import FALLBACK_THRESHOLD, OVERLAP, TILE_BATCH
from emseg.errors import EmsegError
from emseg.inference.inputs import InputImage
from emseg.inference.outputs import NEEDS_CELLS, OUTPUTS, check_outputs, default_outputs, output_paths
from emseg.inference.predictor import Predictor
from emseg.inference.rescale import Rescaling, plan_rescaling, prediction_to_input_grid, settings_on_input_grid, to_model_grid
from emseg.inference.sliding_window import count_tiles
from emseg.io.atomic import atomic_output
from emseg.io.sections import lone_slices, with_neighbours
from emseg.networks.model_file import ModelConfig
from emseg.segmentation.measurements import PixelSize, cell_columns, cell_rows, summary_columns, summary_row, tiff_pixel_size
from emseg.segmentation.methods import check_settings, segment
from emseg.segmentation.thinning import instance_labels, membrane_to_cell
from emseg.visualization import overlay

#: the smallest sliding window --tile takes: a U-Net's coarsest level needs a few pixels
MIN_TILE = 16


def check_tile(tile: int | None) -> None:
    """Check `--tile`: None, or at least `MIN_TILE` pixels.

    Raises:
        EmsegError: A smaller tile.
    """
    if tile is not None and tile < MIN_TILE:
        raise EmsegError(f"--tile must be at least {MIN_TILE} pixels, got {tile}")


@dataclass(frozen=True)
class PredictOptions:
    """The settings of one `emseg predict` run, checked when made.

    Args:
        outputs: The kinds of output to write (keys of `OUTPUTS` of
            [`emseg.inference.outputs`][emseg.inference.outputs]); `uncertainty` needs `tta`.
        threshold: Cell where the cell probability is above it.
        overlap: The overlap of neighbouring windows, in [0, 1).
        tta: Average the 8 flips and rotations of every tile.
        batch_size: Tiles per forward pass.
        device: Where the network runs.
        amp: Allow mixed precision on CUDA.
        cells: How the cells are drawn: a method of [`emseg.segmentation.methods`][emseg.segmentation.methods].
        cell_settings: That method's settings.
        pixel_size: The pixel size of every input (`--pixel-size`); None: each input's own, if
            its file says.
        tile: The sliding window's side (`--tile`); None: the model's training patch size.
        rescale: Predict an input of known pixel size at the model's pixel size (False:
            `--no-rescale`, every input on its own grid).

    Raises:
        EmsegError: An unknown output kind or cell method, or a value out of range (one line
            naming the option).
    """

    outputs: tuple[str, ...] = default_outputs(tta=False)
    threshold: float = FALLBACK_THRESHOLD
    overlap: float = OVERLAP
    tta: bool = False
    batch_size: int = TILE_BATCH
    device: torch.device = torch.device("cpu")
    amp: bool = True
    #: how the cells are drawn: a method of emseg.segmentation.methods, and its settings
    cells: str = "components"
    cell_settings: dict = field(default_factory=dict)
    #: the pixel size of every input (--pixel-size); None: each input's own, if its file says
    pixel_size: PixelSize | None = None
    #: the sliding window's side (--tile); None: the model's training patch size
    tile: int | None = None
    #: predict at the model's pixel size where the input's is known and differs (False: --no-rescale)
    rescale: bool = True

    def __post_init__(self) -> None:
        check_outputs(self.outputs, self.tta)
        check_settings(self.cells, self.cell_settings)
        if not 0.0 <= self.threshold <= 1.0:
            raise EmsegError(f"--threshold must lie in [0, 1], got {self.threshold:g}")
        if not 0.0 <= self.overlap < 1.0:
            raise EmsegError(f"--overlap must lie in [0, 1), got {self.overlap:g}")
        if self.batch_size < 1:
            raise EmsegError(f"--batch-size must be at least 1, got {self.batch_size}")
        check_tile(self.tile)

    @property
    def uncertainty(self) -> bool:
        """Whether the run measures the uncertainty: with TTA, for its own file or the measurements' confidence."""
        return self.tta and any(kind in self.outputs for kind in ("uncertainty", "measurements"))

    def predictor(self, model: nn.Module, config: ModelConfig) -> Predictor:
        """The [`Predictor`][emseg.inference.predictor.Predictor] of `model` with these settings."""
        return Predictor(model, config, self.overlap, self.tta, self.batch_size, self.device, self.amp, self.tile)


@dataclass
class PredictSummary:
    """What a run of [`predict_files`][emseg.inference.in_memory.predict_files] did.

    The inputs, slices and megapixels predicted, the seconds taken (and spent drawing cells),
    and the files written.
    """

    images: int
    slices: int
    megapixels: float
    seconds: float
    written: list[Path]
    #: the seconds spent drawing cells, over all slices
    cell_seconds: float = 0.0

    @property
    def mpix_per_s(self) -> float:
        """Megapixels predicted per second."""
        return self.megapixels / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        """The one-line summary `emseg predict` prints."""
        return (
            f"predicted {self.images} image(s), {self.slices} slice(s), {self.megapixels:.2f} MPix "
            f"in {self.seconds:.1f} s ({self.mpix_per_s:.3f} MPix/s; cells {self.cell_seconds / max(self.slices, 1):.2f} s/slice)"
        )


def item_outputs(item: InputImage, out_dir: Path, outputs: Sequence[str]) -> dict[str, Path]:
    """The output files of one input."""
    return output_paths(item.stem, item.is_stack, out_dir, outputs)


def check_output_names(items: Sequence[InputImage], out_dir: Path, outputs: Sequence[str]) -> None:
    """Refuse two inputs writing the same output file, or an output overwriting an input.

    Raises:
        EmsegError: A clash, or `out_dir` exists and is not a folder.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise EmsegError(f"{out_dir}: exists and is not a folder (--out names the output folder)")
    inputs = {item.path.resolve(): item.path for item in items}
    owner: dict[Path, Path] = {}
    for item in items:
        for path in item_outputs(item, out_dir, outputs).values():
            key = path.resolve()
            if key in owner:
                raise EmsegError(f"{item.path} and {owner[key]} would both write {path}; rename one or predict them separately")
            if key in inputs:
                raise EmsegError(f"{path}: output of {item.path} would overwrite an input; choose another --out")
            owner[key] = item.path


class _OutputFiles:
    """The open temporary files of one input's outputs, written slice by slice.

    Stacks and the probability and cell maps stream into multi-page TIFFs (the layout of
    `emseg.io.images.write_tiff`); a single slice's membrane mask and the overlay are PNGs; the
    measurements are CSV tables with their header written first.
    """

    def __init__(
        self, tmps: dict[str, Path], is_stack: bool, exits: contextlib.ExitStack, pixel_size: PixelSize | None, confidence: bool = False
    ) -> None:
        self.tmps = tmps
        self.pixel_size = pixel_size
        self.tiffs: dict[str, tifffile.TiffWriter] = {}
        self.tables: dict[str, Any] = {}
        for kind, tmp in tmps.items():
            name = OUTPUTS[kind].file_name("", is_stack)
            if name.endswith(".tif"):
                dtype = np.dtype(OUTPUTS[kind].dtype)
                self.tiffs[kind] = tifffile.TiffWriter(tmp, imagej=dtype in (np.uint8, np.uint16, np.float32))
                exits.callback(self.tiffs[kind].close)  # runs before the rename (LIFO)
            elif name.endswith(".csv"):
                handle = exits.enter_context(open(tmp, "w", newline=""))
                self.tables[kind] = csv.writer(handle)
                header = cell_columns(pixel_size, confidence) if kind == "measurements" else summary_columns(pixel_size)
                self.tables[kind].writerow(header)

    def wants(self, kind: str) -> bool:
        return kind in self.tmps

    def write(self, kind: str, page: np.ndarray) -> None:
        if kind in self.tiffs:
            self.tiffs[kind].write(page, contiguous=True, photometric="minisblack")
        else:
            Image.fromarray(page).save(self.tmps[kind], format="PNG")

    def write_rows(self, kind: str, rows: list[list[float]]) -> None:
        self.tables[kind].writerows(rows)


def input_pixel_size(item: InputImage, options: PredictOptions) -> PixelSize | None:
    """The pixel size of an input: `--pixel-size`, else what its TIFF says, else None."""
    return options.pixel_size or tiff_pixel_size(item.path)


def context_note(slices: int, context: int) -> str:
    """The line that says a model reading neighbouring sections got a lone slice (its own neighbours); empty otherwise."""
    if not lone_slices(slices, context):
        return ""
    sections = "section" if context == 1 else "sections"
    return f"the model reads {context} {sections} on each side of a slice; a single slice is given as its own neighbours"


def plan_inputs(items: Sequence[InputImage], config: ModelConfig, options: PredictOptions) -> list[Rescaling]:
    """Whether and how much each input is rescaled to the model's pixel size, with the line that says so."""
    return [plan_rescaling(input_pixel_size(item, options), config.pixel_size_yx(), options.rescale) for item in items]


@dataclass
class SliceOutputs:
    """What the model and the cell step make of one slice, on the input's own grid.

    `cell` is the cell-interior probability (`float32`, high = cell: the file output `proba`),
    `cell_mask` where it is above the threshold (the membrane mask is its complement), and
    `cells` the cell labels (`uint32`, 0 = outlines), or None when they were not asked for;
    `uncertainty` the variance across the test-time augmentations where the run measures it.
    """

    cell: np.ndarray
    cell_mask: np.ndarray
    cells: np.ndarray | None
    #: the seconds spent drawing the cells
    cell_seconds: float = 0.0
    uncertainty: np.ndarray | None = None


def predict_slice(
    predictor: Predictor,
    raw: np.ndarray,
    options: PredictOptions,
    with_cells: bool = True,
    progress: Callable[[int], object] | None = None,
    rescaling: Rescaling | None = None,
) -> SliceOutputs:
    """One slice through the model and the cell step: the one path of `emseg predict` and of the napari plugin.

    Args:
        predictor: The model with the run's window settings.
        raw: The slice, 2-D; for a model that reads neighbouring sections, the slice with them
            (2k + 1, H, W: [`with_neighbours`][emseg.io.sections.with_neighbours]).
        options: The run's threshold and cell step.
        with_cells: Draw the cells (skipped when no output needs them).
        progress: Called with the number of tiles after each tile batch.
        rescaling: Resample to the model's pixel size and every output back; None: on the input's grid.
    """
    settings = options.cell_settings
    if rescaling is not None and rescaling.factors is not None:
        # predicted on the model's grid, then everything (cells included) drawn on the input's:
        # benchmarks/rescale_choice.py measured this against resizing cells drawn at the model's scale
        prediction = predictor.predict(to_model_grid(raw, rescaling.factors), progress, options.uncertainty)
        prediction = prediction_to_input_grid(prediction, raw.shape[-2:], rescaling.factors)
        settings = settings_on_input_grid(settings, rescaling.factors)
    else:
        prediction = predictor.predict(raw, progress, options.uncertainty)
    cell = membrane_to_cell(prediction.membrane)
    # Fiji's convention (cell where p > t); the membrane mask is its exact complement
    cell_mask = cell > np.float32(options.threshold)
    if not with_cells:
        return SliceOutputs(cell, cell_mask, None, uncertainty=prediction.uncertainty)
    start = time.perf_counter()
    # components at the mask's own threshold: the cells the ISBI scores of this mask judge
    labels = instance_labels(cell_mask) if options.cells == "components" else segment(options.cells, prediction, settings)
    return SliceOutputs(cell, cell_mask, labels, time.perf_counter() - start, prediction.uncertainty)


def _predict_slice(
    predictor: Predictor,
    raw: np.ndarray,
    index: int,
    files: _OutputFiles,
    options: PredictOptions,
    with_overlay: bool,
    progress: Callable[[int], object] | None,
    rescaling: Rescaling | None = None,
    inputs: np.ndarray | None = None,
) -> float:
    """Write one slice's outputs (`inputs`: the slice with its neighbouring sections, for a model that reads them); the seconds spent drawing its cells."""
    with_cells = any(files.wants(kind) for kind in NEEDS_CELLS if kind != "overlay") or with_overlay
    result = predict_slice(predictor, raw if inputs is None else inputs, options, with_cells, progress, rescaling)
    if files.wants("proba"):
        files.write("proba", result.cell)
    if files.wants("membrane"):
        files.write("membrane", (~result.cell_mask).view(np.uint8) * np.uint8(255))
    if files.wants("uncertainty"):
        files.write("uncertainty", result.uncertainty)
    labels = result.cells
    if labels is not None:
        if files.wants("cells"):
            files.write("cells", labels)
        if with_overlay:
            files.write("overlay", overlay(raw, ~result.cell_mask, labels))
        if files.wants("measurements"):
            files.write_rows("measurements", cell_rows(labels, raw, index, files.pixel_size, result.uncertainty))
        if files.wants("summary"):
            files.write_rows("summary", [summary_row(labels, index, files.pixel_size)])
    return result.cell_seconds


def predict_file(
    model: nn.Module,
    config: ModelConfig,
    item: InputImage,
    out_dir: Path,
    options: PredictOptions,
    progress: Callable[[int], object] | None = None,
    rescaling: Rescaling | None = None,
) -> tuple[list[Path], float]:
    """Predict every slice of one input and write its outputs.

    `rescaling` ([`plan_inputs`][emseg.inference.in_memory.plan_inputs]) resamples each slice
    to the model's pixel size and every output back; None: planned here.

    Returns:
        The files written, and the seconds spent drawing cells.
    """
    stack = item.read()
    targets = item_outputs(item, out_dir, options.outputs)
    predictor = options.predictor(model, config)
    with contextlib.ExitStack() as exits:
        # entered before any slice is predicted: a failure anywhere removes every temp file
        pixel_size = input_pixel_size(item, options)
        if rescaling is None:
            rescaling = plan_rescaling(pixel_size, config.pixel_size_yx(), options.rescale)
        tmps = {kind: exits.enter_context(atomic_output(path)) for kind, path in targets.items()}
        files = _OutputFiles(tmps, item.is_stack, exits, pixel_size, confidence=options.uncertainty)
        seconds = 0.0
        for index, raw in enumerate(stack):
            with_overlay = files.wants("overlay") and index == stack.shape[0] // 2
            inputs = with_neighbours(stack, index, config.context) if config.context else None
            seconds += _predict_slice(predictor, raw, index, files, options, with_overlay, progress, rescaling, inputs)
    return list(targets.values()), seconds


def total_tiles(items: Sequence[InputImage], patch_size: int, overlap: float, rescalings: Sequence[Rescaling] | None = None) -> int:
    """The tiles a prediction of `items` runs (on the model's grid where `rescalings` resample them), for a progress bar."""
    plans = rescalings if rescalings is not None else [Rescaling(None, "")] * len(items)
    return sum(item.shape[0] * count_tiles(plan.model_shape(item.shape), patch_size, overlap) for item, plan in zip(items, plans, strict=True))


def predict_files(
    model: nn.Module,
    config: ModelConfig,
    items: Sequence[InputImage],
    out_dir: Path,
    options: PredictOptions,
    progress: Callable[[int], object] | None = None,
    on_file: Callable[[InputImage], object] | None = None,
    rescalings: Sequence[Rescaling] | None = None,
) -> PredictSummary:
    """Predict checked inputs one after the other and write their outputs.

    Call [`check_output_names`][emseg.inference.in_memory.check_output_names] first.

    Args:
        model: The network.
        config: Its model file's config.
        items: The checked inputs ([`inspect_inputs`][emseg.inference.inputs.inspect_inputs]).
        out_dir: The output folder.
        options: The run's settings.
        progress: Called with the number of tiles after each tile batch.
        on_file: Called with each input before it is predicted.
        rescalings: Each input's [`Rescaling`][emseg.inference.rescale.Rescaling]
            ([`plan_inputs`][emseg.inference.in_memory.plan_inputs]); None: planned here.

    Returns:
        What was done, and how fast.

    Raises:
        EmsegError: An output cannot be written (disk full, no permission), naming it.
    """
    start = time.perf_counter()
    written: list[Path] = []
    cell_seconds = 0.0
    plans = list(rescalings) if rescalings is not None else plan_inputs(items, config, options)
    for item, rescaling in zip(items, plans, strict=True):
        if on_file is not None:
            on_file(item)
        try:
            files, seconds = predict_file(model, config, item, out_dir, options, progress, rescaling)
            written += files
            cell_seconds += seconds
        except OSError as exc:  # disk full, no permission: one clear line, not a traceback
            raise EmsegError(f"{exc.filename or out_dir}: cannot write outputs of {item.path} ({exc.strerror or exc})") from exc
        item.array = None  # the cache has served its purpose
    return PredictSummary(
        images=len(items),
        slices=sum(item.shape[0] for item in items),
        megapixels=sum(item.pixels for item in items) / 1e6,
        seconds=time.perf_counter() - start,
        written=written,
        cell_seconds=cell_seconds,
    )


@dataclass
class SegmentedImage:
    """What [`segment_image`][emseg.inference.in_memory.segment_image] made of an image, on its own grid and with its shape.

    `cell` is the cell-interior probability (`float32`: `emseg predict`'s `proba`), `membrane`
    the membrane mask (`uint8`, 1 = membrane: `emseg predict`'s `membrane` / 255), `cells` the
    cell labels (`uint32`, 0 = outlines, numbered per slice as in `<stem>_cells.tif`),
    `rescaling` whether the image was predicted at the model's pixel size, with its line, and
    `uncertainty` the variance across the test-time augmentations (`emseg predict`'s
    `uncertainty`; None without TTA).
    """

    cell: np.ndarray
    membrane: np.ndarray
    cells: np.ndarray
    rescaling: Rescaling
    seconds: float
    uncertainty: np.ndarray | None = None


def segment_image(
    model: nn.Module,
    config: ModelConfig,
    image: np.ndarray,
    options: PredictOptions,
    progress: Callable[[int], object] | None = None,
) -> SegmentedImage:
    """`emseg predict` on an array in memory (a slice `(H, W)` or a stack `(Z, H, W)`): the napari plugin's segmentation.

    Each slice runs [`predict_slice`][emseg.inference.in_memory.predict_slice], the path of
    [`predict_files`][emseg.inference.in_memory.predict_files], with `options.pixel_size` as
    the image's pixel size, so the cells equal those `emseg predict` writes for the same
    image and settings. A single slice's arrays are returned as made (no copy: the peak is
    the command line's); a stack's are filled slice by slice.

    Args:
        model: The network.
        config: Its model file's config.
        image: Grey pixels, 2-D or 3-D (any real or integer type).
        options: The run's settings; `options.pixel_size` is the image's (None: unknown).
        progress: Called with the number of tiles after each tile batch; it may raise
            ([`Cancelled`][emseg.errors.Cancelled]) to stop the run.

    Raises:
        EmsegError: An image that is not 2-D or 3-D.
    """
    if image.ndim not in (2, 3) or min(image.shape[-2:]) < 1:
        raise EmsegError(f"expected a grey slice (H, W) or a stack (Z, H, W), got an array of shape {image.shape}")
    start = time.perf_counter()
    rescaling = plan_rescaling(options.pixel_size, config.pixel_size_yx(), options.rescale)
    predictor = options.predictor(model, config)
    stack = image[None] if image.ndim == 2 else image
    outputs = None
    for index in range(len(stack)):
        result = predict_slice(predictor, with_neighbours(stack, index, config.context), options, True, progress, rescaling)
        membrane = (~result.cell_mask).view(np.uint8)
        if image.ndim == 2:
            return SegmentedImage(result.cell, membrane, result.cells, rescaling, time.perf_counter() - start, result.uncertainty)  # type: ignore[arg-type]
        pages = (result.cell, membrane, result.cells, result.uncertainty)
        if outputs is None:
            outputs = [None if page is None else np.empty(stack.shape, page.dtype) for page in pages]
        for output, page in zip(outputs, pages, strict=True):
            if output is not None:
                output[index] = page
    assert outputs is not None  # a stack has at least one slice
    cell, membrane, cells, uncertainty = outputs
    return SegmentedImage(cell, membrane, cells, rescaling, time.perf_counter() - start, uncertainty)


def tiles_of_image(config: ModelConfig, shape: Sequence[int], options: PredictOptions) -> int:
    """The tiles [`segment_image`][emseg.inference.in_memory.segment_image] runs for an image of `shape`, for a progress bar."""
    rescaling = plan_rescaling(options.pixel_size, config.pixel_size_yx(), options.rescale)
    slices = shape[0] if len(shape) == 3 else 1
    return slices * count_tiles(rescaling.model_shape((slices, *shape[-2:])), config.window(options.tile), options.overlap)
