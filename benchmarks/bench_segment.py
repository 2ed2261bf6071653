"""Wall time per slice of each segmentation method (emseg.segmentation.methods) on 512x512 ISBI slices.

The maps segmented are made from the ISBI labels of slices 25-29 (``--labels``): the
membrane as a Gaussian-blurred mask with noise (what a network's map looks like, to the
methods' timing), and affinities derived from the labels with noise for ``mws``. Time
depends on the slice's size and its number of cells, not on whose map it is. Each method
runs with its default settings, ``--repeats`` times per slice; the median per slice is
reported, with the CPU.

    python benchmarks/bench_segment.py
    python benchmarks/bench_segment.py --quick      # one slice, one repeat
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from run_all import command_line, write_result
from scipy import ndimage

from emseg.io.images import read_tiff
from emseg.io.synthetic import synthetic_stack
from emseg.networks.affinities import DEFAULT_OFFSETS, affinity_targets
from emseg.networks.prediction import Prediction
from emseg.runtime.machine import machine_info, machine_line
from emseg.segmentation.methods import METHODS, segment

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABELS = REPO_ROOT.parent / "shared" / "isbi2012" / "train-labels.tif"


def predictions(labels: np.ndarray, seed: int = 0) -> list[Prediction]:
    """A network-like prediction of each label slice: a blurred, noised membrane map and noised affinities."""
    rng = np.random.default_rng(seed)
    out = []
    for label in labels:
        membrane = ndimage.gaussian_filter((label == 0).astype(np.float32), 1.5)
        membrane = np.clip(membrane / membrane.max() + rng.normal(0, 0.05, membrane.shape), 0, 1).astype(np.float32)
        affinities, _ = affinity_targets(label, DEFAULT_OFFSETS)
        affinities = np.clip(affinities * 0.9 + 0.05 + rng.normal(0, 0.05, affinities.shape), 0, 1).astype(np.float32)
        out.append(Prediction(membrane, affinities, DEFAULT_OFFSETS))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEFAULT_LABELS, help="ISBI train-labels.tif (synthetic slices when absent)")
    parser.add_argument("--quick", action="store_true", help="one slice, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def load_labels(path: Path, quick: bool) -> tuple[np.ndarray, str]:
    """ISBI label slices 25-29 (synthetic slices where the file is absent; only the first with --quick), and where they came from."""
    if path.is_file():
        labels, source = read_tiff(path)[25:30], f"ISBI slices 25-29 ({path})"
    else:
        labels, source = synthetic_stack(5, 512, 512, cells=40)[1], "synthetic 512x512 slices"
    if quick:
        labels = labels[:1]
    return labels, source


def time_method(method: str, maps: list[Prediction], repeats: int) -> dict:
    """Median, min and max over the slices of each slice's median seconds, after one untimed call; printed."""
    segment(method, maps[0])  # first call: imports and compiled code loaded
    times = []
    for prediction in maps:
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            segment(method, prediction)
            runs.append(time.perf_counter() - start)
        times.append(statistics.median(runs))
    result = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    print(f"  {method:<11} {result['median_s']:.3f} s/slice (min {min(times):.3f}, max {max(times):.3f})")
    return result


def assemble_payload(args: argparse.Namespace, argv: list[str] | None, info: dict, labels: np.ndarray, repeats: int, source: str,
                     results: dict) -> dict:
    """The JSON result: the command, the machine, the configuration, each method's times and the figures."""
    return {
        "benchmark": "segment",
        "command": command_line("bench_segment.py", argv),
        "machine": info,
        "config": {"slices": len(labels), "repeats": repeats, "source": source, "quick": args.quick},
        "results": results,
        "figures": {f"segment: {m}": {"value": r["median_s"], "min": r["min_s"], "max": r["max_s"], "unit": "s/slice"} for m, r in results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Time every method on every slice; printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    labels, source = load_labels(args.labels, args.quick)
    repeats = 1 if args.quick else args.repeats
    info = machine_info()
    print(f"segmentation per slice: {len(labels)} slice(s) of {labels.shape[1]}x{labels.shape[2]}, {source}")
    print(f"machine: {machine_line(info)}")
    maps = predictions(labels)
    results = {method: time_method(method, maps, repeats) for method in METHODS}
    if args.json:
        write_result(args.json, assemble_payload(args, argv, info, labels, repeats, source, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
