"""Run every benchmark (score, segment, predict, train, pipeline) and gather their figures.

Each script runs in its own process with ``--json``; their outputs are collected into one
JSON (``--json``) and summarised as a markdown table: each figure, its value (median, and
min-max where the script repeats), the command that produced it and the machine.

    python benchmarks/run_all.py --quick                 # every script's --quick mode (about 1 min on 2 cores)
    python benchmarks/run_all.py --json results.json     # full runs: on a quiet machine (the pipeline alone ~15 min)
    python benchmarks/run_all.py --quick --threads 1     # on a busy machine
    python benchmarks/run_all.py --only train,pipeline   # a subset

``--threads N`` is passed on as each script's thread option (``--workers`` for score,
``--threads`` for the others) and as ``OMP_NUM_THREADS``/``NUMBA_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
BENCHMARKS = ("score", "segment", "predict", "train", "pipeline")
THREAD_OPTION = {"score": "--workers", "predict": "--threads", "train": "--threads", "pipeline": "--threads"}


# The result every script writes with --json, and this script gathers: the scripts import
# these two (``from run_all import ...``; they run with benchmarks/ on sys.path), so this
# module imports emseg (and torch) only inside main.
def command_line(script: str, argv: list[str] | None) -> str:
    """The command that made a result, as typed at the repository root: ``python benchmarks/<script> ARGS``."""
    return shlex.join(["python", f"benchmarks/{script}", *(sys.argv[1:] if argv is None else argv)])


def rss_mib() -> float:
    """This process's resident set size now (Linux /proc), in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_result(path: str | Path, payload: dict) -> None:
    """Write a result as indented JSON (one final newline), making its folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def machine_short(info: dict, load: list[float] | None = None) -> str:
    """The machine in a few words for the table: cores, CPU model and flags, GPU, and the load where given."""
    gpu = info["cuda_device"] if info["cuda"] else "no CUDA"
    cpu = info.get("cpu") or {}
    text = f"{info['cpu_count']} x {cpu.get('model', 'CPU')} ({'/'.join(cpu.get('flags') or ['no AVX2'])}), {gpu}"
    return f"{text}, load {load[0]:.1f}" if load else text


def format_value(figure: dict) -> str:
    """A figure's value as the table shows it: 3 significant digits, the spread, the unit and the goal."""
    def number(x: float) -> str:
        return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"

    text = number(figure["value"])
    if "min" in figure and "max" in figure and figure["min"] != figure["max"]:
        text += f" ({number(figure['min'])}-{number(figure['max'])})"
    if figure.get("unit"):
        text += f" {figure['unit']}"
    if figure.get("goal"):
        text += f" (goal {figure['goal']})"
    return text


def markdown_table(info: dict, runs: dict) -> str:
    """Every figure of every run, one row each, with its command and machine (or the script's failure)."""
    lines = [
        f"Machine: {machine_short(info)}, torch {info['torch']}, Python {info['python']}, "
        f"load average at start {' '.join(map(str, info['load_average']))}",
        "",
        "| figure | value | command | machine |",
        "| --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        if run.get("error"):
            lines.append(f"| {name}: FAILED | {run['error']} | `{run['command']}` | {machine_short(info)} |")
            continue
        result = run["result"]
        load = (result.get("machine") or {}).get("load_average")
        for figure, value in result["figures"].items():
            lines.append(f"| {figure} | {format_value(value)} | `{result['command']}` | {machine_short(info, load)} |")
    return "\n".join(lines)


def run_one(name: str, args: argparse.Namespace, env: dict, out_dir: Path) -> dict:
    """Run ``bench_<name>.py`` with ``--json``; its result, or the error."""
    json_path = out_dir / f"{name}.json"
    json_path.unlink(missing_ok=True)
    threads = [THREAD_OPTION[name], str(args.threads)] if args.threads and name in THREAD_OPTION else []
    options = (["--quick"] if args.quick else []) + threads
    command = [sys.executable, str(HERE / f"bench_{name}.py"), *options, "--json", str(json_path)]
    shown = shlex.join(["python", f"benchmarks/bench_{name}.py", *options])
    print(f"\n=== {shown}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)
    seconds = time.perf_counter() - start
    run: dict = {"command": shown, "wall_s": seconds, "returncode": done.returncode}
    if done.returncode != 0 or not json_path.is_file():
        run["error"] = f"exit status {done.returncode}" if done.returncode else "no JSON written"
    else:
        run["result"] = json.loads(json_path.read_text())
        run["result"]["command"] = shown  # without the temporary --json path
    print(f"=== {name}: {seconds:.1f} s", flush=True)
    return run


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The command line, and the scripts ``--only`` names (checked against ``BENCHMARKS``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script in its --quick mode")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=0, help="threads for every script (0 = their defaults)")
    parser.add_argument("--out-dir", type=Path, default=None, help="keep each script's JSON here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    return args, names


def run_scripts(names: list[str], args: argparse.Namespace) -> dict:
    """Each named script run in turn (``--threads`` also as OMP/NUMBA threads), its JSON in ``--out-dir`` or a temporary folder."""
    env = dict(os.environ)
    if args.threads:
        env.update({"OMP_NUM_THREADS": str(args.threads), "NUMBA_NUM_THREADS": str(args.threads)})
    with tempfile.TemporaryDirectory(prefix="bench_all_") as tmp:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {name: run_one(name, args, env, out_dir) for name in names}


def main(argv: list[str] | None = None) -> int:
    """Run the scripts, print and write the table, write all results as one JSON; 1 if any script failed."""
    from emseg.runtime.machine import machine_info

    args, names = parse_args(argv)
    info = machine_info()
    print(f"machine: {machine_short(info)}, torch {info['torch']}, load average {' '.join(map(str, info['load_average']))}")
    runs = run_scripts(names, args)
    table = markdown_table(info, runs)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        write_result(args.json, {"machine": info, "quick": args.quick, "threads": args.threads, "runs": runs})
    return 1 if any(run.get("error") for run in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
