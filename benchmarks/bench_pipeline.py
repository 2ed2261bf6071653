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
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from emseg.config.layout import RAW_NAMES
from emseg.io.synthetic import TINY_PROFILE, write_isbi_like_source
from emseg.runtime.machine import machine_info, machine_line

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"
NOOP_GOAL_S = 5.0

def merge(base: dict, extra: dict) -> dict:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="emseg.io.synthetic's tiny profile on its tiny synthetic stacks")
    parser.add_argument("--repeats", type=int, default=3, help="no-op dvc repro runs (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ISBI folder for the full run (default ../shared/isbi2012)")
    parser.add_argument("--threads", type=int, default=0, help="train.threads and OMP/MKL/NUMBA threads of every stage (0 = as is)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository (its path is printed)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    info = machine_info()
    print(f"dvc repro wall time, {'tiny profile (--quick)' if args.quick else 'CPU profile (params.yaml)'}")
    print(f"machine: {machine_line(info)}")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    overrides: dict = {}
    if args.threads:
        overrides["train"] = {"threads": args.threads}
        env.update({name: str(args.threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    try:
        if args.quick:
            source = write_isbi_like_source(tmp / "source")
            overrides = merge(TINY_PROFILE, overrides)
        else:
            source = args.data.resolve()
            if not all((source / name).is_file() for name in RAW_NAMES.values()):
                print(f"bench_pipeline: {source}: the ISBI stacks are not there (use --data or --quick)", file=sys.stderr)
                return 2
        overrides = merge(overrides, {"data": {"source": str(source)}})
        repo = clone_repo(tmp / "repo", overrides)
        env["PYTHONPATH"] = str(repo)  # the clone's emseg, not the (editable) installed working tree
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
        print(f"repository clone of {commit}: {repo}; data: {source}")

        full_s, output, stages = dvc_repro(repo, env)
        if not (repo / "metrics" / "evaluate.json").is_file():
            raise SystemExit(f"bench_pipeline: dvc repro wrote no metrics/evaluate.json:\n{output}")
        print(f"dvc repro (everything): {full_s:.1f} s")
        for name, seconds in stages:
            print(f"  {name:<9} {seconds:8.1f} s")
        noop = []
        for _ in range(args.repeats):
            seconds, output, ran = dvc_repro(repo, env)
            if ran:
                raise SystemExit(f"bench_pipeline: the second dvc repro ran {[n for n, _ in ran]}:\n{output}")
            noop.append(seconds)
        print(
            f"dvc repro (no-op): median {statistics.median(noop):.2f} s (min {min(noop):.2f}, max {max(noop):.2f})"
            f" over {args.repeats}; goal < {NOOP_GOAL_S:.0f} s: {'met' if statistics.median(noop) < NOOP_GOAL_S else 'NOT met'}"
        )
        metrics = json.loads((repo / "metrics" / "evaluate.json").read_text())
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        noop_summary = {"median": statistics.median(noop), "min": min(noop), "max": max(noop), "values": noop}
        payload = {
            "benchmark": "pipeline",
            "commit": commit,
            "command": shlex.join(["python", "benchmarks/bench_pipeline.py", *(sys.argv[1:] if argv is None else argv)]),
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
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
