"""Volume cells against slice cells: the block path's stitched cells scored as the in-memory path's.

ISBI slices 25-29 of the training stack, with their labels (held out of the previous bundled
model's training; today's bundled model trained on every slice, which leaves the comparison of
the two paths on the same pixels as it was, but not the scores' meaning as held-out figures)
are segmented twice by `emseg predict` with the same cell method: read whole as a TIFF (the
in-memory path), and as an OME-Zarr volume block by block at each `--blocks` size (cells
drawn on each block with its halo, joined across block borders). For each run: cell V_rand
of the stack against the labels (the challenge's scorer on the cells' map), its difference
to the in-memory run, the share of pixels whose cell agrees once cells are matched, how many
cells each has, and the wall time of the whole command.

    python benchmarks/bench_volume_cells.py --cells gasp --blocks 128 256 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ISBI = REPO.parent / "shared" / "isbi2012"
#: the previous bundled model's held-out slices: the pixels both paths segment
HELD_OUT = range(25, 30)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of pixels whose cell in `a` is, in `b`, the cell it overlaps most (per slice)."""
    agreeing = 0
    for x, y in zip(a, b):
        pairs, counts = np.unique(np.stack([x.ravel(), y.ravel()]), axis=1, return_counts=True)
        best: dict[int, int] = {}
        for (label, _), n in zip(pairs.T.tolist(), counts.tolist()):
            best[label] = max(best.get(label, 0), n)
        agreeing += sum(best.values())
    return agreeing / a.size


def _cell_v_rand(labels: np.ndarray, cells: np.ndarray) -> float:
    from emseg.evaluation.metrics import score
    from emseg.segmentation.methods import cell_map

    return float(score(labels, np.stack([cell_map(c) for c in cells]), [0.5], workers=1).v_rand)


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emseg.cli.main", *argv], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", default="gasp", help="the cell method of both paths (default %(default)s)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import tifffile

    from emseg.inference.volume import omezarr
    from emseg.io.images import read_stack
    from emseg.runtime.machine import machine_info

    raw = read_stack(ISBI / "train-volume.tif")[list(HELD_OUT)]
    labels = read_stack(ISBI / "train-labels.tif")[list(HELD_OUT)]
    common = ["--quiet", "--outputs", "cells", "--cells", args.cells]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        tifffile.imwrite(work / "held_out.tif", raw)
        seconds = _timed(["predict", str(work / "held_out.tif"), "--out", str(work / "flat"), *common])
        whole = read_stack(work / "flat" / "held_out_cells.tif")
        reference = _cell_v_rand(labels, whole)
        rows.append({"path": "in memory", "block": None, "seconds": seconds, "cell_v_rand": reference, "cells": int(sum(len(np.unique(c[c > 0])) for c in whole))})
        omezarr.create_ome_zarr(work / "held_out.ome.zarr", raw.shape, raw.dtype, 128, (50.0, 4.0, 4.0), "nanometer")
        omezarr.open_level(work / "held_out.ome.zarr", 0)[:] = raw
        for block in args.blocks:
            out = work / f"blocks{block}"
            seconds = _timed(["predict", str(work / "held_out.ome.zarr"), "--out", str(out), "--block-size", str(block), *common])
            cells = np.asarray(omezarr.open_level(out / "held_out_cells.ome.zarr", 0, mode="r")[:])
            v_rand = _cell_v_rand(labels, cells)
            rows.append({
                "path": "volume", "block": block, "seconds": seconds, "cell_v_rand": v_rand, "difference": v_rand - reference,
                "agreement": min(_agreement(cells, whole), _agreement(whole, cells)),
                "cells": int(sum(len(np.unique(c[c > 0])) for c in cells)),
            })
    for row in rows:
        print(json.dumps(row))
    if args.json:
        report = {"command": " ".join(["python", "benchmarks/bench_volume_cells.py", *sys.argv[1:]]), "machine": machine_info(),
                  "slices": list(HELD_OUT), "cells": args.cells, "rows": rows}
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
