"""Where the blocks run: in this process, or on Dask (a `LocalCluster` of processes, or a running cluster).

Dask's distributed scheduler does the scheduling, the retries of blocks whose worker
died, and the bookkeeping; emseg only hands it picklable block tasks and reads their
(small) results back as they complete. The blocks write their pixels into the output
stores themselves, so that no image data passes through the client.
[`make_engine`][emseg.inference.volume.engine.make_engine] picks the engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from emseg.errors import EmsegError

#: seconds to wait for a scheduler given with --scheduler
CONNECT_TIMEOUT_S = 10


class InProcess:
    """Runs the tasks one after the other in this process (small inputs, or no cluster asked for)."""

    workers = 1
    threads_per_worker = 0  # torch's default: one thread per core

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """`fn` of each item, in order."""
        for item in items:
            yield fn(item)

    def close(self) -> None:
        """Nothing to release."""
        pass


class DaskEngine:
    """Runs the tasks on a `dask.distributed` cluster; results come back in completion order.

    Args:
        client: The Dask client.
        cluster: The cluster this engine started (closed with it), or None for a running one.
        threads_per_worker: Torch threads per task process (0: torch's default).
    """

    def __init__(self, client: Any, cluster: Any = None, threads_per_worker: int = 1) -> None:
        self.client = client
        self.cluster = cluster
        self.threads_per_worker = threads_per_worker

    @property
    def workers(self) -> int:
        """The number of workers the scheduler knows now."""
        return len(self.client.scheduler_info()["workers"])

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[Any]:
        """`fn` of each item, run on the cluster, yielded as they complete.

        The tasks not yet finished are cancelled when the caller stops.
        """
        from distributed import as_completed

        if not items:
            return
        futures = self.client.map(fn, list(items), pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        """Close the client, and the cluster if this engine started it."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def local_cluster(workers: int) -> DaskEngine:
    """A `LocalCluster` of `workers` processes, the machine's cores shared out among them.

    Raises:
        EmsegError: `workers` is below 1.
    """
    if workers < 1:
        raise EmsegError(f"--workers must be at least 1, got {workers}")
    from distributed import Client, LocalCluster

    threads = max(1, (os.cpu_count() or 1) // workers)
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    return DaskEngine(Client(cluster), cluster, threads_per_worker=threads)


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> DaskEngine:
    """A client of the running cluster at `address` (e.g. `tcp://host:8786`).

    Raises:
        EmsegError: No scheduler answered within `timeout_s` seconds.
    """
    from distributed import Client

    try:
        client = Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise EmsegError(f"--scheduler {address}: no Dask scheduler answered within {timeout_s:g} s ({reason})") from None
    return DaskEngine(client, threads_per_worker=0)


def make_engine(workers: int | None, scheduler: str | None) -> InProcess | DaskEngine:
    """The engine `emseg predict` was asked for: `--scheduler`, else `--workers`, else this process.

    Raises:
        EmsegError: Both `--scheduler` and `--workers` were given, or the cluster cannot be
            reached or started.
    """
    if scheduler and workers is not None:
        raise EmsegError("give --scheduler (a running cluster) or --workers (a local one), not both")
    if scheduler:
        return connect(scheduler)
    if workers is not None:
        return local_cluster(workers)
    return InProcess()
