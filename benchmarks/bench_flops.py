"""The FLOPs of a whole pipeline run, counted: the same on every machine (emseg.evaluation.flops).

Training (steps x one batch forward and backward), the validations, and the evaluate
stage's tiles (validation slices for the segmentation's settings, test slices, the
unlabelled volume; 8x with TTA), for params.yaml with ``-S key=value`` overrides, on the
ISBI data set's 512x512 slices. With ``--peak``, also this machine's fp32 sgemm peak and
what the run would take at it: the floor any implementation on this CPU meets.

    python benchmarks/bench_flops.py
    python benchmarks/bench_flops.py -S train.steps=2500 -S train.batch_size=4 --peak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from run_all import command_line, write_result

from emseg.config.params import parse_params
from emseg.evaluation.flops import PipelineFlops, pipeline_flops
from emseg.runtime.machine import machine_info, machine_line, sgemm_peak_gflops

REPO_ROOT = Path(__file__).resolve().parents[1]


def overridden(raw: dict, assignments: list[str]) -> dict:
    """params with ``a.b.c=value`` assignments (values read as YAML), as ``dvc exp run -S`` takes them (``+a.b=v`` too: dvc's new key)."""
    for assignment in assignments:
        key, _, value = assignment.partition("=")
        key = key.removeprefix("+")
        node = raw
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return raw


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-S", dest="set", action="append", default=[], metavar="KEY=VALUE", help="override a params key")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--peak", action="store_true", help="also measure this machine's fp32 sgemm peak")
    parser.add_argument("--slices", default="3,5,30", help="validation, test and unlabelled slices (default: ISBI's 3,5,30)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def count_pipeline(args: argparse.Namespace) -> PipelineFlops:
    """The FLOPs of a run with the params file and its overrides, on 512x512 slices; printed."""
    params = parse_params(overridden(yaml.safe_load(args.params.read_text()), args.set), args.params)
    val, test, unlabelled = (int(n) for n in args.slices.split(","))
    counted = pipeline_flops(params, (512, 512), val, test, unlabelled)
    print(f"pipeline FLOPs of {args.params}{' with ' + ' '.join(args.set) if args.set else ''}:")
    for name, value in counted.as_dict().items():
        print(f"  {name:<18} {value:10.3f}")
    return counted


def add_peak(figures: dict, total: float, info: dict) -> None:
    """This machine's fp32 sgemm peak and the minutes the run would take at it, into ``figures``; printed."""
    peak = sgemm_peak_gflops()
    figures["sgemm_peak_gflops"] = peak
    figures["minutes_at_peak"] = total / (peak * 1e9) / 60
    print(f"  sgemm peak now    {peak:10.1f} GFLOP/s -> {figures['minutes_at_peak']:.1f} min at 100% of it; {machine_line(info)}")


def main(argv: list[str] | None = None) -> int:
    """Count a run's FLOPs (and with ``--peak`` the time at this machine's peak); printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    counted = count_pipeline(args)
    figures = counted.as_dict()
    info = machine_info()
    if args.peak:
        add_peak(figures, counted.total, info)
    if args.json:
        write_result(args.json, {
            "benchmark": "flops",
            "command": command_line("bench_flops.py", argv),
            "machine": info,
            "overrides": args.set,
            **figures,
            "figures": {f"pipeline FLOPs: {name}": {"value": value, "unit": ""} for name, value in figures.items()},
        })
    return 0


if __name__ == "__main__":
    from emseg.errors import run_with_clean_errors

    sys.exit(run_with_clean_errors(main, debug=False, prog="bench_flops.py"))
