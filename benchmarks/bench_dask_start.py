"""What a volume run on Dask spends once, whatever the volume: the cluster, the workers' imports, the model, the close.

`emseg predict --workers N` starts a `LocalCluster` of N processes
(`emseg.inference.volume.engine.local_cluster`); each worker imports torch, MONAI and emseg's
block tasks when its first task arrives, and loads the model once. Those seconds are spent
once per run, so they weigh on a small volume's throughput and not on a large one's
(docs/results/volumes.md). Timed here one by one, `--repeats` times, with the same process
imports in this process for comparison:

    python benchmarks/bench_dask_start.py --workers 2 --repeats 3 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from run_all import command_line


def _imports() -> float:
    started = time.perf_counter()
    import monai  # noqa: F401
    import torch  # noqa: F401

    from emseg.inference.volume import blockwise  # noqa: F401

    return time.perf_counter() - started


def _load_model() -> float:
    started = time.perf_counter()
    from emseg.networks.model_file import load_model
    from emseg.sharing.bundled import BUNDLED_MODEL

    load_model(BUNDLED_MODEL)
    return time.perf_counter() - started


def once(workers: int) -> dict[str, float]:
    """One cluster's start, its workers' imports and model load (the slowest worker's), and its close, in seconds."""
    from emseg.inference.volume.engine import local_cluster

    started = time.perf_counter()
    engine = local_cluster(workers)
    up = time.perf_counter()
    imports = max(engine.client.run(_imports).values())
    load = max(engine.client.run(_load_model).values())
    ready = time.perf_counter()
    engine.close()
    closed = time.perf_counter()
    return {"cluster_start_s": up - started, "worker_imports_s": imports, "worker_model_load_s": load,
            "ready_s": ready - started, "close_s": closed - ready, "total_s": closed - started}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = [once(args.workers) for _ in range(args.repeats)]
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    medians["this_process_imports_s"] = _imports()  # after the runs: the first import in this process, as a CLI pays it
    for key, value in medians.items():
        print(f"{key:<24} {value:6.2f} s (median of {args.repeats})" if key != "this_process_imports_s" else f"{key:<24} {value:6.2f} s")
    if args.json:
        from emseg.runtime.machine import machine_info, machine_line

        args.json.write_text(json.dumps({"command": command_line("bench_dask_start.py", argv), "machine": machine_line(machine_info()),
                                         "workers": args.workers, "runs": runs, "medians": medians}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
