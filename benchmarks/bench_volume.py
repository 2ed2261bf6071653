"""Block-wise volume prediction (``emseg predict`` on OME-Zarr): equivalence, throughput, memory.

Three parts, each run through the ``emseg predict`` command in a fresh subprocess whose
process tree (the command and, with --workers, its Dask worker processes) is sampled
for peak resident memory every 0.2 s:

* ``equivalence``: the first ``--slices`` ISBI test slices, predicted by the bundled model
  in memory (a TIFF) and as an OME-Zarr volume with several block sizes, in this process
  and on 1 and 2 Dask workers; the probability's largest difference, the share of mask
  pixels that differ, and whether every slice has the same cells (count and partition);
* ``throughput``: MPix/s of the same runs (the in-memory path is the reference);
* ``scaling``: synthetic uint8 volumes of ``--gib`` GiB (slices of 8192^2) through a cheap
  stand-in network (a 2-level UNet of 2 channels, patch 512, no overlap: the I/O and the
  engine, not the network, are measured), membrane output only; peak RSS per worker
  process as the volume grows.

    python benchmarks/bench_volume.py equivalence            # ~3 min on 2 cores
    python benchmarks/bench_volume.py equivalence --slices 8 --mosaic 2 --blocks 2048 1024   # 2048^2 slices
    python benchmarks/bench_volume.py equivalence --slices 16 --mosaic 2 --blocks 2048 1024 --engines 0 2   # in-process and 2 workers
    python benchmarks/bench_volume.py scaling --gib 1 4 16   # needs 2x the largest size free on disk
    python benchmarks/bench_volume.py all --json out.json
    python benchmarks/bench_volume.py all --quick    # the test suite's check that it runs
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISBI_TEST = REPO.parent / "shared" / "isbi2012" / "test-volume.tif"
SCALING_SLICE = 8192


def _tree_rss(root: int) -> dict[int, int]:
    """The resident memory of a process and of each of its descendants, by pid (those gone meanwhile left out)."""
    import psutil

    found = {}
    try:
        proc = psutil.Process(root)
        for p in [proc, *proc.children(recursive=True)]:
            try:
                found[p.pid] = p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return found


def run_measured(args: list[str]) -> dict:
    """Run a command; its wall time, the peak RSS of the command itself and of its largest child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid, rss in _tree_rss(proc.pid).items():
                peaks[pid] = max(peaks.get(pid, 0), rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err}")
    children = [rss for pid, rss in peaks.items() if pid != proc.pid]
    return {
        "seconds": seconds,
        "client_rss_mib": peaks.get(proc.pid, 0) / 2**20,
        "largest_child_rss_mib": max(children, default=0) / 2**20,
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
    }


def _emseg(*argv: str) -> list[str]:
    """The command line of ``emseg`` with these arguments, in this interpreter."""
    return [sys.executable, "-m", "emseg.cli.main", *argv]


def _write_ome(path: Path, stack_or_slices, shape: tuple[int, int, int], dtype, chunk: int = 1024) -> None:
    """An OME-Zarr volume of ``shape`` at ``path``, written slice by slice."""
    from emseg.inference.volume import omezarr

    omezarr.create_ome_zarr(path, shape, dtype, chunk, (50.0, 4.0, 4.0), "nanometer")
    level = omezarr.open_level(path, 0)
    for z, page in enumerate(stack_or_slices):
        level[z] = page


def _cells_equal(a: np.ndarray, b: np.ndarray) -> tuple[bool, bool]:
    """(same cell count in every slice, same partition in every slice)."""
    counts = partition = True
    for z in range(a.shape[0]):
        counts &= len(np.unique(a[z])) == len(np.unique(b[z]))
        pairs = np.unique(np.stack([a[z].ravel(), b[z].ravel()]), axis=1)
        cells = pairs[:, pairs[0] > 0]
        partition &= bool(((a[z] == 0) == (b[z] == 0)).all()) and len(np.unique(cells[0])) == cells.shape[1] == len(np.unique(cells[1]))
    return bool(counts), bool(partition)


def mosaic(stack: np.ndarray, doublings: int) -> np.ndarray:
    """Each slice mirrored into a 2x2 mosaic ``doublings`` times: bigger slices of real EM texture."""
    for _ in range(doublings):
        stack = np.concatenate([np.concatenate([stack, stack[:, :, ::-1]], 2), np.concatenate([stack[:, ::-1], stack[:, ::-1, ::-1]], 2)], 1)
    return np.ascontiguousarray(stack)


def equivalence(
    slices: int, blocks: list[int], work: Path, engines: tuple[int | None, ...] = (None, 1, 2), doublings: int = 0
) -> list[dict]:
    """The in-memory run and a block-wise run per block size and engine, each compared with the in-memory one; rows printed."""
    import tifffile

    from emseg.inference.volume import omezarr
    from emseg.io.images import read_stack

    stack = mosaic(tifffile.imread(ISBI_TEST)[:slices], doublings)
    tif = work / "isbi.tif"
    tifffile.imwrite(tif, stack, photometric="minisblack")
    _write_ome(work / "isbi.ome.zarr", stack, stack.shape, stack.dtype, chunk=min(blocks))
    # the exact-equivalence check: components, whose block cells equal the slice's (bench_volume_cells.py scores the agglomerations)
    common = ["--quiet", "--outputs", "proba,membrane,cells", "--threads", "0", "--cells", "components"]
    ref = run_measured(_emseg("predict", str(tif), "--out", str(work / "memory"), *common))
    memory = {k: read_stack(work / "memory" / f"isbi_{k}.tif") for k in ("proba", "membrane", "cells")}
    mpix = stack.size / 1e6
    rows = [{"path": "in memory (TIFF)", "block": "slice", "workers": "-", "shape": list(stack.shape), **ref, "mpix_per_s": mpix / ref["seconds"]}]
    for block in blocks:
        for workers in engines:
            out = work / f"vol_{block}_{workers}"
            extra = ["--workers", str(workers)] if workers else []
            measured = run_measured(_emseg("predict", str(work / "isbi.ome.zarr"), "--out", str(out), "--block-size", str(block), *common, *extra))
            level0 = {k: np.asarray(omezarr.open_level(out / f"isbi_{k}.ome.zarr", 0, mode="r")[:]) for k in memory}
            counts, partition = _cells_equal(level0["cells"], memory["cells"])
            rows.append({
                "path": "volume", "block": block, "workers": workers or "in-process", **measured,
                "mpix_per_s": mpix / measured["seconds"],
                "max_abs_proba_diff": float(np.abs(level0["proba"] - memory["proba"]).max()),
                "mask_pixels_differing": float((level0["membrane"] != memory["membrane"]).mean()),
                "cell_counts_equal": counts, "cells_equal": partition,
            })
            shutil.rmtree(out)
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _cheap_model(path: Path) -> None:
    """Save the stand-in network of the scaling runs: a 2-level UNet of 2 channels, patch 512."""
    import torch

    from emseg.networks.architectures import build_network, resolve_kwargs
    from emseg.networks.model_file import ModelConfig, save_model
    from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION

    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", {"channels": [2, 2], "strides": [2], "num_res_units": 0})
    save_model(path, build_network("unet", kwargs).eval(), ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 512))


def scaling(gib: list[float], workers: list[int], work: Path) -> list[dict]:
    """Each synthetic volume size through the stand-in network on each worker count; rows printed."""
    model = work / "cheap.pt"
    _cheap_model(model)
    rng = np.random.default_rng(0)
    page = rng.integers(0, 256, (SCALING_SLICE, SCALING_SLICE), dtype=np.uint8)
    rows = []
    for size in gib:
        depth = max(1, round(size * 2**30 / SCALING_SLICE**2))
        volume = work / f"synthetic_{size}gib.ome.zarr"
        started = time.perf_counter()
        # rolled copies of one noise slice: every slice differs, and writing stays fast
        _write_ome(volume, (np.roll(page, 7 * z, axis=1) for z in range(depth)), (depth, SCALING_SLICE, SCALING_SLICE), np.uint8)
        print(f"wrote {volume} ({depth} slices) in {time.perf_counter() - started:.0f} s", flush=True)
        for n in workers:
            out = work / f"out_{size}_{n}"
            measured = run_measured(_emseg(
                "predict", str(volume), "--model", str(model), "--out", str(out), "--outputs", "membrane", "--quiet",
                "--overlap", "0", "--block-size", "4096", *(["--workers", str(n)] if n else []),
            ))
            mpix = depth * SCALING_SLICE**2 / 1e6
            rows.append({"gib": size, "slices": depth, "workers": n or "in-process", **measured, "mpix_per_s": mpix / measured["seconds"]})
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(out)
        shutil.rmtree(volume)
    return rows


def parse_args() -> argparse.Namespace:
    """The command line; ``--quick`` replaces the sizes with tiny ones."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("equivalence", "scaling", "all"))
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--blocks", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--mosaic", type=int, default=0, help="equivalence: mirror each slice into 2x2 this many times (1: 1024^2)")
    parser.add_argument("--gib", type=float, nargs="+", default=[1, 4, 16])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="scaling: worker counts (0: in-process)")
    parser.add_argument("--engines", type=int, nargs="+", default=[0, 1, 2], help="equivalence: Dask worker counts of the volume runs (0: in-process)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="2 slices, blocks of 256 in-process and on 2 workers, a 0.02 GiB volume in-process (~1 min)")
    args = parser.parse_args()
    if args.quick:
        args.slices, args.blocks, args.gib, args.workers, args.engines = 2, [256], [0.02], [0], [0, 2]
    return args


def measure_parts(args: argparse.Namespace, result: dict) -> None:
    """The parts asked for, into ``result``, in a scratch folder removed afterwards."""
    work = Path(tempfile.mkdtemp(dir=args.work))
    try:
        if args.part in ("equivalence", "all"):
            result["equivalence"] = equivalence(args.slices, args.blocks, work, tuple(n or None for n in args.engines), args.mosaic)
        if args.part in ("scaling", "all"):
            result["scaling"] = scaling(args.gib, args.workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Run the parts asked for, each row printed as JSON as it comes; all of them written with ``--json``."""
    args = parse_args()
    from emseg.runtime.machine import machine_info, machine_line

    info = machine_info()
    print(f"machine: {machine_line(info)}", flush=True)
    result: dict = {"command": "python benchmarks/bench_volume.py " + " ".join(sys.argv[1:]), "machine": info}
    measure_parts(args, result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
