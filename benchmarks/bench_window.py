"""The sliding window's layout: how much inference work the overlap and the window side cost, and what they change.

With the default window (the training patch, 256 px) and 50% overlap, every pixel of a
large slice is computed about 4 times. A smaller overlap or a larger window (the network
is fully convolutional: ``emseg predict --tile``) recomputes less. This script measures,
for each layout, on the real ISBI data with a trained model (default: the bundled one):

- the work: tiles, FLOPs counted (``emseg.evaluation.flops``), seconds, GFLOP/s and the fraction of
  the machine's fp32 sgemm peak measured in the same run;
- what changes against the default layout (256 px, overlap 0.5): the largest and the mean
  absolute difference of the membrane probability, and the pixels whose membrane mask
  flips at the model's validated threshold;
- the quality on the labelled test slices 25-29: V_rand at the validated threshold and the
  challenge's best-of-11 V_rand (no TTA unless ``--tta``).

Inputs: slices 25-29 of train-volume.tif (512^2, with their labels) and one 2048^2 mosaic of
test-volume.tif's slices 0-15 (4 x 4), standing in for a large slice.

    python benchmarks/bench_window.py [--model M] [--data ../shared/isbi2012] [--threads N] [--tta] [--json OUT]
    python benchmarks/bench_window.py --quick   # slice 25 only, two layouts, no mosaic (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from emseg.config.layout import CELL_VALUE
from emseg.evaluation.flops import forward_flops
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.inference.sliding_window import count_tiles
from emseg.networks.model_file import load_model
from emseg.runtime.machine import machine_info, machine_line, sgemm_peak_gflops
from emseg.segmentation.thinning import membrane_to_cell
from emseg.sharing.bundled import BUNDLED_MODEL

REPO = Path(__file__).resolve().parents[1]
#: (window side, overlap); the first is today's default and the reference of every difference
LAYOUTS = ((256, 0.5), (256, 0.25), (512, 0.5), (512, 0.25), (1024, 0.25))
QUICK_LAYOUTS = ((256, 0.5), (512, 0.25))
TEST_SLICES = range(25, 30)


def _inputs(data: Path, quick: bool) -> dict[str, tuple[list[np.ndarray], np.ndarray | None]]:
    """Named inputs: slices and their labels (None for the unlabelled mosaic)."""
    chosen = list(TEST_SLICES)[:1] if quick else list(TEST_SLICES)
    images = tifffile.imread(data / "train-volume.tif")[chosen]
    labels = (tifffile.imread(data / "train-labels.tif")[chosen] == CELL_VALUE).astype(np.uint8)
    inputs = {f"{chosen[0]}-{chosen[-1]} 512^2": (list(images), labels)}
    if not quick:
        unlabelled = tifffile.imread(data / "test-volume.tif")[:16]
        inputs["2048^2"] = ([np.block([[unlabelled[4 * row + col] for col in range(4)] for row in range(4)])], None)
    return inputs


def _run(predictor: Predictor, slices: list[np.ndarray]) -> tuple[np.ndarray, float]:
    predictor.membrane(slices[0][:256, :256])  # warm-up: first-call allocations and kernel choice are not throughput
    start = time.perf_counter()
    maps = np.stack([predictor.membrane(image) for image in slices])
    return maps, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "isbi2012")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--tta", action="store_true", help="8x TTA in every layout")
    parser.add_argument("--quick", action="store_true", help="slice 25 only, two layouts, no mosaic")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    layouts = QUICK_LAYOUTS if args.quick else LAYOUTS
    if args.threads:
        torch.set_num_threads(args.threads)
    model, config = load_model(args.model)
    threshold = config.threshold()[0]
    inputs = _inputs(args.data, args.quick)
    info, peak = machine_info(), sgemm_peak_gflops()
    out_channels = config.expected_out_channels()
    print(f"sliding-window layouts: model {args.model} ({config.arch}, trained on {config.patch_size}^2), TTA {args.tta}, threshold {threshold:g}")
    print(f"machine: {machine_line(info)}; torch threads {torch.get_num_threads()}; fp32 sgemm peak now {peak:.1f} GFLOP/s")
    print(f"{'input':<12} {'window':>6} {'overlap':>7} {'tiles':>6} {'GFLOP':>8} {'s':>7} {'GFLOP/s':>8} {'%peak':>6} "
          f"{'max |d|':>8} {'mean |d|':>9} {'flipped':>8} {'V_rand val-thr':>14} {'V_rand best':>11}")
    results, reference = [], {}
    for name, (slices, labels) in inputs.items():
        for window, overlap in layouts:
            predictor = Predictor(model, config, overlap=overlap, tta=args.tta, tile=window)
            maps, seconds = _run(predictor, slices)
            variants = 8 if args.tta else 1
            tiles = sum(count_tiles(image.shape, window, overlap) for image in slices)
            flops = tiles * variants * forward_flops(config.arch, config.kwargs, out_channels, min(window, *slices[0].shape))
            row = {"input": name, "window": window, "overlap": overlap, "tiles": tiles, "gflop": flops / 1e9, "seconds": seconds,
                   "gflop_per_s": flops / 1e9 / seconds, "fraction_of_peak": flops / 1e9 / seconds / peak}
            reference.setdefault(name, maps)
            diff = np.abs(maps - reference[name])
            flipped = (maps > 1 - threshold) != (reference[name] > 1 - threshold)  # membrane where cell probability < threshold
            row.update({"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "flipped_fraction": float(flipped.mean())})
            if labels is not None:
                cell = membrane_to_cell(maps)
                row["v_rand_at_val_threshold"] = score(labels, cell, [threshold]).v_rand
                row["v_rand_challenge"] = score(labels, cell).v_rand
            results.append(row)
            print(f"{name:<12} {window:>6} {overlap:>7.2f} {tiles:>6} {row['gflop']:>8.1f} {seconds:>7.2f} {row['gflop_per_s']:>8.1f} "
                  f"{row['fraction_of_peak']:>6.0%} {row['max_abs_diff']:>8.4f} {row['mean_abs_diff']:>9.5f} {row['flipped_fraction']:>8.2%} "
                  f"{row.get('v_rand_at_val_threshold', float('nan')):>14.4f} {row.get('v_rand_challenge', float('nan')):>11.4f}", flush=True)
    print(f"differences against window {LAYOUTS[0][0]}, overlap {LAYOUTS[0][1]} (today's default); load average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        payload = {"benchmark": "window", "command": shlex.join(["python", "benchmarks/bench_window.py", *(sys.argv[1:] if argv is None else argv)]),
                   "machine": info, "sgemm_peak_gflops": peak, "model": str(args.model), "tta": args.tta, "results": results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
