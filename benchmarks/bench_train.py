"""Training step rate of the train stage's real loop against the same step on batches held in memory.

Both loops are the trainer's own code (``emseg.training.build.build_trainer``, the
same network, loss, optimiser, LR schedule, EMA and AMP switch, seeded alike). The
*real* loop is ``Trainer.run``: ``PatchSampler`` crops of the normalised slices, random
dihedral augmentation on the fly, one loss sync per step and dvclive logging every
``--log-every`` steps, with a dvclive ``Live`` injected as the trainer's logger. The
*bare* loop calls the same ``Trainer.train_step`` with the sampler replaced by 8 batches
that the real sampler draws once, before timing, kept in memory on the device and
cycled: no sampling, no augmentation, no logging. Both report patches/s; their ratio
(real / bare) says what the data path and the bookkeeping cost (the project's goal:
>= 0.95, the data path never starves the model).

How the real loop is timed, without its validation: ``val_every`` = ``steps``, so
validation runs once, after the last timed step. The injected ``Live`` notes
``time.perf_counter()`` whenever it logs ``train/patches_per_s``; the first logging
window is warm-up (first-call allocations, kernel selection) and is skipped, and the
real rate is

    (last logged step - first logged step) x batch / (time between those two log calls)

Both time stamps sit at the same point of the loop, so this covers whole iterations
*including* the dvclive logging of the windows in between, and excludes set-up and
validation. The rate the trainer itself logs leaves logging out (its window clock
restarts after each log line); it is reported too, as ``real_logged``. The bare loop runs
the same number of warm-up steps first, then times the same number of steps.

The two are measured side by side, in one process, ``--repeats`` times, alternating
(real, bare, then bare, real, ...) so that a drift of the machine's load hits both; the
median and the spread (min-max) of each and of the per-repeat ratio are printed.

Each run also counts minor page faults and kernel CPU time per step.  On CPU, glibc's
malloc may hand the memory of freed activations back to the kernel after a step and
fault it in again the next (thousands of faults per step; see benchmarks/README.md);
whether it does depends on the process's allocation history, not on the loop, so a
ratio between a faulting and a non-faulting run says little (a NOTE is printed then).
``--mallopt`` fixes glibc's mmap and trim thresholds first: the fix proposed for the
train stage, measured.

    python benchmarks/bench_train.py                 # unet, patch 256, batch 4, 150 steps x 3 repeats
    python benchmarks/bench_train.py --quick         # patch 64, 40 steps, < 1 min
    python benchmarks/bench_train.py --threads 1     # on a busy machine (see bench_predict.py)
    python benchmarks/bench_train.py --mallopt       # with glibc's thresholds fixed (the proposed fix)
    python benchmarks/bench_train.py --json out.json # also write the results as JSON

Data: the ISBI training slices at ``../shared/isbi2012/`` (slices 0-21 train, a crop of
slice 22 for the one untimed validation); synthetic EM-like slices when absent.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import sys
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from run_all import command_line, write_result

from emseg.runtime.machine import machine_info, machine_line

if typing.TYPE_CHECKING:
    import torch

    from emseg.config.params import ModelParams, TrainParams
    from emseg.training.sampler import TrainingData

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"
GOAL_RATIO = 0.95
N_TRAIN_SLICES = 22  # the contiguous split's training slices of ISBI
# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
FAULTS_NOTE = 100  # minor page faults per step above which the two loops' fault rates are compared


def load_slices(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """The ISBI training stack and labels in ``folder`` (synthetic EM-like slices where absent), and where they came from."""
    volume, labels = folder / "train-volume.tif", folder / "train-labels.tif"
    if volume.is_file() and labels.is_file():
        import tifffile

        return tifffile.imread(volume), tifffile.imread(labels), f"ISBI ({folder})"
    from emseg.io.synthetic import synthetic_stack

    images, labels = synthetic_stack(N_TRAIN_SLICES + 1, 512, 512, cells=40)
    return images, labels, "synthetic (ISBI slices not found)"


def summary(values: list[float]) -> dict:
    """Median, min, max and every value."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _counters() -> tuple[float, int, float]:
    """Wall clock, minor page faults and kernel CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_minflt, usage.ru_stime


def _rates(start: tuple[float, int, float], end: tuple[float, int, float], steps: int, batch: int) -> dict:
    """Patches/s, page faults and kernel ms per step between two ``_counters`` readings ``steps`` steps apart."""
    seconds = end[0] - start[0]
    return {
        "patches_per_s": steps * batch / seconds,
        "timed_steps": steps,
        "seconds": seconds,
        "minor_faults_per_step": (end[1] - start[1]) / steps,
        "sys_ms_per_step": (end[2] - start[2]) / steps * 1e3,
    }


def _figure(s: dict, unit: str) -> dict:
    """A summary as a figure for ``run_all.py``: the median, min, max and unit."""
    return {"value": s["median"], "min": s["min"], "max": s["max"], "unit": unit}


class _CyclingBatches:
    """A stand-in for the trainer's patch sampler: a few batches drawn once, then cycled (no sampling cost)."""

    def __init__(self, batches: list[tuple]) -> None:
        self.batches = batches
        self.calls = 0

    def sample(self, batch_size: int) -> tuple:
        batch = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        return batch


def run_real(data, params, model, seed: int, workdir: Path) -> dict:
    """One ``Trainer.run`` with dvclive's ``Live`` as its logger; the real rate between the first and the last logged window."""
    from dvclive import Live

    from emseg.training.build import build_trainer

    stamps: list[tuple[int, tuple[float, int, float]]] = []
    logged: list[float] = []

    class TimedLive(Live):
        def log_metric(self, name, val, timestamp=False, plot=True):  # noqa: ANN001
            if name == "train/patches_per_s":
                stamps.append((int(self.step), _counters()))
                logged.append(float(val))
            return super().log_metric(name, val, timestamp, plot)

    trainer = build_trainer(data, model, params, seed, workdir / "model.pt")
    with TimedLive(dir=str(workdir / "live"), dvcyaml=None, save_dvc_exp=False) as live:
        trainer.logger = live
        trainer.run()
    (first_step, first), (last_step, last) = stamps[0], stamps[-1]
    # the logged windows after the first (warm-up) are equally long: their overall rate is the harmonic mean
    return {**_rates(first, last, last_step - first_step, params.batch_size), "logged_patches_per_s": statistics.harmonic_mean(logged[1:])}


def run_bare(data, params, model, seed: int, workdir: Path) -> dict:
    """The same ``Trainer.train_step`` on batches held in memory on the device: the model-only rate."""
    import torch

    from emseg.training.build import build_trainer

    trainer = build_trainer(data, model, params, seed, workdir / "model.pt")
    # a few batches drawn once by the real sampler (same crops, normalisation, flips), then cycled
    batches = [trainer.sampler.sample(params.batch_size).to(trainer.device) for _ in range(8)]
    trainer.sampler = _CyclingBatches(batches)
    trainer.model.train()

    def sync() -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    warmup = params.log_every
    timed = params.steps - warmup
    for step in range(warmup):
        trainer.train_step(step)
    sync()
    start = _counters()
    for step in range(warmup, params.steps):
        loss = trainer.train_step(step)
    sync()
    end = _counters()
    assert np.isfinite(float(loss.detach()))
    return _rates(start, end, timed, params.batch_size)


def loss_ms(params, model, device, repeats: int = 20) -> float:
    """Milliseconds of the loss alone, forward and backward in fp32, on one batch of random logits of the model's shape.

    Element-wise work the FLOP count leaves out (it counts the network's convolutions);
    for an affinity model it is a masked Dice + BCE over every channel.
    """
    import torch

    from emseg.evaluation.flops import out_channels
    from emseg.training.losses import build_loss

    loss_fn = build_loss(params.loss, model.target)
    shape = (params.batch_size, out_channels(model), params.patch_size, params.patch_size)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator).to(device).requires_grad_()
    target = (torch.rand(shape, generator=generator) > 0.8).float().to(device)
    extra = (torch.ones_like(target),) if model.target == "affinities" else ()

    def once() -> None:
        loss_fn(logits, target, *extra).backward()
        logits.grad = None

    for _ in range(3):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / repeats * 1e3


def tune_malloc() -> bool:
    """The fix under test (``--mallopt``): keep glibc from handing freed tensor memory back
    to the kernel between steps.  Returns False where there is no glibc mallopt."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


@dataclass
class Setup:
    """What every measurement of one run shares: the options, the trainer's settings, the data, the machine, the work counted."""

    args: argparse.Namespace
    params: TrainParams
    model: ModelParams
    device: torch.device
    data: TrainingData
    source: str
    info: dict
    peak: float
    patch_gflop: float
    amp: str


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--target``'s choices from ``emseg.config.params``)."""
    from emseg.config.params import ModelParams

    targets = typing.get_args(ModelParams.model_fields["target"].annotation)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="patch 64, 40 steps, log every 8 (< 1 min)")
    parser.add_argument("--arch", default="unet", help="registered network (default unet)")
    parser.add_argument(
        "--target", default=None, choices=targets, help="model.target (default: the profile's, emseg.config.params)"
    )
    parser.add_argument("--steps", type=int, default=None, help="steps per run, warm-up window included (default 150, 40 with --quick)")
    parser.add_argument("--log-every", type=int, default=None, help="train.log_every: window length (default 25, 8 with --quick)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=None, help="default 256, 64 with --quick")
    parser.add_argument("--repeats", type=int, default=3, help="real/bare pairs, alternating order")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = torch's default; use 1 on a machine shared with a training)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="train.amp (CUDA only)")
    parser.add_argument("--cpu-bf16", action="store_true", help="train.cpu_bf16: bf16 autocast on CPU too")
    parser.add_argument("--loss", default="dice_ce")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with ISBI train-volume.tif / train-labels.tif")
    parser.add_argument(
        "--mallopt", action="store_true", help="first set glibc's mmap/trim thresholds (the proposed fix; see benchmarks/README.md)"
    )
    parser.add_argument(
        "-M", dest="model_set", action="append", default=[], metavar="KEY=VALUE",
        help="a model key (value read as YAML), as params.yaml's model block takes it: -M auto_context=true -M 'unet={num_res_units: 1}'",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser


def run_lengths(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[int, int, int]:
    """Steps per run, logging window and patch side (``--quick``'s where unset); a run must be two windows or more, whole ones."""
    steps = args.steps or (40 if args.quick else 150)
    log_every = args.log_every or (8 if args.quick else 25)
    patch = args.patch_size or (64 if args.quick else 256)
    if steps % log_every or steps < 2 * log_every:
        parser.error(f"--steps ({steps}) must be a multiple of --log-every ({log_every}), at least twice it")
    return steps, log_every, patch


def configure_torch(args: argparse.Namespace) -> torch.device:
    """Set torch's CPU threads (``--threads``) and choose the device (``--device``)."""
    import torch

    from emseg.runtime.device import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    return select_device(args.device)


def trainer_settings(args: argparse.Namespace, steps: int, log_every: int, patch: int) -> tuple[TrainParams, ModelParams]:
    """The train stage's settings under test: validation and a checkpoint only once, after the last step."""
    from emseg.config.params import ModelParams, TrainParams

    params = TrainParams(
        loss=args.loss,
        steps=steps,
        batch_size=args.batch_size,
        patch_size=patch,
        val_every=steps,
        log_every=log_every,
        checkpoint_every=steps,
        device=args.device,
        amp=args.amp,
        cpu_bf16=args.cpu_bf16,
        threads=args.threads,
    )
    from bench_flops import overridden  # dvc's -S syntax, read the same way

    from emseg.errors import EmsegError
    from emseg.networks.architectures import resolve_kwargs

    try:
        model = ModelParams(arch=args.arch, **({"target": args.target} if args.target else {}), **overridden({}, args.model_set))
        resolve_kwargs(model.arch, model.overrides())
    except (ValueError, EmsegError) as exc:  # pydantic's error and the registry's name the key
        raise SystemExit(f"-M: {' '.join(str(exc).split())}") from None
    return params, model


def training_data(folder: Path, patch: int) -> tuple[TrainingData, str]:
    """Slices 0-21 to train on and a small crop of slice 22 for the one (untimed) validation; and where they came from."""
    from emseg.training.sampler import TrainingData

    images, labels, source = load_slices(folder)
    train_images, train_labels = images[:N_TRAIN_SLICES], labels[:N_TRAIN_SLICES]
    crop = min(2 * patch, *images.shape[1:])  # the one (untimed) validation runs on a small crop: less waiting
    val_image, val_label = images[N_TRAIN_SLICES][:crop, :crop], labels[N_TRAIN_SLICES][:crop, :crop]
    return TrainingData(list(train_images), list(train_labels), [val_image], [val_label]), source


def count_patch_gflop(args: argparse.Namespace, model: ModelParams, patch: int) -> float:
    """GFLOP of one patch's forward and backward pass, counted (``emseg.evaluation.flops``)."""
    from emseg.evaluation.flops import out_channels, train_step_flops
    from emseg.networks.architectures import resolve_kwargs

    kwargs = resolve_kwargs(model.arch, model.overrides())
    return train_step_flops(model.arch, kwargs, out_channels(model), args.batch_size, patch, auto_context=model.auto_context) / 1e9 / args.batch_size


def amp_label(args: argparse.Namespace, device: torch.device) -> str:
    """The reduced precision the steps run in, as printed after the device ("" for fp32)."""
    return " (AMP)" if device.type == "cuda" and args.amp else (" (bf16 autocast)" if args.cpu_bf16 and device.type == "cpu" else "")


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Setup:
    """Settings, device, data, the machine's description and sgemm peak, and the work of one patch."""
    from emseg.runtime.machine import sgemm_peak_gflops

    steps, log_every, patch = run_lengths(args, parser)
    device = configure_torch(args)
    params, model = trainer_settings(args, steps, log_every, patch)
    data, source = training_data(args.data, patch)
    info, peak = machine_info(), sgemm_peak_gflops()
    return Setup(args, params, model, device, data, source, info, peak, count_patch_gflop(args, model, patch), amp_label(args, device))


def print_header(setup: Setup) -> None:
    """What is measured, on what, and the titles of the per-repeat table."""
    import torch

    from emseg.evaluation.flops import out_channels

    args, params, model = setup.args, setup.params, setup.model
    print(f"train step rate: {args.arch} ({model.target}, {out_channels(model)} output channel(s)), patch {params.patch_size}, "
          f"batch {args.batch_size}, loss {args.loss}, device {setup.device}{setup.amp}")
    print(f"{params.steps} steps per run, first {params.log_every} (one logging window) warm-up, {params.steps - params.log_every} timed; "
          f"data: {setup.source}")
    print(f"torch threads: {torch.get_num_threads()}; glibc thresholds set: {args.mallopt}; machine: {machine_line(setup.info)}")
    print(f"one patch's forward and backward: {setup.patch_gflop:.2f} GFLOP (counted); fp32 sgemm peak now {setup.peak:.1f} GFLOP/s")
    print(f"{'repeat':>6} {'real p/s':>9} {'logged p/s':>10} {'bare p/s':>9} {'ratio':>7} {'faults/step real, bare':>23}"
          f" {'sys ms/step real, bare':>23}")


def print_repeat(r: int, a: dict, b: dict) -> None:
    """One row of the per-repeat table: real run ``a`` against bare run ``b``."""
    print(
        f"{r + 1:>6} {a['patches_per_s']:>9.2f} {a['logged_patches_per_s']:>10.2f} {b['patches_per_s']:>9.2f} "
        f"{a['patches_per_s'] / b['patches_per_s']:>7.3f} {a['minor_faults_per_step']:>11.0f} {b['minor_faults_per_step']:>11.0f}"
        f" {a['sys_ms_per_step']:>11.1f} {b['sys_ms_per_step']:>11.1f}",
        flush=True,
    )


def measure_loops(setup: Setup) -> tuple[list[dict], list[dict]]:
    """``--repeats`` pairs of a real and a bare run, alternating which goes first; prints each pair's row."""
    args = setup.args
    real, bare = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for r in range(args.repeats):
            for kind in ("real", "bare") if r % 2 == 0 else ("bare", "real"):
                if kind == "real":
                    real.append(run_real(setup.data, setup.params, setup.model, args.seed, Path(tmp) / f"real{r}"))
                else:
                    bare.append(run_bare(setup.data, setup.params, setup.model, args.seed, Path(tmp) / f"bare{r}"))
            print_repeat(r, real[-1], bare[-1])
    return real, bare


def summarise_loops(real: list[dict], bare: list[dict]) -> dict:
    """Median and spread of each loop's rate, of their per-repeat ratio, and of their page faults and kernel time per step."""
    return {
        "real_patches_per_s": summary([x["patches_per_s"] for x in real]),
        "real_logged_patches_per_s": summary([x["logged_patches_per_s"] for x in real]),
        "bare_patches_per_s": summary([x["patches_per_s"] for x in bare]),
        "ratio": summary([a["patches_per_s"] / b["patches_per_s"] for a, b in zip(real, bare)]),
        "real_minor_faults_per_step": summary([x["minor_faults_per_step"] for x in real]),
        "bare_minor_faults_per_step": summary([x["minor_faults_per_step"] for x in bare]),
        "real_sys_ms_per_step": summary([x["sys_ms_per_step"] for x in real]),
        "bare_sys_ms_per_step": summary([x["sys_ms_per_step"] for x in bare]),
    }


def print_rates(results: dict, repeats: int) -> None:
    """The median and spread of both rates and of the ratio."""
    for name, label in (
        ("real_patches_per_s", "real p/s"),
        ("real_logged_patches_per_s", "real p/s, logged"),
        ("bare_patches_per_s", "bare p/s"),
        ("ratio", "ratio real/bare"),
    ):
        s = results[name]
        print(f"{label:>17}: median {s['median']:.3f}  (min {s['min']:.3f}, max {s['max']:.3f}) over {repeats} repeat(s)")


def add_gflop_rates(results: dict, setup: Setup) -> None:
    """Each loop's median rate in GFLOP/s, printed with its share of the sgemm peak; added to ``results`` with the patch's GFLOP and the peak."""
    for kind in ("real", "bare"):
        rate = results[f"{kind}_patches_per_s"]["median"] * setup.patch_gflop
        results[f"{kind}_gflop_per_s"] = rate
        print(f"{kind + ' GFLOP/s':>17}: {rate:.1f} ({rate / setup.peak:.0%} of the sgemm peak)")
    results["patch_gflop"], results["sgemm_peak_gflops"] = setup.patch_gflop, setup.peak


def add_loss_time(results: dict, setup: Setup) -> None:
    """Time the loss alone (forward and backward, ms per step) into ``results``; print it against a bare step."""
    results["loss_ms_per_step"] = loss_ms(setup.params, setup.model, setup.device)
    bare_step_ms = setup.args.batch_size / results["bare_patches_per_s"]["median"] * 1e3
    print(f"{'loss alone':>17}: {results['loss_ms_per_step']:.1f} ms forward and backward per step "
          f"({results['loss_ms_per_step'] / bare_step_ms:.0%} of a bare step, {bare_step_ms:.0f} ms)")


def report_goal(results: dict) -> bool:
    """Print whether the median ratio meets the goal (returned), and a NOTE where the two loops page-fault very differently."""
    met = results["ratio"]["median"] >= GOAL_RATIO
    print(f"goal ratio >= {GOAL_RATIO}: {'met' if met else 'NOT met'}")
    print("faults/step: minor page faults per training step (memory the allocator gave back to the kernel and touched again)")
    faults = (results["real_minor_faults_per_step"]["median"], results["bare_minor_faults_per_step"]["median"])
    if max(faults) > FAULTS_NOTE and min(faults) < max(faults) / 4:
        print(
            f"NOTE: the two loops page-fault very differently ({faults[0]:.0f} vs {faults[1]:.0f} per step): the ratio then "
            "reflects glibc's allocator state more than the data path; compare with --mallopt"
        )
    return met


def run_config(setup: Setup) -> dict:
    """The configuration measured, as the JSON result records it."""
    import torch

    from emseg.evaluation.flops import out_channels

    args, params = setup.args, setup.params
    return {
        "arch": args.arch,
        "target": setup.model.target,
        "out_channels": out_channels(setup.model),
        "steps": params.steps,
        "log_every": params.log_every,
        "timed_steps": params.steps - params.log_every,
        "batch_size": args.batch_size,
        "patch_size": params.patch_size,
        "loss": args.loss,
        "device": str(setup.device),
        "amp": bool(setup.amp),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "mallopt": args.mallopt,
        "data": setup.source,
        "quick": args.quick,
    }


def train_figures(results: dict, peak: float) -> dict:
    """The figures ``run_all.py`` gathers: both rates, their ratio, GFLOP/s, page faults and the loss's time."""
    return {
        "train: real loop": _figure(results["real_patches_per_s"], "patches/s"),
        "train: bare loop": _figure(results["bare_patches_per_s"], "patches/s"),
        "train: ratio real/bare": {**_figure(results["ratio"], ""), "goal": f">= {GOAL_RATIO}"},
        "train: real loop GFLOP/s": {"value": results["real_gflop_per_s"], "unit": f"GFLOP/s ({results['real_gflop_per_s'] / peak:.0%} of sgemm peak)"},
        "train: page faults/step, real loop": _figure(results["real_minor_faults_per_step"], "faults/step"),
        "train: loss forward and backward": {"value": results["loss_ms_per_step"], "unit": "ms/step"},
    }


def assemble_payload(setup: Setup, results: dict, met: bool, argv: list[str] | None) -> dict:
    """The JSON result: the command, the machine, the configuration, every summary, the goal and the figures."""
    return {
        "benchmark": "train",
        "command": command_line("bench_train.py", argv),
        "machine": setup.info,
        "config": run_config(setup),
        **results,
        "goal_ratio": GOAL_RATIO,
        "goal_met": met,
        "figures": train_figures(results, setup.peak),
    }


def main(argv: list[str] | None = None) -> int:
    """Both loops measured side by side, the loss alone, the goal checked; printed, and written as JSON with ``--json``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mallopt and not tune_malloc():
        print("bench_train: --mallopt: no glibc mallopt here", file=sys.stderr)
        return 2
    setup = prepare(args, parser)
    print_header(setup)
    results = summarise_loops(*measure_loops(setup))
    print_rates(results, args.repeats)
    add_gflop_rates(results, setup)
    add_loss_time(results, setup)
    met = report_goal(results)
    if args.json:
        write_result(args.json, assemble_payload(setup, results, met, argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
