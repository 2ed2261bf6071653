"""Wall time of the whole ``dvc repro`` (CPU profile) and of a second, no-op ``dvc repro``.

Works in a temporary clone of the committed HEAD (so a figure belongs to a commit; commit
before measuring), without ``dvc.lock``, ``metrics/`` or ``dvclive/``, and runs ``dvc
repro`` there from nothing (empty DVC cache).  The time of each stage is read off the
``Running stage '...'`` lines as they appear (a stage's time runs to the next such line,
so it includes DVC's own bookkeeping of the previous stage's outputs).  Then ``dvc repro``
again, ``--repeats`` times: nothing changed, so nothing may run (checked); the project's
goal for this no-op is under 5 s.

    python benchmarks/bench_pipeline.py                  # params.yaml as is (the CPU profile; README: Performance)
    python benchmarks/bench_pipeline.py --quick          # emseg.io.synthetic's tiny profile on its synthetic stacks
    python benchmarks/bench_pipeline.py --quick --threads 1   # on a busy machine

``--threads N`` sets ``train.threads`` and ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``NUMBA_NUM_THREADS`` for every stage; the default (0) leaves all of them as they are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from run_all import command_line, write_result

from emseg.config.layout import RAW_NAMES
from emseg.io.synthetic import TINY_PROFILE, write_isbi_like_source
from emseg.runtime.machine import machine_info, machine_line

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"
NOOP_GOAL_S = 5.0


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested dicts key by key (``extra`` wins)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def clone_repo(dest: Path, overrides: dict) -> Path:
    """A clone of the committed HEAD, params overridden, without the committed pipeline results.

    The benchmark times a commit, so that its figures can be quoted with the commit's hash.
    """
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(dest)], capture_output=True, text=True, check=True)
    (dest / "dvc.lock").unlink(missing_ok=True)
    for folder in ("metrics", "dvclive"):
        shutil.rmtree(dest / folder, ignore_errors=True)
    params = merge(yaml.safe_load((dest / "params.yaml").read_text()), overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def dvc_repro(repo: Path, env: dict) -> tuple[float, str, list[tuple[str, float]]]:
    """Run ``dvc repro``; its wall time, output, and (stage, seconds) from the output's timing."""
    dvc = Path(sys.executable).parent / "dvc"
    command = [str(dvc) if dvc.is_file() else "dvc", "repro"]
    lines: list[str] = []
    starts: list[tuple[str, float]] = []
    start = time.perf_counter()
    with subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Running stage '"):
                starts.append((line.split("'")[1], time.perf_counter()))
    seconds = time.perf_counter() - start
    output = "".join(lines)
    if proc.returncode != 0:
        raise SystemExit(f"bench_pipeline: dvc repro failed in {repo}:\n{output}")
    ends = [t for _, t in starts[1:]] + [start + seconds]
    return seconds, output, [(name, end - t) for (name, t), end in zip(starts, ends)]


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="emseg.io.synthetic's tiny profile on its tiny synthetic stacks")
    parser.add_argument("--repeats", type=int, default=3, help="no-op dvc repro runs (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI folder for the full run (default ../shared/isbi2012)")
    parser.add_argument("--threads", type=int, default=0, help="train.threads and OMP/MKL/NUMBA threads of every stage (0 = as is)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository (its path is printed)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser


def stage_environment(threads: int) -> tuple[dict, dict]:
    """The stages' environment (this venv first on PATH, unbuffered output) and params overrides, with ``--threads`` in both."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    overrides: dict = {}
    if threads:
        overrides["train"] = {"threads": threads}
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    return env, overrides


def choose_source(args: argparse.Namespace, tmp: Path, overrides: dict) -> tuple[Path, dict] | None:
    """The data the pipeline fetches (tiny synthetic stacks with --quick) and the overrides with it; None where the ISBI stacks are missing."""
    if args.quick:
        source = write_isbi_like_source(tmp / "source")
        overrides = merge(TINY_PROFILE, overrides)
    else:
        source = args.data.resolve()
        if not all((source / name).is_file() for name in RAW_NAMES.values()):
            print(f"bench_pipeline: {source}: the ISBI stacks are not there (use --data or --quick)", file=sys.stderr)
            return None
    return source, merge(overrides, {"data": {"source": str(source)}})


def prepare_clone(tmp: Path, source: Path, overrides: dict, env: dict) -> tuple[Path, str]:
    """The clone to run in and its short commit hash; ``env`` made to import the clone's emseg."""
    repo = clone_repo(tmp / "repo", overrides)
    env["PYTHONPATH"] = str(repo)  # the clone's emseg, not the (editable) installed working tree
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    print(f"repository clone of {commit}: {repo}; data: {source}")
    return repo, commit


def time_full_repro(repo: Path, env: dict) -> tuple[float, list[tuple[str, float]]]:
    """Seconds of the first ``dvc repro`` (everything runs) and of each of its stages, printed; it must write the metrics."""
    full_s, output, stages = dvc_repro(repo, env)
    if not (repo / "metrics" / "evaluate.json").is_file():
        raise SystemExit(f"bench_pipeline: dvc repro wrote no metrics/evaluate.json:\n{output}")
    print(f"dvc repro (everything): {full_s:.1f} s")
    for name, seconds in stages:
        print(f"  {name:<9} {seconds:8.1f} s")
    return full_s, stages


def time_noop_repros(repo: Path, env: dict, repeats: int) -> list[float]:
    """Seconds of ``repeats`` further ``dvc repro`` runs, each of which must run nothing; their median printed against the goal."""
    noop = []
    for _ in range(repeats):
        seconds, output, ran = dvc_repro(repo, env)
        if ran:
            raise SystemExit(f"bench_pipeline: the second dvc repro ran {[n for n, _ in ran]}:\n{output}")
        noop.append(seconds)
    print(
        f"dvc repro (no-op): median {statistics.median(noop):.2f} s (min {min(noop):.2f}, max {max(noop):.2f})"
        f" over {repeats}; goal < {NOOP_GOAL_S:.0f} s: {'met' if statistics.median(noop) < NOOP_GOAL_S else 'NOT met'}"
    )
    return noop


def remove_or_keep(tmp: Path, keep: bool) -> None:
    """Delete the temporary folder, or with ``--keep`` print where it is."""
    if keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def assemble_payload(args: argparse.Namespace, argv: list[str] | None, info: dict, commit: str, full_s: float,
                     stages: list[tuple[str, float]], noop: list[float], metrics: dict) -> dict:
    """The JSON result: the commit, the command, the machine, both repro times, the stages', the goal, V_rand and the figures."""
    noop_summary = {"median": statistics.median(noop), "min": min(noop), "max": max(noop), "values": noop}
    return {
        "benchmark": "pipeline",
        "commit": commit,
        "command": command_line("bench_pipeline.py", argv),
        "machine": info,
        "config": {"profile": "tiny" if args.quick else "params.yaml", "threads": args.threads, "repeats": args.repeats,
                   "quick": args.quick},
        "repro_s": full_s,
        "stages_s": dict(stages),
        "noop_s": noop_summary,
        "noop_goal_s": NOOP_GOAL_S,
        "noop_goal_met": noop_summary["median"] < NOOP_GOAL_S,
        "v_rand": metrics.get("v_rand"),
        "figures": {
            "pipeline: dvc repro": {"value": full_s, "unit": "s"},
            "pipeline: no-op dvc repro": {
                "value": noop_summary["median"], "min": min(noop), "max": max(noop), "unit": "s", "goal": f"< {NOOP_GOAL_S:.0f}"
            },
            **{f"pipeline: stage {name}": {"value": seconds, "unit": "s"} for name, seconds in stages},
        },
    }


def main(argv: list[str] | None = None) -> int:
    """A whole ``dvc repro`` and no-op ones in a temporary clone; printed, and written as JSON with ``--json``."""
    args = build_parser().parse_args(argv)
    info = machine_info()
    print(f"dvc repro wall time, {'tiny profile (--quick)' if args.quick else 'CPU profile (params.yaml)'}")
    print(f"machine: {machine_line(info)}")
    env, overrides = stage_environment(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        chosen = choose_source(args, tmp, overrides)
        if chosen is None:
            return 2
        source, overrides = chosen
        repo, commit = prepare_clone(tmp, source, overrides, env)
        full_s, stages = time_full_repro(repo, env)
        noop = time_noop_repros(repo, env, args.repeats)
        metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    finally:
        remove_or_keep(tmp, args.keep)
    if args.json:
        write_result(args.json, assemble_payload(args, argv, info, commit, full_s, stages, noop, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
