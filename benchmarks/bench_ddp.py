"""Training throughput of the real train loop on 1 and N DDP processes under torchrun.

Each run is ``emseg.training.run.train`` (the train stage's own call) under
``torch.distributed.run --standalone --nproc-per-node N``, the way ``train.processes: N``
launches it: the same global batch ``--batch-size`` split over the ranks, gloo on CPU
(each rank computing on its share of the cores, as the stage gives it), NCCL with one
GPU per rank on CUDA. The rate is read from the run's dvclive log (``train/patches_per_s``,
the whole job's, and ``train/rank<r>/patches_per_s``); the first logging window is
warm-up and skipped, the median of the others is reported. Validation runs once, after
the last step (``val_every`` = steps), on a 256-px crop.

On a CPU the point is correctness and overhead: N processes share the same cores, so the
job's rate at best equals one process's; the *scaling efficiency* printed is
rate(N) / (N x rate(1)) on CUDA (N GPUs) and rate(N) / rate(1) on CPU (same cores).

    python benchmarks/bench_ddp.py                      # 1 and 2 processes, unet, patch 256, batch 4, 100 steps
    python benchmarks/bench_ddp.py --processes 1 2 4 8  # on a node with 8 GPUs
    python benchmarks/bench_ddp.py --quick              # patch 64, 40 steps, < 1 min
    python benchmarks/bench_ddp.py --json out.json

Data: the ISBI training slices at ``../shared/isbi2012/``; synthetic EM-like slices when absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from run_all import command_line, write_result  # noqa: E402

from emseg.runtime.machine import machine_info, machine_line  # noqa: E402

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"

WORKER = """
import json, sys
from pathlib import Path
import numpy as np
from emseg.config.params import ModelParams, TrainParams
from emseg.training.run import train
from emseg.training.sampler import TrainingData

settings = json.loads(sys.argv[1])
folder = Path(settings["data"])
if (folder / "train-volume.tif").is_file():
    import tifffile
    images, labels = tifffile.imread(folder / "train-volume.tif"), tifffile.imread(folder / "train-labels.tif")
else:
    from emseg.io.synthetic import synthetic_stack
    images, labels = synthetic_stack(23, 512, 512, cells=40)
crop = slice(0, 256)
data = TrainingData(list(images[:22]), list(labels[:22]), [images[22][crop, crop]], [labels[22][crop, crop]])
params = TrainParams(steps=settings["steps"], batch_size=settings["batch"], patch_size=settings["patch"], log_every=settings["log_every"],
                     checkpoint_every=settings["log_every"], val_every=settings["steps"], processes=settings["processes"], device=settings["device"])
out = Path(settings["out"])
result = train(data, ModelParams(arch=settings["arch"]), params, 42, out / "model.pt", out / "live")
if result["rank"] == 0:
    print(json.dumps(result))
"""


def _rates(tsv: Path) -> list[float]:
    """The rates of a dvclive ``.tsv`` log, the first (warm-up) window left out."""
    rows = tsv.read_text().splitlines()[1:]
    return [float(row.split("\t")[1]) for row in rows][1:]  # the first window is warm-up


def run(processes: int, settings: dict, workdir: Path) -> dict:
    """One torchrun job of ``processes`` workers; its job and per-rank patches/s."""
    out = workdir / f"p{processes}"
    script = workdir / "worker.py"
    script.write_text(WORKER)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        str(script), json.dumps({**settings, "processes": processes, "out": str(out)}),
    ]
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // processes)), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"bench_ddp: {processes} processes failed:\n{done.stderr[-3000:]}")
    metrics = out / "live" / "plots" / "metrics" / "train"
    job = _rates(metrics / "patches_per_s.tsv")
    ranks = [statistics.median(_rates(metrics / f"rank{r}" / "patches_per_s.tsv")) for r in range(processes)] if processes > 1 else []
    return {
        "processes": processes,
        "threads_per_process": int(env["OMP_NUM_THREADS"]),
        "patches_per_s": statistics.median(job),
        "patches_per_s_min": min(job),
        "patches_per_s_max": max(job),
        "rank_patches_per_s": ranks,
        "windows": len(job),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; every process count must split the global batch evenly."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="patch 64, 40 steps, log every 8")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--steps", type=int, default=None, help="default 100 (40 with --quick)")
    parser.add_argument("--log-every", type=int, default=None, help="default 10 (8 with --quick)")
    parser.add_argument("--batch-size", type=int, default=4, help="the global batch (split over the processes)")
    parser.add_argument("--patch-size", type=int, default=None, help="default 256 (64 with --quick)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    for processes in args.processes:
        if processes < 1 or args.batch_size % processes:
            parser.error(f"--processes {processes}: the batch of {args.batch_size} must split evenly over it")
    return args


def worker_settings(args: argparse.Namespace) -> dict:
    """What every worker trains with (``--quick``'s lengths where unset), as the JSON its command line carries."""
    return {
        "arch": args.arch,
        "steps": args.steps or (40 if args.quick else 100),
        "log_every": args.log_every or (8 if args.quick else 10),
        "batch": args.batch_size,
        "patch": args.patch_size or (64 if args.quick else 256),
        "device": args.device,
        "data": str(args.data),
    }


def measure_jobs(counts: list[int], settings: dict) -> list[dict]:
    """One torchrun job per process count, in a temporary folder; each job's rates."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for processes in counts:
            rows.append(run(processes, settings, Path(tmp)))
    return rows


def report_scaling(rows: list[dict], cuda: bool) -> None:
    """Each job's scaling efficiency against one process (where one was run), into its row; every row printed."""
    base = next((row["patches_per_s"] for row in rows if row["processes"] == 1), None)
    for row in rows:
        if base:
            row["scaling_efficiency"] = row["patches_per_s"] / (base * (row["processes"] if cuda else 1))
        ranks = ", ".join(f"{rate:.1f}" for rate in row["rank_patches_per_s"])
        print(
            f"{row['processes']} process(es) x {row['threads_per_process']} thread(s): {row['patches_per_s']:.1f} patches/s "
            f"(windows {row['patches_per_s_min']:.1f}-{row['patches_per_s_max']:.1f})"
            + (f", per rank {ranks}" if ranks else "")
            + (f", efficiency {row['scaling_efficiency']:.2f}" if base else "")
        )


def main(argv: list[str] | None = None) -> int:
    """Train under torchrun on each process count; the rates and efficiencies printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    settings = worker_settings(args)
    import torch

    cuda = args.device != "cpu" and torch.cuda.is_available()
    info = machine_info()
    print(f"machine: {machine_line(info)}; {'CUDA' if cuda else 'CPU'}; {json.dumps(settings)}")
    rows = measure_jobs(args.processes, settings)
    report_scaling(rows, cuda)
    if args.json:
        write_result(args.json, {"command": command_line("bench_ddp.py", argv), "machine": info, "cuda": cuda, "settings": settings, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
