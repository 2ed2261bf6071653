"""Where a training step's time goes: `torch.profiler` over the trainer's own step, by phase and by op.

The trainer is built as `bench_train.py` builds it (the same options: network, target,
patch, batch, bf16 autocast), with the real patch sampler. After `--warmup` steps, `--steps`
steps of `Trainer.train_step` run under the profiler (CPU activities, and CUDA's when there).
Printed, and written with `--json`:

* the step's phases, as the trainer names them (`train/sample`, `train/forward`,
  `train/loss`, `train/backward`, `train/optimizer`): milliseconds per step and share;
* the `--top` ops by self CPU time: milliseconds per step, share, calls per step.

    python benchmarks/profile_train_step.py --cpu-bf16 --json OUT.json     # the CPU profile on a bf16 CPU
    python benchmarks/profile_train_step.py --json OUT.json                # fp32 (an AVX2-only CPU)

Each figure is of this CPU kind only: run it on each (the machine is in the output). The
kernels of a lesser CPU class run on a better CPU when torch and oneDNN are told so; the
command recorded keeps these settings:

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/profile_train_step.py --json OUT.json

That is the AVX2-only class's code on this CPU's cores, caches and memory, not an AVX2-only CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench_train import build_parser, prepare
from run_all import command_line

#: the environment variables that cap the instruction set of torch's kernels and of oneDNN's
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


def isa_limits() -> list[str]:
    """The ISA caps set in this process's environment, as `NAME=value` words of a command line."""
    return [f"{name}={os.environ[name]}" for name in ISA_LIMITS if name in os.environ]


PHASES = ("train/sample", "train/forward", "train/loss", "train/backward", "train/optimizer")


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from emseg.runtime.machine import machine_line
    from emseg.training.build import build_trainer

    parser = build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--warmup", type=int, default=10, help="steps before profiling (default %(default)s)")
    parser.add_argument("--profile-steps", type=int, default=20, help="steps profiled (default %(default)s)")
    parser.add_argument("--top", type=int, default=25, help="ops listed (default %(default)s)")
    args = parser.parse_args()
    setup = prepare(args, parser)
    n = args.profile_steps
    with tempfile.TemporaryDirectory(prefix="profile_train_") as tmp:
        trainer = build_trainer(setup.data, setup.model, setup.params, args.seed, Path(tmp) / "model.pt")
        trainer.model.train()
        for step in range(args.warmup):
            trainer.train_step(step)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if setup.device.type == "cuda" else [])
        start = time.perf_counter()
        with profile(activities=activities) as prof:
            for step in range(args.warmup, args.warmup + n):
                loss = trainer.train_step(step)
            float(loss.detach())
        wall_ms = (time.perf_counter() - start) / n * 1e3
    events = prof.key_averages()
    by_name = {e.key: e for e in events}
    phases = {name: by_name[name].cpu_time_total / 1e3 / n for name in PHASES if name in by_name}
    ops = sorted((e for e in events if e.key not in PHASES and not e.key.startswith("ProfilerStep")), key=lambda e: -e.self_cpu_time_total)
    self_total = sum(e.self_cpu_time_total for e in events) / 1e3 / n
    top = [
        {"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / n, "share": e.self_cpu_time_total / 1e3 / n / self_total, "calls_per_step": e.count / n}
        for e in ops[: args.top]
    ]
    print(f"machine: {machine_line(setup.info)}; torch threads {torch.get_num_threads()}; device {setup.device}{setup.amp}")
    print(f"{args.arch} ({setup.model.target}), patch {setup.params.patch_size}, batch {setup.params.batch_size}: "
          f"{wall_ms:.1f} ms per profiled step (wall, profiler on), {setup.patch_gflop * setup.params.batch_size:.2f} GFLOP counted")
    for name, ms in phases.items():
        print(f"  {name:<16} {ms:8.1f} ms  {ms / wall_ms:6.1%}")
    print(f"  {'op (self CPU)':<44} {'ms/step':>8} {'share':>7} {'calls':>6}")
    for row in top:
        print(f"  {row['op'][:44]:<44} {row['self_ms_per_step']:8.2f} {row['share']:7.1%} {row['calls_per_step']:6.0f}")
    if args.json:
        report = {
            "command": " ".join([*isa_limits(), command_line("profile_train_step.py", None)]),
            "machine": setup.info, "threads": torch.get_num_threads(), "device": str(setup.device), "precision": setup.amp.strip() or "fp32",
            "arch": args.arch, "target": setup.model.target, "patch": setup.params.patch_size, "batch": setup.params.batch_size,
            "steps_profiled": n, "wall_ms_per_step": wall_ms, "gflop_per_step": setup.patch_gflop * setup.params.batch_size,
            "phases_ms_per_step": phases, "top_ops": top,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
