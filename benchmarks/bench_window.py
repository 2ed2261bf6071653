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
import os
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from run_all import command_line, write_result

from emseg.config.layout import CELL_VALUE
from emseg.evaluation.flops import forward_flops
from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.inference.sliding_window import count_tiles
from emseg.networks.model_file import ModelConfig, load_model
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
    """The predictor's membrane maps of the slices and the seconds they took, after a small warm-up call."""
    predictor.membrane(slices[0][:256, :256])  # warm-up: first-call allocations and kernel choice are not throughput
    start = time.perf_counter()
    maps = np.stack([predictor.membrane(image) for image in slices])
    return maps, time.perf_counter() - start


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "isbi2012")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--tta", action="store_true", help="8x TTA in every layout")
    parser.add_argument("--quick", action="store_true", help="slice 25 only, two layouts, no mosaic")
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def print_header(args: argparse.Namespace, config: ModelConfig, threshold: float, info: dict, peak: float) -> None:
    """What is measured, on what, and the table's column titles."""
    print(f"sliding-window layouts: model {args.model} ({config.arch}, trained on {config.patch_size}^2), TTA {args.tta}, threshold {threshold:g}")
    print(f"machine: {machine_line(info)}; torch threads {torch.get_num_threads()}; fp32 sgemm peak now {peak:.1f} GFLOP/s")
    print(f"{'input':<12} {'window':>6} {'overlap':>7} {'tiles':>6} {'GFLOP':>8} {'s':>7} {'GFLOP/s':>8} {'%peak':>6} "
          f"{'max |d|':>8} {'mean |d|':>9} {'flipped':>8} {'V_rand val-thr':>14} {'V_rand best':>11}")


def measure_work(predictor: Predictor, config: ModelConfig, slices: list[np.ndarray], window: int, overlap: float, tta: bool,
                 peak: float) -> tuple[dict, np.ndarray]:
    """One layout's run on the slices: tiles, GFLOP counted, seconds, GFLOP/s and share of the peak; and the maps it made."""
    maps, seconds = _run(predictor, slices)
    variants = 8 if tta else 1
    tiles = sum(count_tiles(image.shape, window, overlap) for image in slices)
    flops = tiles * variants * forward_flops(config.arch, config.kwargs, config.expected_out_channels(), min(window, *slices[0].shape))
    work = {"tiles": tiles, "gflop": flops / 1e9, "seconds": seconds, "gflop_per_s": flops / 1e9 / seconds,
            "fraction_of_peak": flops / 1e9 / seconds / peak}
    return work, maps


def compare(maps: np.ndarray, reference: np.ndarray, threshold: float) -> dict:
    """The difference from the default layout's maps: largest and mean absolute, and the share of membrane pixels flipped."""
    diff = np.abs(maps - reference)
    flipped = (maps > 1 - threshold) != (reference > 1 - threshold)  # membrane where cell probability < threshold
    return {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()), "flipped_fraction": float(flipped.mean())}


def quality(maps: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """V_rand of the cells at the validated threshold and the challenge's best of 11."""
    cell = membrane_to_cell(maps)
    return {"v_rand_at_val_threshold": score(labels, cell, [threshold]).v_rand, "v_rand_challenge": score(labels, cell).v_rand}


def print_row(row: dict) -> None:
    """One layout's row of the table."""
    print(f"{row['input']:<12} {row['window']:>6} {row['overlap']:>7.2f} {row['tiles']:>6} {row['gflop']:>8.1f} {row['seconds']:>7.2f} "
          f"{row['gflop_per_s']:>8.1f} {row['fraction_of_peak']:>6.0%} {row['max_abs_diff']:>8.4f} {row['mean_abs_diff']:>9.5f} "
          f"{row['flipped_fraction']:>8.2%} {row.get('v_rand_at_val_threshold', float('nan')):>14.4f} "
          f"{row.get('v_rand_challenge', float('nan')):>11.4f}", flush=True)


def measure_layouts(inputs: dict[str, tuple[list[np.ndarray], np.ndarray | None]], layouts: tuple[tuple[int, float], ...],
                    model: torch.nn.Module, config: ModelConfig, tta: bool, threshold: float, peak: float) -> list[dict]:
    """Every input in every layout, each row printed as it comes; the first layout is the reference of the differences."""
    results, reference = [], {}
    for name, (slices, labels) in inputs.items():
        for window, overlap in layouts:
            predictor = Predictor(model, config, overlap=overlap, tta=tta, tile=window)
            work, maps = measure_work(predictor, config, slices, window, overlap, tta, peak)
            reference.setdefault(name, maps)
            row = {"input": name, "window": window, "overlap": overlap, **work, **compare(maps, reference[name], threshold)}
            if labels is not None:
                row.update(quality(maps, labels, threshold))
            results.append(row)
            print_row(row)
    return results


def main(argv: list[str] | None = None) -> int:
    """Every layout on every input; the table printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    layouts = QUICK_LAYOUTS if args.quick else LAYOUTS
    if args.threads:
        torch.set_num_threads(args.threads)
    model, config = load_model(args.model)
    threshold = config.threshold()[0]
    inputs = _inputs(args.data, args.quick)
    info, peak = machine_info(), sgemm_peak_gflops()
    print_header(args, config, threshold, info, peak)
    results = measure_layouts(inputs, layouts, model, config, args.tta, threshold, peak)
    print(f"differences against window {LAYOUTS[0][0]}, overlap {LAYOUTS[0][1]} (today's default); load average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        write_result(args.json, {"benchmark": "window", "command": command_line("bench_window.py", argv), "machine": info,
                                 "sgemm_peak_gflops": peak, "model": str(args.model), "tta": args.tta, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
