"""`emseg score`: the ISBI 2012 scores of any prediction against its labels, as Fiji's official scorer computes them.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from emseg.errors import EmsegError
from emseg.evaluation.metrics import ScoreResult, score
from emseg.io.atomic import write_json
from emseg.io.images import read_stack
from emseg.segmentation.thinning import membrane_to_cell

#: the `--help` text
HELP = """emseg score LABELS PROBA: ISBI-2012 scores of any prediction, as Fiji's official scorer.

LABELS: ground-truth stack (0 = membrane, > 0 = cell).  PROBA: a probability map of the
same slices where high = cell (or high = membrane with --membrane): float in [0, 1],
or 8-bit (value / 255) or 16-bit (value / 65535).  Both may be TIFF stacks, single
PNG/JPEG images or folders of slices.
"""


#: below this share of cell pixels, labels look like membrane maps (ISBI labels are ~78% cell)
INVERTED_CELL_FRACTION = 0.5


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg score` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser(
        "score",
        help="score a probability map against ISBI-style labels (V_rand, V_info, pixel error)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("labels", type=Path, metavar="LABELS", help="ground-truth labels (0 = membrane, > 0 = cell)")
    parser.add_argument("proba", type=Path, metavar="PROBA", help="probability map (high = cell unless --membrane)")
    parser.add_argument("--membrane", action="store_true", help="PROBA holds membrane probability (high = membrane)")
    parser.add_argument("--json", type=Path, metavar="OUT.json", help="also write all scores as JSON")
    parser.set_defaults(handler=run)


def _labels_from(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer) and not np.issubdtype(array.dtype, np.floating):
        raise EmsegError(f"{path}: labels must be a grey image, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise EmsegError(f"{path}: labels contain NaN or infinite values")
    if array.min() < 0:
        raise EmsegError(f"{path}: labels must be 0 (membrane) or > 0 (cell), found negative values")
    return array


def label_warnings(labels: np.ndarray, path: Path) -> list[str]:
    """Warnings about labels that score meaninglessly (slices without a cell, labels that look inverted).

    Raises:
        EmsegError: The labels hold no cell at all, so that every score would be 0.
    """
    cells = labels > 0
    per_slice = cells.reshape(len(cells), -1).any(axis=1)
    if not per_slice.any():
        raise EmsegError(
            f"{path}: labels hold no cell (every pixel is 0 = membrane), so every score would be 0; "
            "labels need 0 = membrane and > 0 = cell"
        )
    warnings = []
    if not per_slice.all():
        empty = [str(i + 1) for i in np.flatnonzero(~per_slice)]
        shown = ", ".join(empty[:8]) + (", ..." if len(empty) > 8 else "")
        warnings.append(f"{path}: slice(s) {shown} hold no cell (all 0 = membrane) and score 0")
    fraction = float(cells.mean())
    if fraction < INVERTED_CELL_FRACTION:
        warnings.append(
            f"{path}: only {fraction:.0%} of the label pixels are cell (> 0); labels need 0 = membrane and "
            "> 0 = cell, with most pixels cell: if yours mark membranes > 0, invert them"
        )
    return warnings


def _unit_map_from(array: np.ndarray, path: Path) -> np.ndarray:
    """A float32 map in [0, 1]: 8-bit / 255, 16-bit / 65535, floats checked.

    Deliberate difference from Fiji: the official scorer would compare raw 0-255 (or
    0-65535) values against the 0-1 thresholds, i.e. score an integer map at "every
    pixel > 0"; we read integer maps as fractions of their full range instead.
    """
    if array.dtype == bool:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return (array / 255.0).astype(np.float32)
    if array.dtype == np.uint16:
        return (array / 65535.0).astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise EmsegError(
            f"{path}: unsupported probability map type {array.dtype} (use float in [0, 1], 8-bit or 16-bit)"
        )
    if np.isnan(array).any():
        bad = int(np.flatnonzero(np.isnan(array).reshape(len(array), -1).any(axis=1))[0])
        raise EmsegError(f"{path}: probability map contains NaN (first in slice {bad + 1})")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0 or hi > 1:
        raise EmsegError(f"{path}: float probability values must lie in [0, 1], found [{lo:g}, {hi:g}]")
    return array.astype(np.float32)


def format_report(result: ScoreResult, labels_path: Path, proba_path: Path, shape: tuple[int, ...]) -> str:
    """The report `emseg score` prints: the scores at every threshold, then the best ones."""
    lines = [
        f"{labels_path} vs {proba_path}: {shape[0]} slice(s) of {shape[1]}x{shape[2]}",
        "",
        f"{'threshold':>9}  {'V_rand':>9}  {'V_info':>9}  {'pixel err (1-F)':>15}",
    ]
    pt = result.per_threshold
    for i, t in enumerate(result.thresholds):
        lines.append(f"{t:9.3f}  {pt['v_rand'][i]:9.6f}  {pt['v_info'][i]:9.6f}  {pt['pixel_error'][i]:15.6f}")
    lines += [
        "",
        f"V_rand (best)           {result.v_rand:.6f}  at threshold {result.v_rand_threshold:.3f}",
        f"V_info (best)           {result.v_info:.6f}  at threshold {result.v_info_threshold:.3f}",
        f"pixel error (1 - F)     {result.pixel_error:.6f}  at threshold {result.pixel_error_threshold:.3f}",
        f"pixel error (plain)     {result.pixel_error_plain:.6f}  at threshold {result.v_rand_threshold:.3f}",
        f"membrane Dice / IoU     {result.dice:.6f} / {result.iou:.6f}  at threshold {result.v_rand_threshold:.3f}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run `emseg score` with its parsed arguments; the exit status."""
    labels = read_stack(args.labels)
    proba = read_stack(args.proba)
    if labels.shape[0] != proba.shape[0]:
        raise EmsegError(
            f"slice count mismatch: {args.labels} has {labels.shape[0]} slice(s), {args.proba} has {proba.shape[0]}"
        )
    if labels.shape[1:] != proba.shape[1:]:
        raise EmsegError(
            f"slice size mismatch: {args.labels} is {labels.shape[1]}x{labels.shape[2]}, "
            f"{args.proba} is {proba.shape[1]}x{proba.shape[2]}"
        )
    labels = _labels_from(labels, args.labels)
    warnings = label_warnings(labels, args.labels)
    proba = _unit_map_from(proba, args.proba)
    if args.membrane:
        proba = membrane_to_cell(proba)
    result = score(labels, proba, labels_name=str(args.labels), proba_name=str(args.proba))
    for warning in warnings:
        print(f"emseg score: warning: {warning}", file=sys.stderr)
    print(format_report(result, args.labels, args.proba, labels.shape))
    if args.json is not None:
        data = result.to_dict()
        data["labels"] = str(args.labels)
        data["proba"] = str(args.proba)
        data["membrane"] = bool(args.membrane)
        write_json(args.json, data)
        print(f"wrote {args.json}")
    return 0
