"""Wall time of the whole ``dvc repro`` (CPU profile) and of a second, no-op ``dvc repro``.

Works in a temporary copy of the repository, made as ``tests/test_pipeline_e2e.py`` makes
its own: the git-tracked files (plus the working copies of ``stages/`` and ``emseg/``),
without ``dvc.lock``, ``metrics/`` or ``dvclive/``; then ``git init``, one commit, and
``dvc repro`` from nothing (empty DVC cache).  The time of each stage is read off the
``Running stage '...'`` lines as they appear (a stage's time runs to the next such line,
so it includes DVC's own bookkeeping of the previous stage's outputs).  Then ``dvc repro``
again, ``--repeats`` times: nothing changed, so nothing may run (checked); the project's
goal for this no-op is under 5 s.

    python benchmarks/bench_pipeline.py                  # params.yaml as is (CPU profile, about 15 min on 2 cores)
    python benchmarks/bench_pipeline.py --quick          # the tiny profile of the e2e test on tiny synthetic stacks
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

import numpy as np
import yaml

from emseg.device import machine_info, machine_line

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "isbi2012"
NOOP_GOAL_S = 5.0

# the tiny profile: --quick here, and tests/test_pipeline_e2e.py's profile (it imports this)
TINY = {
    "split": {"test_size": 2, "val_size": 1},
    "augment": {"copies": 1, "preview_samples": 2},
    "model": {"unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
              "attention_unet": {"channels": [4, 8, 16], "strides": [2, 2]}},
    "train": {"steps": 4, "batch_size": 2, "patch_size": 32, "val_every": 2, "log_every": 2},
    "evaluate": {"tta": False, "overlays": 1, "pr_points": 20},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def write_tiny_source(folder: Path) -> Path:
    """train-volume/train-labels/test-volume TIFFs as the e2e test's fixture makes them:
    8 (3 test) EM-like slices of 96x80, Voronoi cells with 2-px dark membranes."""
    import tifffile

    def stack(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for i in range(n):
            rng = np.random.default_rng(seed + i)
            centres = rng.uniform(0, 1, size=(12, 2)) * (96, 80)
            yy, xx = np.mgrid[0:96, 0:80]
            nearest = np.argmin((yy[..., None] - centres[:, 0]) ** 2 + (xx[..., None] - centres[:, 1]) ** 2, axis=-1)
            border = np.zeros((96, 80), bool)
            border[:-1] |= nearest[:-1] != nearest[1:]
            border[1:] |= nearest[1:] != nearest[:-1]
            border[:, :-1] |= nearest[:, :-1] != nearest[:, 1:]
            image = np.where(border, 0.25, 0.7) + rng.normal(0, 0.05, size=(96, 80))
            images.append(np.clip(image * 255, 0, 255).astype(np.uint8))
            labels.append(np.where(border, 0, 255).astype(np.uint8))
        return np.stack(images), np.stack(labels)

    folder.mkdir(parents=True, exist_ok=True)
    images, labels = stack(8, 1)
    test, _ = stack(3, 100)
    tifffile.imwrite(folder / "train-volume.tif", images, photometric="minisblack")
    tifffile.imwrite(folder / "train-labels.tif", labels, photometric="minisblack")
    tifffile.imwrite(folder / "test-volume.tif", test, photometric="minisblack")
    return folder


def copy_repo(dest: Path, overrides: dict) -> Path:
    """The git-tracked files (and working copies of stages/ and emseg/), params overridden, committed."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked + ["params.yaml", "dvc.yaml"]:
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(("metrics/", "dvclive/")) and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    for folder in ("stages", "emseg"):
        shutil.copytree(REPO_ROOT / folder, dest / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    params = merge(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "bench"],
    ):
        subprocess.run(args, cwd=dest, capture_output=True, text=True, check=True)
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
    parser.add_argument("--quick", action="store_true", help="the tiny profile of tests/test_pipeline_e2e.py on tiny synthetic stacks")
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
            source = write_tiny_source(tmp / "source")
            overrides = merge(TINY, overrides)
        else:
            source = args.data.resolve()
            if not all((source / n).is_file() for n in ("train-volume.tif", "train-labels.tif", "test-volume.tif")):
                print(f"bench_pipeline: {source}: the ISBI stacks are not there (use --data or --quick)", file=sys.stderr)
                return 2
        overrides = merge(overrides, {"data": {"source": str(source)}})
        repo = copy_repo(tmp / "repo", overrides)
        print(f"repository copy: {repo}; data: {source}")

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
