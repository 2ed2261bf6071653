"""``emseg predict`` as a library: find and check the inputs, run the model, write the outputs.

Every input is checked (readable, supported type, finite values) and every output name
is checked for clashes before the first output file is written, so a bad input fails
the whole run cleanly.  Each input's outputs are streamed slice by slice into
temporary files that are renamed onto their final names only once the whole input has
been predicted, so an error or an interrupt never leaves a partial file behind.

Per input ``<stem>`` (the file name without suffix), in the output folder:

* ``<stem>_proba.tif``: float32 cell-interior probability (``1 - membrane``), one page per slice;
* ``<stem>_membrane.png`` (single image) or ``<stem>_membrane.tif`` (stack): 255 = membrane;
* ``<stem>_cells.tif``: uint32 instance labels, numbered per slice, 0 = cell outline lines;
* ``<stem>_overlay.png``: membranes (red) and cell outlines (yellow) over the raw image,
  of the middle slice for a stack.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from torch import nn

from emseg.errors import ColourImageError, EmsegError
from emseg.evaluation.metrics import membrane_to_cell, thin_borders
from emseg.inference.sliding_window import count_tiles, predict_membrane
from emseg.io import IMAGE_SUFFIXES, atomic_output, list_images, read_stack
from emseg.inference.outputs import FALLBACK_THRESHOLD, OUTPUT_KINDS
from emseg.model_file import ModelConfig

#: inputs read during validation are kept for the prediction pass up to this many bytes,
#: so small inputs are decoded once while a folder of huge slices never sits in memory whole
_CACHE_BYTES = 256 * 2**20

_MEMBRANE_RGB = (255, 40, 40)
_MEMBRANE_ALPHA = 112  # of 256: the raw image stays readable under the tint
_OUTLINE_RGB = (255, 225, 0)


@dataclass(frozen=True)
class PredictOptions:
    outputs: tuple[str, ...] = OUTPUT_KINDS
    threshold: float = FALLBACK_THRESHOLD
    overlap: float = 0.5
    tta: bool = False
    batch_size: int = 4
    device: torch.device = torch.device("cpu")
    amp: bool = True

    def __post_init__(self) -> None:
        bad = [name for name in self.outputs if name not in OUTPUT_KINDS]
        if bad or not self.outputs:
            raise EmsegError(
                f"--outputs: unknown output {', '.join(bad) or '(none)'}; choose from {','.join(OUTPUT_KINDS)}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise EmsegError(f"--threshold must lie in [0, 1], got {self.threshold:g}")
        if not 0.0 <= self.overlap < 1.0:
            raise EmsegError(f"--overlap must lie in [0, 1), got {self.overlap:g}")
        if self.batch_size < 1:
            raise EmsegError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class InputImage:
    """One checked input file; ``array`` is kept only while it fits the read cache."""

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    colour: bool
    array: np.ndarray | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def is_stack(self) -> bool:
        return self.shape[0] > 1

    @property
    def pixels(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    def read(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        return _read_checked(self.path)[0]


@dataclass
class PredictSummary:
    images: int
    slices: int
    megapixels: float
    seconds: float
    written: list[Path]

    @property
    def mpix_per_s(self) -> float:
        return self.megapixels / self.seconds if self.seconds > 0 else float("inf")

    def line(self) -> str:
        return (
            f"predicted {self.images} image(s), {self.slices} slice(s), {self.megapixels:.2f} MPix "
            f"in {self.seconds:.1f} s ({self.mpix_per_s:.3f} MPix/s)"
        )


# --------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------


def discover_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders into their image files (sorted, not recursive); files are kept as given.

    A folder's files are predicted one by one, not as one stack, so a folder of slices
    of different sizes works and every output is named after its own file.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise EmsegError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        else:
            found.append(path)
    if not found:
        raise EmsegError("no input images given")
    return found


def _read_checked(path: Path) -> tuple[np.ndarray, bool]:
    """Read one file as (slices, H, W) grey; True when it had colour channels (made grey)."""
    if path.is_dir():  # read_stack would stack a folder's slices; predict takes its files one by one
        raise EmsegError(f"{path}: is a folder, expected an image file")
    try:
        array, colour = read_stack(path, allow_rgb=False), False
    except ColourImageError:
        array, colour = read_stack(path, allow_rgb=True), True
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise EmsegError(f"{path}: unsupported pixel type {array.dtype} (use 8- or 16-bit grey or RGB)")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise EmsegError(f"{path}: image contains NaN or infinite values")
    return array, colour


def inspect_inputs(paths: Sequence[Path], cache_bytes: int = _CACHE_BYTES) -> list[InputImage]:
    """Read every input once to prove it is usable; keep the first ones in memory up to ``cache_bytes``."""
    items = []
    cached = 0
    for path in paths:
        array, colour = _read_checked(path)
        keep = cached + array.nbytes <= cache_bytes
        cached += array.nbytes if keep else 0
        items.append(InputImage(path, tuple(array.shape), array.dtype, colour, array if keep else None))  # type: ignore[arg-type]
    return items


def output_paths(item: InputImage, out_dir: Path, outputs: Sequence[str]) -> dict[str, Path]:
    names = {
        "proba": f"{item.stem}_proba.tif",
        "mask": f"{item.stem}_membrane.{'tif' if item.is_stack else 'png'}",
        "cells": f"{item.stem}_cells.tif",
        "overlay": f"{item.stem}_overlay.png",
    }
    return {kind: out_dir / names[kind] for kind in OUTPUT_KINDS if kind in outputs}


def check_output_names(items: Sequence[InputImage], out_dir: Path, outputs: Sequence[str]) -> None:
    """Refuse two inputs writing the same output file, or an output overwriting an input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EmsegError(f"{out_dir}: exists and is not a folder (--out names the output folder)")
    inputs = {item.path.resolve(): item.path for item in items}
    owner: dict[Path, Path] = {}
    for item in items:
        for path in output_paths(item, out_dir, outputs).values():
            key = path.resolve()
            if key in owner:
                raise EmsegError(f"{item.path} and {owner[key]} would both write {path}; rename one or predict them separately")
            if key in inputs:
                raise EmsegError(f"{path}: output of {item.path} would overwrite an input; choose another --out")
            owner[key] = item.path


# --------------------------------------------------------------------------------------
# per-slice products
# --------------------------------------------------------------------------------------


def instance_labels(cell_mask: np.ndarray) -> np.ndarray:
    """uint32 cell instances of a thresholded cell mask (H, W), 0 on the 1-pixel outlines.

    Fiji-style border thinning (:func:`~emseg.evaluation.metrics.thin_borders`) rather
    than a watershed on the probabilities: its regions are exactly the 4-connected cell
    components (membrane pixels flooded into them) that the ISBI V_rand / V_info scores
    judge at this threshold, so the labels match the reported scores; it needs no seed
    or compactness parameters, and it is deterministic and linear in the area.
    """
    if not cell_mask.any():  # thin_borders calls an all-border slice one region; here it is no cell at all
        return np.zeros(cell_mask.shape, np.uint32)
    return thin_borders(cell_mask).view(np.uint32)  # labels are >= 0, so the bits are the same


def display_uint8(image: np.ndarray, chunk_rows: int = 1024) -> np.ndarray:
    """The raw slice as 8-bit for display: 8-bit kept, others stretched between the 0.5 and 99.5 percentiles."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.view(np.uint8) * np.uint8(255)
    step = max(1, int(np.sqrt(image.size / 1e6)))  # percentiles of ~1 MPix are plenty for display
    lo, hi = np.percentile(image[::step, ::step], (0.5, 99.5))
    scale = np.float32(255.0 / (hi - lo)) if hi > lo else np.float32(0.0)
    out = np.empty(image.shape, np.uint8)
    for start in range(0, image.shape[0], chunk_rows):  # row chunks: no full-size float temporary
        rows = image[start : start + chunk_rows].astype(np.float32)
        rows -= np.float32(lo)
        rows *= scale
        np.clip(rows, 0, 255, out=rows)
        out[start : start + chunk_rows] = rows
    return out


def outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean outline pixels: the 0 lines plus any place two different labels touch."""
    if not labels.any():
        return np.zeros(labels.shape, bool)
    edge = labels == 0
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edge


def overlay(image: np.ndarray, membrane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3): the raw slice, membranes tinted red, cell outlines in yellow."""
    grey = display_uint8(image)
    rgb = np.empty((*grey.shape, 3), np.uint8)
    edge = outlines(labels)
    for c in range(3):
        channel = rgb[..., c]
        channel[...] = grey
        tinted = channel[membrane].astype(np.uint16) * (256 - _MEMBRANE_ALPHA) + _MEMBRANE_RGB[c] * _MEMBRANE_ALPHA
        channel[membrane] = (tinted >> 8).astype(np.uint8)
        channel[edge] = _OUTLINE_RGB[c]
    return rgb


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------


class _TiffStream:
    """Pages appended one slice at a time into an atomic temp file; same layout as ``emseg.io.write_tiff``."""

    def __init__(self, tmp: Path, dtype: np.dtype) -> None:
        self._writer = tifffile.TiffWriter(tmp, imagej=np.dtype(dtype) in (np.uint8, np.uint16, np.float32))

    def write(self, page: np.ndarray) -> None:
        self._writer.write(page, contiguous=True, photometric="minisblack")

    def close(self) -> None:
        self._writer.close()


_TIFF_DTYPES = {"proba": np.float32, "mask": np.uint8, "cells": np.uint32}


def predict_file(
    model: nn.Module,
    config: ModelConfig,
    item: InputImage,
    out_dir: Path,
    options: PredictOptions,
    progress: Callable[[int], object] | None = None,
) -> list[Path]:
    """Predict every slice of one input and write its outputs; returns the files written."""
    stack = item.read()
    targets = output_paths(item, out_dir, options.outputs)
    middle = stack.shape[0] // 2
    with contextlib.ExitStack() as exits:
        # entered before any slice is predicted: a failure anywhere removes every temp file
        tmps = {kind: exits.enter_context(atomic_output(path)) for kind, path in targets.items()}
        streams: dict[str, _TiffStream] = {}
        for kind, dtype in _TIFF_DTYPES.items():
            if kind in tmps and (kind != "mask" or item.is_stack):
                streams[kind] = _TiffStream(tmps[kind], dtype)
                exits.callback(streams[kind].close)  # runs before the rename (LIFO)
        for index, raw in enumerate(stack):
            membrane = predict_membrane(
                model,
                raw,
                config.patch_size,
                config.normalization,
                overlap=options.overlap,
                tta=options.tta,
                batch_size=options.batch_size,
                device=options.device,
                amp=options.amp,
                progress=progress,
            )
            cell = membrane_to_cell(membrane)
            del membrane
            if "proba" in streams:
                streams["proba"].write(cell)
            # Fiji's convention (cell where p > t); the membrane mask is its exact complement
            cell_mask = cell > np.float32(options.threshold)
            del cell
            if "mask" in tmps:
                membrane_u8 = (~cell_mask).view(np.uint8) * np.uint8(255)
                if item.is_stack:
                    streams["mask"].write(membrane_u8)
                else:
                    _write_png_to(tmps["mask"], membrane_u8)
                del membrane_u8
            want_overlay = "overlay" in tmps and index == middle
            if "cells" in streams or want_overlay:
                labels = instance_labels(cell_mask)
                if "cells" in streams:
                    streams["cells"].write(labels)
                if want_overlay:
                    Image.fromarray(overlay(raw, ~cell_mask, labels)).save(tmps["overlay"], format="PNG")
                del labels
    return list(targets.values())


def _write_png_to(tmp: Path, image: np.ndarray) -> None:
    """Write a PNG slice into an already-open atomic temp path (``write_png``'s format)."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise EmsegError(f"PNG slices must be 2-D uint8 or uint16, got {image.dtype} {image.shape}")
    Image.fromarray(image).save(tmp, format="PNG")


def total_tiles(items: Sequence[InputImage], patch_size: int, overlap: float) -> int:
    return sum(item.shape[0] * count_tiles(item.shape[1:], patch_size, overlap) for item in items)


def predict_files(
    model: nn.Module,
    config: ModelConfig,
    items: Sequence[InputImage],
    out_dir: Path,
    options: PredictOptions,
    progress: Callable[[int], object] | None = None,
    on_file: Callable[[InputImage], object] | None = None,
) -> PredictSummary:
    """Predict checked inputs one after the other (call :func:`check_output_names` first)."""
    start = time.perf_counter()
    written: list[Path] = []
    for item in items:
        if on_file is not None:
            on_file(item)
        try:
            written += predict_file(model, config, item, out_dir, options, progress)
        except OSError as exc:  # disk full, no permission: one clear line, not a traceback
            raise EmsegError(f"{exc.filename or out_dir}: cannot write outputs of {item.path} ({exc.strerror or exc})") from exc
        item.array = None  # the cache has served its purpose
    seconds = time.perf_counter() - start
    return PredictSummary(
        images=len(items),
        slices=sum(item.shape[0] for item in items),
        megapixels=sum(item.pixels for item in items) / 1e6,
        seconds=seconds,
        written=written,
    )


__all__ = [
    "OUTPUT_KINDS",
    "InputImage",
    "PredictOptions",
    "PredictSummary",
    "check_output_names",
    "discover_inputs",
    "display_uint8",
    "inspect_inputs",
    "instance_labels",
    "output_paths",
    "overlay",
    "predict_file",
    "predict_files",
    "total_tiles",
]
