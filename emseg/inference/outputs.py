"""The files `emseg predict` writes: one table of output kinds (`OUTPUTS`), their names and pixel types.

Torch-free, so that the command-line parser can import it. Per input `<stem>` (the file
name without suffix), in the output folder:

* `proba`: `<stem>_proba.tif`, `float32` cell-interior probability (`1 - membrane`), one
  page per slice;
* `membrane`: `<stem>_membrane.png` (single image) or `<stem>_membrane.tif` (stack),
  255 = membrane;
* `cells`: `<stem>_cells.tif`, `uint32` instance labels, numbered per slice, 0 = cell outline lines;
* `overlay`: `<stem>_overlay.png`, membranes (red) and cell outlines (yellow) over the raw
  image, of the middle slice for a stack;
* `measurements`: `<stem>_cells.csv`, one row per cell per slice
  ([`emseg.segmentation.measurements`][emseg.segmentation.measurements]);
* `summary`: `<stem>_cells_summary.csv`, cell count and median area per slice;
* `uncertainty`: `<stem>_uncertainty.tif`, `float32`, the variance of the 8 test-time
  augmentations' probabilities (mean over an affinity model's channels; 0..0.25): where to
  look first. Only with `--tta`, which the default set then includes, and with it the
  measurements gain a per-cell `uncertainty` and `confidence`.

Volume inputs get OME-Zarr stores instead
([`emseg.inference.volume.blockwise`][emseg.inference.volume.blockwise]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.errors import EmsegError


@dataclass(frozen=True)
class OutputKind:
    """One kind of output file: its name after the input's stem, and what its pixels hold."""

    suffix: str
    dtype: type
    #: the file type for a single-slice input, and for a stack
    single: str = "tif"
    stack: str = "tif"
    description: str = ""

    def file_name(self, stem: str, is_stack: bool) -> str:
        """The file name of this kind for an input `stem`, single slice or stack."""
        return f"{stem}_{self.suffix}.{self.stack if is_stack else self.single}"


OUTPUTS: dict[str, OutputKind] = {
    "proba": OutputKind("proba", np.float32, description="float32 cell-interior probability (0..1, high = cell)"),
    "membrane": OutputKind("membrane", np.uint8, single="png", description="binary membrane mask, 255 = membrane"),
    "cells": OutputKind("cells", np.uint32, description="uint32 cell instance labels per slice (0 = 1-pixel outlines)"),
    "overlay": OutputKind(
        "overlay", np.uint8, single="png", stack="png", description="membranes (red) and cell outlines (yellow) over the image (middle slice of a stack)"
    ),
    "measurements": OutputKind("cells", np.float64, single="csv", stack="csv", description="one row per cell per slice: area, perimeter, centroid, bounding box, ..."),
    "summary": OutputKind("cells_summary", np.float64, single="csv", stack="csv", description="cell count and median cell area per slice"),
    "uncertainty": OutputKind(
        "uncertainty", np.float32, description="float32 variance across the 8 test-time augmentations (--tta only): where to look first"
    ),
}
#: the kinds that need the cell labels
NEEDS_CELLS = ("cells", "overlay", "measurements", "summary")
#: the kinds that need test-time augmentation (the variance across its 8 variants)
NEEDS_TTA = ("uncertainty",)
OUTPUT_KINDS = tuple(OUTPUTS)


def default_outputs(tta: bool) -> tuple[str, ...]:
    """Every kind a run makes when `--outputs` is not given: all of them, the uncertainty only with TTA."""
    return tuple(kind for kind in OUTPUT_KINDS if tta or kind not in NEEDS_TTA)


def parse_outputs(text: str, tta: bool = True) -> tuple[str, ...]:
    """The kinds of `--outputs` (comma-separated), in the table's order, each once; `tta`: the run has `--tta`."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    check_outputs(names, tta)
    return tuple(kind for kind in OUTPUT_KINDS if kind in names)


def check_outputs(names: Sequence[str], tta: bool = True) -> None:
    """Check that every name is a kind of output, that there is at least one, and that those needing TTA have it.

    Raises:
        EmsegError: An unknown kind, none, or the uncertainty without TTA (one line naming `--outputs`).
    """
    bad = [name for name in names if name not in OUTPUTS]
    if bad or not names:
        raise EmsegError(f"--outputs: unknown output {', '.join(bad) or '(none)'}; choose from {','.join(OUTPUT_KINDS)}")
    untta = [name for name in names if name in NEEDS_TTA]
    if untta and not tta:
        raise EmsegError(f"--outputs {','.join(untta)}: the variance across the test-time augmentations needs --tta")


def output_paths(stem: str, is_stack: bool, out_dir: Path, outputs: Sequence[str]) -> dict[str, Path]:
    """The file of each requested kind for one input."""
    return {kind: out_dir / spec.file_name(stem, is_stack) for kind, spec in OUTPUTS.items() if kind in outputs}
