"""Time ``emseg.evaluation.metrics.score`` on the real ISBI-2012 training labels.

The proposal is a seeded, blurred and noised version of the labels (cell probability),
scored at the 11 ISBI thresholds.  Prints the numba compile / cache-load time of the
first call separately, then the median of a few timed repeats, for the 30 slices of
512x512 and for one 2048x2048 slice (a 4x4 mosaic of label slices).

    python benchmarks/bench_score.py            # full run
    python benchmarks/bench_score.py --quick    # 5 slices, one repeat
    python benchmarks/bench_score.py --json out.json   # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from run_all import command_line, write_result
from scipy import ndimage

if TYPE_CHECKING:  # not imported at run time: the scorer's import is timed
    from emseg.evaluation.metrics import ScoreResult

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = REPO_ROOT.parent / "shared" / "isbi2012" / "train-labels.tif"


def make_proposal(labels: np.ndarray, seed: int = 0, sigma: float = 1.5, noise: float = 0.15) -> np.ndarray:
    """A plausible cell-probability map: blurred labels plus Gaussian noise, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    cell = (labels > 0).astype(np.float32)
    blurred = np.stack([ndimage.gaussian_filter(s, sigma) for s in cell])
    noisy = blurred + rng.normal(0.0, noise, size=blurred.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def timed_score(score, labels: np.ndarray, proba: np.ndarray, workers: int | None, repeats: int):  # noqa: ANN001
    """The score of ``proba`` and the wall time of each of ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = score(labels, proba, workers=workers)
        times.append(time.perf_counter() - t0)
    return result, times


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="ISBI train-labels.tif")
    parser.add_argument("--quick", action="store_true", help="5 slices, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, 1 with --quick)")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser


def load_stack(path: Path, quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """The labels (the first 5 slices with --quick) and a proposal made from them."""
    labels = tifffile.imread(path)
    if quick:
        labels = labels[:5]
    return labels, make_proposal(labels)


def time_first_call(labels: np.ndarray, proba: np.ndarray) -> tuple[ModuleType, float, float]:
    """The scorer's module, the seconds of its import and of a first, tiny call (numba compiles or loads its on-disk cache)."""
    t0 = time.perf_counter()
    import emseg.evaluation.metrics as metrics  # noqa: PLC0415  (import time reported)

    t_import = time.perf_counter() - t0
    # first call: numba compiles (or loads its on-disk cache) -- reported separately
    t0 = time.perf_counter()
    metrics.score(labels[:1, :64, :64], proba[:1, :64, :64], workers=1)
    return metrics, t_import, time.perf_counter() - t0


def print_stack(metrics: ModuleType, labels: np.ndarray, result: ScoreResult, times: list[float], t_import: float, t_first: float) -> None:
    """The import and first-call times, the stack's timing and its scores."""
    n, h, w = labels.shape
    print(f"import: {t_import:.2f} s; numba compile/cache load (first call): {t_first:.2f} s")
    print(
        f"stack {n}x{h}x{w}, {len(metrics.ISBI_THRESHOLDS)} thresholds: "
        f"median {statistics.median(times):.3f} s over {len(times)} run(s) {[round(t, 3) for t in times]}"
    )
    print(
        f"  V_rand {result.v_rand:.6f} (t={result.v_rand_threshold:.3f})  V_info {result.v_info:.6f}  "
        f"pixel error {result.pixel_error:.6f}"
    )


def big_slice(labels: np.ndarray) -> np.ndarray:
    """One 2048x2048 slice: a 4x4 mosaic of the label slices (cycled), as a stack of one."""
    n = labels.shape[0]
    tiles = [labels[i % n] for i in range(16)]
    return np.block([[tiles[r * 4 + c] for c in range(4)] for r in range(4)])[np.newaxis]


def measure_big_slice(metrics: ModuleType, labels: np.ndarray, workers: int | None, repeats: int) -> tuple[np.ndarray, ScoreResult, list[float]]:
    """The mosaic slice, its score and the times of ``repeats`` calls; printed."""
    big_labels = big_slice(labels)
    big_proba = make_proposal(big_labels, seed=1)
    big_result, times_big = timed_score(metrics.score, big_labels, big_proba, workers, repeats)
    print(
        f"one {big_labels.shape[1]}x{big_labels.shape[2]} slice, {len(metrics.ISBI_THRESHOLDS)} thresholds: "
        f"median {statistics.median(times_big):.3f} s over {repeats} run(s)"
    )
    print(f"  V_rand {big_result.v_rand:.6f}  V_info {big_result.v_info:.6f}  pixel error {big_result.pixel_error:.6f}")
    return big_labels, big_result, times_big


def timing(shape: str, times: list[float], result: ScoreResult) -> dict:
    """One input's entry in the JSON result: its shape, every time, their median and its V_rand."""
    return {"shape": shape, "seconds": times, "median_s": statistics.median(times), "v_rand": result.v_rand}


def assemble_payload(args: argparse.Namespace, argv: list[str] | None, repeats: int, thresholds: int, t_import: float, t_first: float,
                     stack: dict, big: dict) -> dict:
    """The JSON result: the command, the machine (cores, load), the configuration, the times and the figures."""
    return {
        "benchmark": "score",
        "command": command_line("bench_score.py", argv),
        "machine": {"cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]},
        "config": {"quick": args.quick, "repeats": repeats, "workers": args.workers, "thresholds": thresholds},
        "import_s": t_import,
        "first_call_s": t_first,
        "stack": stack,
        "big_slice": big,
        "figures": {
            f"score: stack {stack['shape']}": {"value": stack["median_s"], "unit": "s"},
            f"score: one {big['shape']} slice": {"value": big["median_s"], "unit": "s"},
            "score: numba compile/cache load": {"value": t_first, "unit": "s"},
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Time the scorer on the stack and on one big slice; printed, and written as JSON with ``--json``."""
    args = build_parser().parse_args(argv)
    if not args.labels.is_file():
        print(f"bench_score: {args.labels}: file not found", file=sys.stderr)
        return 2
    repeats = args.repeats or (1 if args.quick else 3)
    labels, proba = load_stack(args.labels, args.quick)
    metrics, t_import, t_first = time_first_call(labels, proba)
    result, times = timed_score(metrics.score, labels, proba, args.workers, repeats)
    print_stack(metrics, labels, result, times, t_import, t_first)
    big_labels, big_result, times_big = measure_big_slice(metrics, labels, args.workers, repeats)
    if args.json:
        stack = timing("x".join(map(str, labels.shape)), times, result)
        big = timing(f"{big_labels.shape[1]}x{big_labels.shape[2]}", times_big, big_result)
        write_result(args.json, assemble_payload(args, argv, repeats, len(metrics.ISBI_THRESHOLDS), t_import, t_first, stack, big))
    return 0


if __name__ == "__main__":
    sys.exit(main())
