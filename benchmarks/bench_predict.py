"""Throughput and peak memory of ``predict_membrane`` (the shared inference path of ``emseg predict``).

For each slice size, a random uint8 slice is predicted by a registered network with its
default arguments (``--arch``, default ``unet``; random weights, patch 256, batch 4)
without and with 8x TTA, and compared with a bare forward pass of the network over the
same number of tiles (no normalisation, window extraction, Gaussian blending or
stitching).  Every measurement runs in a fresh subprocess, which reports its own peak
resident memory (``ru_maxrss``), so the numbers of one size are not inflated by an
earlier, bigger one.

A TTA run whose estimated time (from the plain run of the same size, x8) exceeds
``--tta-budget`` seconds is skipped and its estimate printed instead.  The bare forward
pass times at most ``--bare-batches`` batches and extrapolates to the full tile count
(tiles all have the same shape, so each batch costs the same).

    python benchmarks/bench_predict.py            # 512^2, 2048^2, 8192^2 (several minutes on CPU)
    python benchmarks/bench_predict.py --quick    # 256^2 only (one tile)
    python benchmarks/bench_predict.py --threads 1   # on a busy machine: see below
    python benchmarks/bench_predict.py --json out.json   # also write every measurement as JSON

On a machine whose cores are busy with something else (a training), torch's default of
one thread per core makes the threads wait on each other and timings swing by 10-50x;
``--threads 1`` gives stable numbers there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from run_all import command_line, rss_mib, write_result

if TYPE_CHECKING:
    import numpy as np
    import torch

PATCH = 256
BATCH = 4
VARIANTS = 8


def _model_and_image(arch: str, size: int, threads: int, device: str) -> tuple[torch.nn.Module, np.ndarray]:
    """The network with its default arguments and random (seeded) weights, and a random uint8 slice of ``size``^2."""
    import numpy as np
    import torch

    from emseg.networks.architectures import build_network

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_network(arch).eval().to(device)
    image = np.random.default_rng(0).integers(0, 256, size=(size, size), dtype=np.uint8)
    return model, image


def _tile_batches(size: int, patch: int, batch: int) -> tuple[int, int, list[int]]:
    """The tiles of a ``size``^2 slice, their side, and the batches ``sliding_window_inference`` makes of them: full ones and a remainder."""
    from emseg.inference.sliding_window import count_tiles

    tiles = count_tiles((size, size), patch, 0.5)
    batches = [batch] * (tiles // batch) + ([tiles % batch] if tiles % batch else [])
    return tiles, min(patch, size), batches


def _warm_up(model: torch.nn.Module, batches: list[int], roi: int, device: str) -> None:
    """One forward pass per batch shape: first-call allocations and kernel selection are not throughput."""
    import torch

    with torch.inference_mode():
        for n in sorted(set(batches)):
            model(torch.zeros(n, 1, roi, roi, device=device))


def _time_bare(model: torch.nn.Module, batches: list[int], roi: int, tiles: int, bare_batches: int, device: str) -> tuple[float, int]:
    """Seconds of the bare forward pass over all tiles, from the first ``bare_batches`` batches; and how many were timed."""
    import torch

    start = time.perf_counter()
    timed = batches[:bare_batches]
    inputs = {n: torch.randn(n, 1, roi, roi, device=device) for n in set(timed)}
    with torch.inference_mode():
        for n in timed:
            torch.sigmoid(model(inputs[n]))
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * tiles / sum(timed), len(timed)


def _time_predict(model: torch.nn.Module, image: np.ndarray, patch: int, tta: bool, batch: int, device: str) -> float:
    """Seconds of ``predict_membrane`` on the slice, with or without TTA."""
    import numpy as np

    from emseg.inference.sliding_window import predict_membrane

    start = time.perf_counter()
    proba = predict_membrane(model, image, patch, tta=tta, batch_size=batch, device=device)
    seconds = time.perf_counter() - start
    assert proba.shape == image.shape and proba.dtype == np.float32
    return seconds


def _counted_gflop(arch: str, roi: int, tiles: int, mode: str) -> float:
    """GFLOP of the run's forward passes, counted (``emseg.evaluation.flops``): every tile, 8 times with TTA."""
    from emseg.evaluation.flops import forward_flops
    from emseg.networks.architectures import resolve_kwargs

    return tiles * forward_flops(arch, resolve_kwargs(arch), 1, roi) * (VARIANTS if mode == "tta" else 1) / 1e9


def _child(size: int, mode: str, patch: int, batch: int, threads: int, bare_batches: int, device: str, arch: str) -> dict:
    """One measurement in this (fresh) process; returns the JSON-able result."""
    import torch

    model, image = _model_and_image(arch, size, threads, device)
    tiles, roi, batches = _tile_batches(size, patch, batch)
    _warm_up(model, batches, roi, device)
    rss_before = rss_mib()
    timed_batches = None
    if mode == "bare":
        seconds, timed_batches = _time_bare(model, batches, roi, tiles, bare_batches, device)
    else:
        seconds = _time_predict(model, image, patch, mode == "tta", batch, device)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes
    gflop = _counted_gflop(arch, roi, tiles, mode)
    return {
        "size": size,
        "mode": mode,
        "tiles": tiles,
        "gflop": gflop,
        "gflop_per_s": gflop / seconds,
        "seconds": seconds,
        "mpix_per_s": size * size / 1e6 / seconds,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_mib,
        "timed_batches": timed_batches,
        "threads": torch.get_num_threads(),
    }


def _spawn(size: int, mode: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh subprocess of this script (``--child SIZE:MODE``); its result."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"{size}:{mode}",
        "--patch",
        str(args.patch),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
        "--bare-batches",
        str(args.bare_batches),
        "--device",
        args.device,
        "--arch",
        args.arch,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench_predict: child {size}:{mode} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spread(values: list[float]) -> dict:
    """Median, min, max and every value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _summarise(runs: list[dict]) -> dict:
    """The run with the median time, with the spread of the rate over all runs and the
    largest peak memory of any of them."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    summary = dict(ordered[len(ordered) // 2])
    summary["mpix_per_s_spread"] = _spread([r["mpix_per_s"] for r in runs])
    summary["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
    return summary


def _row(r: dict, peak: float, note: str = "") -> str:
    """One run's row of the table."""
    return (
        f"{r['size']:>5}^2  {r['mode']:<5} {r['tiles']:>6} {r['seconds']:>9.1f} {r['mpix_per_s']:>9.4f} "
        f"{r['gflop_per_s']:>8.1f} {r['gflop_per_s'] / peak:>6.0%} {r['peak_rss_mib']:>9.0f} {r['peak_rss_mib'] - r['rss_before_mib']:>9.0f}  {note}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--child`` is the measuring subprocess's, hidden)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256^2 only (one tile)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="slice sizes (default 512 2048 8192)")
    parser.add_argument("--patch", type=int, default=PATCH)
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; use 1 on a machine shared with a training)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--arch", default="unet", help="registered network, default arguments (default unet)")
    parser.add_argument(
        "--tta-budget", type=float, default=None, help="skip a TTA run estimated to take longer (s; default 240, 20 with --quick)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs of each measurement; median and spread reported (default 3, 1 with --quick)")
    parser.add_argument("--bare-batches", type=int, default=40, help="bare forward: batches timed, then extrapolated")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def run_child(args: argparse.Namespace) -> int:
    """As the measuring subprocess: one measurement (``--child SIZE:MODE``), printed as one JSON line."""
    size, mode = args.child.split(":")
    result = _child(int(size), mode, args.patch, args.batch_size, args.threads, args.bare_batches, args.device, args.arch)
    print(json.dumps(result))
    return 0


def resolve_defaults(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[int]:
    """The slice sizes; ``--tta-budget`` and ``--repeats`` filled in (``--quick``'s where unset) and checked."""
    sizes = args.sizes or ([256] if args.quick else [512, 2048, 8192])
    if args.tta_budget is None:
        args.tta_budget = 20.0 if args.quick else 240.0
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return sizes


def describe_machine(threads: int) -> tuple[dict, float]:
    """Set torch's CPU threads (0: leave them); the machine's description and its fp32 sgemm peak now."""
    import torch

    from emseg.runtime.machine import machine_info, sgemm_peak_gflops

    if threads:
        torch.set_num_threads(threads)
    return machine_info(), sgemm_peak_gflops()


def print_header(args: argparse.Namespace, info: dict, peak: float) -> None:
    """What is measured, on what, and the table's column titles."""
    from emseg.runtime.machine import machine_line

    print(f"predict_membrane, default {args.arch}, random weights, patch {args.patch}, batch {args.batch_size}, device {args.device}")
    print(f"torch threads: {args.threads or 'default'}; machine: {machine_line(info)}; fp32 sgemm peak now {peak:.1f} GFLOP/s")
    print(f"{'size':>7}  {'mode':<5} {'tiles':>6} {'seconds':>9} {'MPix/s':>9} {'GFLOP/s':>8} {'%peak':>6} {'peak MiB':>9} {'+MiB':>9}  note")


def measure_size(size: int, args: argparse.Namespace) -> dict[str, list[dict]]:
    """Every repeat of one size's plain, TTA (if the first plain run x8 fits ``--tta-budget``) and bare runs."""
    # plain, TTA and bare runs alternate within each repeat, so that a noisy moment of a
    # shared machine hits all three rather than one of them
    runs: dict[str, list[dict]] = {"plain": [], "tta": [], "bare": []}
    for _ in range(args.repeats):
        runs["plain"].append(_spawn(size, "plain", args))
        estimate = runs["plain"][0]["seconds"] * VARIANTS
        if estimate <= args.tta_budget:
            runs["tta"].append(_spawn(size, "tta", args))
        runs["bare"].append(_spawn(size, "bare", args))
    return runs


def report_size(size: int, runs: dict[str, list[dict]], args: argparse.Namespace, peak: float) -> tuple[list[dict], list[dict], dict]:
    """One size's summaries (plain, TTA, bare), printed as rows; with the TTA run skipped, if so, and the plain/bare ratio."""
    plain, bare = _summarise(runs["plain"]), _summarise(runs["bare"])
    ratio = _spread([p["mpix_per_s"] / b["mpix_per_s"] for p, b in zip(runs["plain"], runs["bare"])])
    rows, skipped = [plain], []
    print(_row(plain, peak), flush=True)
    if runs["tta"]:
        tta = _summarise(runs["tta"])
        rows.append(tta)
        print(_row(tta, peak, f"x{plain['seconds'] / tta['seconds']:.2f} of plain speed"), flush=True)
    else:
        estimate = plain["seconds"] * VARIANTS
        skipped.append({"size": size, "mode": "tta", "estimated_s": estimate})
        print(f"{size:>5}^2  tta   skipped: estimated {estimate:.0f} s > --tta-budget {args.tta_budget:.0f} s", flush=True)
    rows.append(bare)
    extrapolated = bare["timed_batches"] < -(-bare["tiles"] // args.batch_size)
    note = f"plain path at {ratio['median']:.0%} of bare forward speed"
    if extrapolated:
        note += f"; timed {bare['timed_batches']} batches, extrapolated"
    print(_row(bare, peak, note), flush=True)
    return rows, skipped, ratio


def print_footer() -> None:
    """The load average at the end and what the memory columns mean."""
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("peak MiB = ru_maxrss of the measuring subprocess; +MiB = peak minus RSS after model and image were made")


def predict_figures(results: list[dict], ratios: dict[int, dict], peak: float) -> dict:
    """The figures ``run_all.py`` gathers: each run's MPix/s, GFLOP/s and peak RSS, and each size's plain/bare ratio."""
    figures = {}
    for r in results:
        rate = r["mpix_per_s_spread"]
        figures[f"predict: {r['size']}^2 {r['mode']}"] = {"value": rate["median"], "min": rate["min"], "max": rate["max"], "unit": "MPix/s"}
        figures[f"predict: {r['size']}^2 {r['mode']} GFLOP/s"] = {"value": r["gflop_per_s"], "unit": f"GFLOP/s ({r['gflop_per_s'] / peak:.0%} of sgemm peak)"}
        if r["mode"] != "bare":
            figures[f"predict: {r['size']}^2 {r['mode']} peak RSS"] = {"value": r["peak_rss_mib"], "unit": "MiB"}
    for size, ratio in ratios.items():
        figures[f"predict: {size}^2 plain/bare"] = {"value": ratio["median"], "min": ratio["min"], "max": ratio["max"], "unit": "x"}
    return figures


def assemble_payload(args: argparse.Namespace, argv: list[str] | None, info: dict, peak: float, results: list[dict],
                     skipped: list[dict], ratios: dict[int, dict]) -> dict:
    """The JSON result: the command, the machine, the configuration, every run's summary, the skipped runs and the figures."""
    return {
        "benchmark": "predict",
        "command": command_line("bench_predict.py", argv),
        "machine": info,
        "sgemm_peak_gflops": peak,
        "config": {"quick": args.quick, "patch": args.patch, "batch_size": args.batch_size, "threads": args.threads,
                   "device": args.device, "arch": args.arch, "repeats": args.repeats, "tta_budget": args.tta_budget, "bare_batches": args.bare_batches},
        "results": results,
        "skipped": skipped,
        "figures": predict_figures(results, ratios, peak),
    }


def main(argv: list[str] | None = None) -> int:
    """Each size's plain, TTA and bare runs, each in a fresh subprocess; the table printed, the JSON written with ``--json``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        return run_child(args)
    sizes = resolve_defaults(args, parser)
    info, peak = describe_machine(args.threads)
    print_header(args, info, peak)
    results, skipped, ratios = [], [], {}
    for size in sizes:
        rows, skip, ratios[size] = report_size(size, measure_size(size, args), args, peak)
        results += rows
        skipped += skip
    print_footer()
    if args.json:
        write_result(args.json, assemble_payload(args, argv, info, peak, results, skipped, ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
