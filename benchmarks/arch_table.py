"""The architecture comparison table: one row per finished `dvc exp` whose name has a prefix.

Run a sweep first, each experiment named ``<prefix><arch>``, with the same split, steps
and seed (see the README, "Comparing architectures"), e.g.

    for a in unet basic_unet attention_unet; do
        dvc exp run --queue -n cmp-$a -S model.arch=$a
    done
    dvc queue start -j 1

then

    python benchmarks/arch_table.py --prefix cmp- --markdown archs.md

For each experiment it reads, from ``dvc exp show --json -A``, the architecture, the test
metrics (``metrics/evaluate.json``) and the best validation V_rand (``dvclive``); from the
experiment's own commit it reads ``dvclive/plots/metrics/train/patches_per_s.tsv`` and
sums the time of the logged training windows (steps only: validation is not in it).
Measured here, now, one subprocess per arch (random weights: speed does not depend on
them): inference speed, ``bench_predict.py --arch A`` on a 512x512 slice without TTA; and
the seconds per training step of the network alone (forward, backward, Adam; the
experiment's batch and patch size; median of 5 steps after 2 warm-up steps), which,
unlike the experiment's own log, is not skewed by whatever else ran beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from emseg.evaluation.experiments import finished_experiments, training_seconds

REPO_ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    ("arch", "architecture"),
    ("parameters", "parameters"),
    ("train_minutes", "training steps, min"),
    ("patches_per_s", "train patches/s"),
    ("step_seconds", "s/step alone"),
    ("mpix_per_s", "inference MPix/s (512^2, no TTA)"),
    ("best_val_v_rand", "val V_rand (best)"),
    ("v_rand", "test V_rand"),
    ("v_info", "test V_info"),
    ("pixel_error", "test pixel error"),
)


def _run(args: list[str]) -> str:
    """Run a command at the repository root; its output (exit with its last error line where it fails)."""
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"arch_table: {shlex.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def inference_mpix_per_s(arch: str, threads: int) -> float:
    """MPix/s of the network's plain prediction of a 512x512 slice, measured by ``bench_predict.py --arch``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "predict.json"
        command = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_predict.py"), "--arch", arch, "--sizes", "512",
                   "--tta-budget", "0", "--json", str(out)]
        if threads:
            command += ["--threads", str(threads)]
        _run(command)
        results = json.loads(out.read_text())["results"]
    return next(r["mpix_per_s"] for r in results if r["mode"] == "plain")


def step_seconds(arch: str, kwargs: dict, batch: int, patch: int, threads: int) -> float:
    """Median seconds of one training step of the bare network, in a fresh subprocess."""
    command = [sys.executable, __file__, "--child-step", json.dumps([arch, kwargs, batch, patch, threads])]
    return float(_run(command).strip().splitlines()[-1])


def _child_step(arch: str, kwargs: dict, batch: int, patch: int, threads: int) -> float:
    """Median seconds of the trainer's own ``train_step`` (sampling, forward, backward, Adam, EMA) on synthetic slices."""
    import statistics
    import time

    import torch

    from emseg.config.params import ModelParams, TrainParams
    from emseg.io.synthetic import synthetic_stack
    from emseg.training.build import build_trainer
    from emseg.training.sampler import TrainingData

    if threads:
        torch.set_num_threads(threads)
    images, labels = synthetic_stack(3, max(patch, 64), max(patch, 64))
    data = TrainingData(list(images[:2]), list(labels[:2]), [images[2]], [labels[2]])
    params = TrainParams(steps=7, batch_size=batch, patch_size=patch, device="cpu")
    trainer = build_trainer(data, ModelParams(arch=arch, **{arch: kwargs}), params, 0, Path(tempfile.mkdtemp()) / "model.pt")
    times = []
    for step in range(7):
        start = time.perf_counter()
        float(trainer.train_step(step).detach())
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def row_for(name: str, found: dict, measure_speed: bool, threads: int) -> dict:
    """The table row of one experiment: its arch, size, training time and rate, speeds measured now, and its scores."""
    data = found["data"]
    params = data["params"]["params.yaml"]["data"]
    arch = params["model"]["arch"]
    metrics = data["metrics"]["metrics/evaluate.json"]["data"]
    live = data["metrics"].get("dvclive/metrics.json", {}).get("data", {})
    tsv = _run(["git", "show", f"{found['rev']}:dvclive/plots/metrics/train/patches_per_s.tsv"])
    seconds, rate = training_seconds(tsv, int(params["train"]["batch_size"]))
    from emseg.networks.architectures import build_network, count_parameters

    kwargs = params["model"].get(arch) or {}
    batch, patch = int(params["train"]["batch_size"]), int(params["train"]["patch_size"])
    return {
        "experiment": name,
        "arch": arch,
        "steps": params["train"]["steps"],
        "threads": params["train"].get("threads", 0),
        "parameters": count_parameters(build_network(arch, kwargs)),
        "train_minutes": seconds / 60,
        "patches_per_s": rate,
        "step_seconds": step_seconds(arch, kwargs, batch, patch, threads) if measure_speed else None,
        "mpix_per_s": inference_mpix_per_s(arch, threads) if measure_speed else None,
        "best_val_v_rand": live.get("best_val/v_rand"),
        "v_rand": metrics["v_rand"],
        "v_info": metrics["v_info"],
        "pixel_error": metrics["pixel_error"],
    }


def _cell(key: str, value) -> str:
    """One value as the table shows it ("-" where not measured)."""
    if value is None:
        return "-"
    if key == "parameters":
        return f"{value / 1e6:.2f} M"
    if key == "step_seconds":
        return f"{value:.3f}"
    if key in ("train_minutes", "patches_per_s"):
        return f"{value:.1f}"
    if key == "mpix_per_s":
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, best test V_rand first."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in sorted(rows, key=lambda r: -r["v_rand"]):
        lines.append("| " + " | ".join(_cell(key, row[key]) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--child-step`` is the measuring subprocess's, hidden)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", help="experiment name prefix, e.g. cmp- (required)")
    parser.add_argument("--no-speed", action="store_true", help="skip the training-step and inference speed measurements")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the speed measurements (0 = default)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--child-step", help=argparse.SUPPRESS)
    return parser


def gather_rows(prefix: str, measure_speed: bool, threads: int) -> list[dict]:
    """One row per finished experiment named ``<prefix>...``, in name order."""
    found = finished_experiments(json.loads(_run(["dvc", "exp", "show", "--json", "-A"])), prefix)
    if not found:
        raise SystemExit(f"arch_table: no finished experiment named {prefix}*")
    return [row_for(name, found[name], measure_speed, threads) for name in sorted(found)]


def main(argv: list[str] | None = None) -> int:
    """The table of the experiments; printed, and written with ``--json`` (the rows) and ``--markdown``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child_step:
        sys.path.insert(0, str(REPO_ROOT))
        print(_child_step(*json.loads(args.child_step)))
        return 0
    if args.prefix is None:
        parser.error("--prefix is required")

    sys.path.insert(0, str(REPO_ROOT))
    rows = gather_rows(args.prefix, not args.no_speed, args.threads)
    table = markdown(rows)
    print(f"{len(rows)} experiments, {os.cpu_count()} CPU(s), load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(table, end="")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
