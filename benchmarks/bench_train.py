"""Training step rate of the train stage's real loop against a bare PyTorch loop.

The *real* loop is ``emseg.training.trainer.train`` itself: ``PatchSampler`` crops of the
normalised slices, random dihedral augmentation on the fly, the LR schedule, the AMP
switch, one loss sync per step and dvclive logging every ``--log-every`` steps.  The
*bare* loop runs the same network (``build_network(arch)``), batch, patch size, loss
(``build_loss``, on the main output only) and optimiser (Adam, same LR) on 8 batches that
the same ``PatchSampler`` draws once, before timing, and that are kept in memory on the
device and cycled: no sampling, no augmentation, no schedule, no logging.  Both report
patches/s; their ratio (real / bare) says what the data path and the bookkeeping cost
(the project's goal: >= 0.95, the data path never starves the model).

How the real loop is timed, without its validation: ``val_every`` = ``steps``, so
validation runs once, after the last timed step.  ``train()`` is run with its dvclive
``Live`` subclassed only to note ``time.perf_counter()`` whenever it logs
``train/patches_per_s``; the first logging window is warm-up (first-call allocations,
kernel selection) and is skipped, and the real rate is

    (last logged step - first logged step) x batch / (time between those two log calls)

Both time stamps sit at the same point of the loop, so this covers whole iterations
*including* the dvclive logging of the windows in between, and excludes set-up and
validation.  The rate ``train()`` itself logs (``<live>/plots/metrics/train/patches_per_s.tsv``)
leaves logging out (its window clock restarts after ``live.next_step()``); it is reported
too, as ``real_logged``.  The bare loop runs the same number of warm-up steps first, then
times the same number of steps.

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
import json
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emseg.device import machine_info, machine_line

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"
GOAL_RATIO = 0.95
N_TRAIN_SLICES = 22  # the contiguous split's training slices of ISBI
# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
FAULTS_NOTE = 100  # minor page faults per step above which the two loops' fault rates are compared


def synthetic_slices(n: int, size: int = 512, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """EM-like uint8 slices and ISBI labels (255 cell, 0 membrane): Voronoi cells, 2-px borders."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(n):
        centres = rng.uniform(0, size, size=(40, 2))
        nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=-1)
        border = np.zeros((size, size), bool)
        border[:-1] |= nearest[:-1] != nearest[1:]
        border[1:] |= nearest[1:] != nearest[:-1]
        border[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
        border[:, 1:] |= nearest[:, 1:] != nearest[:, :-1]
        image = np.where(border, 0.25, 0.7) + rng.normal(0, 0.05, size=(size, size))
        images.append(np.clip(image * 255, 0, 255).astype(np.uint8))
        labels.append(np.where(border, 0, 255).astype(np.uint8))
    return np.stack(images), np.stack(labels)


def load_slices(folder: Path) -> tuple[np.ndarray, np.ndarray, str]:
    volume, labels = folder / "train-volume.tif", folder / "train-labels.tif"
    if volume.is_file() and labels.is_file():
        import tifffile

        return tifffile.imread(volume), tifffile.imread(labels), f"ISBI ({folder})"
    images, labels = synthetic_slices(N_TRAIN_SLICES + 1)
    return images, labels, "synthetic (ISBI slices not found)"


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def _counters() -> tuple[float, int, float]:
    """Wall clock, minor page faults and kernel CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), usage.ru_minflt, usage.ru_stime


def _rates(start: tuple[float, int, float], end: tuple[float, int, float], steps: int, batch: int) -> dict:
    seconds = end[0] - start[0]
    return {
        "patches_per_s": steps * batch / seconds,
        "timed_steps": steps,
        "seconds": seconds,
        "minor_faults_per_step": (end[1] - start[1]) / steps,
        "sys_ms_per_step": (end[2] - start[2]) / steps * 1e3,
    }


def _figure(s: dict, unit: str) -> dict:
    return {"value": s["median"], "min": s["min"], "max": s["max"], "unit": unit}


def run_real(data, params, arch: str, seed: int, workdir: Path) -> dict:
    """One ``train()`` run; the real rate between the first and the last logged window."""
    import emseg.training.trainer as trainer
    from emseg.params import ModelParams

    stamps: list[tuple[int, tuple[float, int, float]]] = []

    class TimedLive(trainer.Live):
        def log_metric(self, name, val, timestamp=False, plot=True):  # noqa: ANN001
            if name == "train/patches_per_s":
                stamps.append((int(self.step), _counters()))
            return super().log_metric(name, val, timestamp, plot)

    live_dir = workdir / "live"
    original = trainer.Live
    trainer.Live = TimedLive
    try:
        trainer.train(data, ModelParams(arch=arch), params, seed, workdir / "model.pt", live_dir)
    finally:
        trainer.Live = original
    (first_step, first), (last_step, last) = stamps[0], stamps[-1]
    rows = (live_dir / "plots" / "metrics" / "train" / "patches_per_s.tsv").read_text().split("\n")[1:]
    logged = [float(row.split("\t")[1]) for row in rows if row.strip()][1:]  # first window: warm-up
    # the logged windows are equally long: their overall rate is the harmonic mean
    return {**_rates(first, last, last_step - first_step, params.batch_size), "logged_patches_per_s": statistics.harmonic_mean(logged)}


def run_bare(images: np.ndarray, labels: np.ndarray, params, arch: str, seed: int, device) -> dict:
    """The same network, loss and optimiser on batches held in memory: the model-only rate."""
    import torch

    from emseg.dataset import PatchSampler
    from emseg.device import amp_dtype, autocast, uses_amp
    from emseg.networks import build_network
    from emseg.training.losses import build_loss

    torch.manual_seed(seed)
    # a few batches drawn once by the real sampler (same crops, normalisation, flips), then cycled
    sampler = PatchSampler.from_arrays(list(images), list(labels), params.patch_size, params.random_dihedral, seed)
    batches = [tuple(t.to(device) for t in sampler.sample(params.batch_size)[:2]) for _ in range(8)]
    model = build_network(arch).to(device).train()
    loss_fn = build_loss(params.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    use_amp = uses_amp(device, params.amp, params.cpu_bf16)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype(device) == torch.float16)

    def step(i: int) -> torch.Tensor:
        x, y = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, params.amp, params.cpu_bf16):
            out = model(x)
        loss = loss_fn(out.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    warmup = params.log_every
    timed = params.steps - warmup
    for i in range(warmup):
        step(i)
    sync()
    start = _counters()
    for i in range(timed):
        loss = step(warmup + i)
    sync()
    end = _counters()
    assert np.isfinite(float(loss.detach()))
    return _rates(start, end, timed, params.batch_size)


def tune_malloc() -> bool:
    """The fix under test (``--mallopt``): keep glibc from handing freed tensor memory back
    to the kernel between steps.  Returns False where there is no glibc mallopt."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="patch 64, 40 steps, log every 8 (< 1 min)")
    parser.add_argument("--arch", default="unet", help="registered network (default unet)")
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
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    if args.mallopt and not tune_malloc():
        print("bench_train: --mallopt: no glibc mallopt here", file=sys.stderr)
        return 2
    import torch

    from emseg.device import select_device
    from emseg.params import TrainParams
    from emseg.training.trainer import TrainingData

    steps = args.steps or (40 if args.quick else 150)
    log_every = args.log_every or (8 if args.quick else 25)
    patch = args.patch_size or (64 if args.quick else 256)
    if steps % log_every or steps < 2 * log_every:
        parser.error(f"--steps ({steps}) must be a multiple of --log-every ({log_every}), at least twice it")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
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
    images, labels, source = load_slices(args.data)
    train_images, train_labels = images[:N_TRAIN_SLICES], labels[:N_TRAIN_SLICES]
    crop = min(2 * patch, *images.shape[1:])  # the one (untimed) validation runs on a small crop: less waiting
    val_image, val_label = images[N_TRAIN_SLICES][:crop, :crop], labels[N_TRAIN_SLICES][:crop, :crop]
    data = TrainingData(list(train_images), list(train_labels), [val_image], [val_label])
    info = machine_info()
    amp = " (AMP)" if device.type == "cuda" and args.amp else (" (bf16 autocast)" if args.cpu_bf16 and device.type == "cpu" else "")
    print(f"train step rate: {args.arch}, patch {patch}, batch {args.batch_size}, loss {args.loss}, device {device}{amp}")
    print(f"{steps} steps per run, first {log_every} (one logging window) warm-up, {steps - log_every} timed; data: {source}")
    print(f"torch threads: {torch.get_num_threads()}; glibc thresholds set: {args.mallopt}; machine: {machine_line(info)}")
    print(f"{'repeat':>6} {'real p/s':>9} {'logged p/s':>10} {'bare p/s':>9} {'ratio':>7} {'faults/step real, bare':>23}"
          f" {'sys ms/step real, bare':>23}")

    real, bare = [], []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for r in range(args.repeats):
            for kind in ("real", "bare") if r % 2 == 0 else ("bare", "real"):
                if kind == "real":
                    real.append(run_real(data, params, args.arch, args.seed, Path(tmp) / f"real{r}"))
                else:
                    bare.append(run_bare(train_images, train_labels, params, args.arch, args.seed, device))
            a, b = real[-1], bare[-1]
            print(
                f"{r + 1:>6} {a['patches_per_s']:>9.2f} {a['logged_patches_per_s']:>10.2f} {b['patches_per_s']:>9.2f} "
                f"{a['patches_per_s'] / b['patches_per_s']:>7.3f} {a['minor_faults_per_step']:>11.0f} {b['minor_faults_per_step']:>11.0f}"
                f" {a['sys_ms_per_step']:>11.1f} {b['sys_ms_per_step']:>11.1f}",
                flush=True,
            )
    results = {
        "real_patches_per_s": summary([x["patches_per_s"] for x in real]),
        "real_logged_patches_per_s": summary([x["logged_patches_per_s"] for x in real]),
        "bare_patches_per_s": summary([x["patches_per_s"] for x in bare]),
        "ratio": summary([a["patches_per_s"] / b["patches_per_s"] for a, b in zip(real, bare)]),
        "real_minor_faults_per_step": summary([x["minor_faults_per_step"] for x in real]),
        "bare_minor_faults_per_step": summary([x["minor_faults_per_step"] for x in bare]),
        "real_sys_ms_per_step": summary([x["sys_ms_per_step"] for x in real]),
        "bare_sys_ms_per_step": summary([x["sys_ms_per_step"] for x in bare]),
    }
    for name, label in (
        ("real_patches_per_s", "real p/s"),
        ("real_logged_patches_per_s", "real p/s, logged"),
        ("bare_patches_per_s", "bare p/s"),
        ("ratio", "ratio real/bare"),
    ):
        s = results[name]
        print(f"{label:>17}: median {s['median']:.3f}  (min {s['min']:.3f}, max {s['max']:.3f}) over {args.repeats} repeat(s)")
    met = results["ratio"]["median"] >= GOAL_RATIO
    print(f"goal ratio >= {GOAL_RATIO}: {'met' if met else 'NOT met'}")
    print("faults/step: minor page faults per training step (memory the allocator gave back to the kernel and touched again)")
    faults = (results["real_minor_faults_per_step"]["median"], results["bare_minor_faults_per_step"]["median"])
    if max(faults) > FAULTS_NOTE and min(faults) < max(faults) / 4:
        print(
            f"NOTE: the two loops page-fault very differently ({faults[0]:.0f} vs {faults[1]:.0f} per step): the ratio then "
            "reflects glibc's allocator state more than the data path; compare with --mallopt"
        )
    if args.json:
        payload = {
            "benchmark": "train",
            "command": shlex.join(["python", "benchmarks/bench_train.py", *(sys.argv[1:] if argv is None else argv)]),
            "machine": info,
            "config": {
                "arch": args.arch,
                "steps": steps,
                "log_every": log_every,
                "timed_steps": steps - log_every,
                "batch_size": args.batch_size,
                "patch_size": patch,
                "loss": args.loss,
                "device": str(device),
                "amp": bool(amp),
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "mallopt": args.mallopt,
                "data": source,
                "quick": args.quick,
            },
            **results,
            "goal_ratio": GOAL_RATIO,
            "goal_met": met,
            "figures": {
                "train: real loop": _figure(results["real_patches_per_s"], "patches/s"),
                "train: bare loop": _figure(results["bare_patches_per_s"], "patches/s"),
                "train: ratio real/bare": {**_figure(results["ratio"], ""), "goal": f">= {GOAL_RATIO}"},
                "train: page faults/step, real loop": _figure(results["real_minor_faults_per_step"], "faults/step"),
            },
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
