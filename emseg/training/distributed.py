"""Training on several processes: PyTorch's `DistributedDataParallel`, launched by torchrun.

`train.processes` > 1 makes the train stage start itself again under torchrun's own
launcher (`torch.distributed.run --standalone --nproc-per-node N`, see
[`launch`][emseg.training.distributed.launch]), so that `dvc repro` and `dvc exp run` run it
with an unchanged command; a stage already started by torchrun (a multi-node run,
`torchrun --nnodes ... --rdzv-endpoint ...`) joins that job instead
([`join`][emseg.training.distributed.join]). CUDA runs one GPU per process over NCCL; the
CPU runs over gloo.

Rank 0 does everything that happens once: validation, the choice of the best model, the
model file, dvclive and the checkpoint; the other ranks wait for it at a barrier.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from emseg.config.params import TrainParams
from emseg.errors import EmsegError, Terminated
from emseg.runtime.device import select_device

#: what torchrun sets in each worker's environment
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")

#: the exit status of a worker whose collective broke because another rank died (EX_TEMPFAIL)
PEER_LOST_STATUS = 75
#: the exit statuses of a worker that torchrun stopped, or that another rank's failure stopped
STOPPED_STATUSES = (-signal.SIGTERM, 128 + signal.SIGTERM, PEER_LOST_STATUS)

#: how long a rank waits for the others at a barrier or a collective; validation on rank 0 is far shorter
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the training job; `world_size` 1 is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process does what happens once (validation, logging, files)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether the job has more than one process."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to wait for in a single process)."""
        if self.distributed:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """`value` of every rank, in rank order (`[value]` alone in a single process)."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


SINGLE_PROCESS = ProcessGroup()


def under_torchrun() -> bool:
    """Whether this process is a torchrun worker."""
    return all(name in os.environ for name in TORCHRUN_ENV)


def needs_launch(processes: int) -> bool:
    """Whether the train stage must first start `processes` workers under torchrun."""
    return processes > 1 and not under_torchrun()


def rank_seed(seed: int, rank: int) -> int:
    """The patch stream's seed of `rank`.

    Rank 0 keeps `seed`, so that one process samples as always; the others get streams of
    their own, derived from it.
    """
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def check_processes(params: TrainParams, world_size: int | None = None) -> torch.device:
    """The device of a run on `params.processes` processes per node, checked.

    Args:
        params: The `train` block.
        world_size: All nodes' processes (default: `params.processes`); it must divide
            `train.batch_size`, the global batch.

    Raises:
        EmsegError: One line naming the key: more processes than GPUs on CUDA, or a batch
            that does not split evenly over the processes.
    """
    device = select_device(params.device)
    world_size = world_size or params.processes
    if device.type == "cuda" and params.processes > torch.cuda.device_count():
        raise EmsegError(
            f"params train.processes: {params.processes} processes on CUDA need as many GPUs, "
            f"this machine has {torch.cuda.device_count()}"
        )
    if params.batch_size % world_size:
        raise EmsegError(
            f"params train.batch_size: {params.batch_size} patches cannot be split evenly over "
            f"{world_size} processes (train.processes {params.processes}); make it a multiple"
        )
    return device


def threads_per_process(processes: int) -> int:
    """The CPU cores of this machine shared out over `processes` workers (at least one each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // processes)


def launch(params: TrainParams, argv: Sequence[str]) -> None:
    """Run the script `argv` (`sys.argv`) on `params.processes` workers of a standalone torchrun job.

    Returns when every worker has finished. A worker that fails or is killed stops the others
    (torchrun's own behaviour); the checkpoint they left resumes the run when it is started
    again.

    Raises:
        EmsegError: A worker failed: one line naming it (see
            [`describe_failure`][emseg.training.distributed.describe_failure]).
        KeyboardInterrupt: The launcher got SIGINT.
        Terminated: The launcher got another signal.
    """
    check_processes(params)
    # each worker computes on its share of the cores (torchrun would give each one thread)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_process(params.processes)))
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun's agent logs its own account of a failure; the line raised below is the one to read
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={params.processes}", *argv])
    try:
        run(args)
    except ChildFailedError as exc:
        raise EmsegError(describe_failure(exc.failures, params.processes)) from None
    except SignalException as exc:
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise Terminated() from None


def describe_failure(failures: dict[int, Any], processes: int) -> str:
    """One line for torchrun's failed workers (`ChildFailedError.failures`: rank -> `ProcessFailure`).

    It names the worker that failed first: not one that torchrun stopped with SIGTERM, or
    whose collective broke because another had failed
    (see [`worker_exits`][emseg.training.distributed.worker_exits]).
    """
    rank = min((r for r, failure in failures.items() if failure.exitcode not in STOPPED_STATUSES), default=min(failures))
    code = failures[rank].exitcode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    return (
        f"train: rank {rank} of {processes} processes {how}; torchrun stopped the others. "
        "Run it again to resume from the last checkpoint"
    )


@contextmanager
def worker_exits() -> Iterator[None]:
    """In a torchrun worker, leave without a traceback when torchrun stops this rank or another rank dies.

    A SIGTERM from torchrun exits with 128 + SIGTERM; a collective that breaks because another
    rank died exits with `PEER_LOST_STATUS`. The launcher's one line names the rank that failed.
    Outside torchrun the block runs unchanged.
    """
    if not under_torchrun():
        yield
        return
    try:
        yield
    except Terminated:
        sys.exit(128 + signal.SIGTERM)
    except RuntimeError as exc:
        if isinstance(exc, dist.DistError) or any(word in str(exc) for word in ("gloo", "NCCL", "Connection reset", "Connection closed")):
            sys.exit(PEER_LOST_STATUS)
        raise


def join(params: TrainParams) -> ProcessGroup:
    """This torchrun worker's process group (NCCL on CUDA, gloo on CPU); `SINGLE_PROCESS` outside torchrun.

    Raises:
        EmsegError: torchrun started another number of processes on this node than
            `train.processes`, or [`check_processes`][emseg.training.distributed.check_processes]
            refuses the run.
    """
    if not under_torchrun():
        return SINGLE_PROCESS
    rank, world_size, local_rank = (int(os.environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    local_world_size = int(os.environ["LOCAL_WORLD_SIZE"])
    if local_world_size != params.processes:
        raise EmsegError(
            f"params train.processes: {params.processes}, but torchrun started {local_world_size} processes "
            "on this node (--nproc-per-node must equal train.processes)"
        )
    device = check_processes(params, world_size)
    if world_size == 1:
        return SINGLE_PROCESS
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    return ProcessGroup(rank, world_size, local_rank)


def leave(group: ProcessGroup) -> None:
    """Leave the process group that [`join`][emseg.training.distributed.join] joined, if any."""
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """The GPU of this rank (its local rank) on CUDA; the CPU as it is."""
    if device.type == "cuda" and group.distributed:
        return torch.device("cuda", group.local_rank)
    return device


class HeadsForward(nn.Module):
    """A network whose `forward` is its `forward_heads`, so that DDP's gradient hooks see the training call."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every head's prediction, the main one first (the wrapped network's `forward_heads`)."""
        return self.network.forward_heads(x)


def data_parallel(network: nn.Module, group: ProcessGroup, device: torch.device) -> nn.Module:
    """`network`'s training call wrapped in `DistributedDataParallel`, which averages the gradients over the ranks."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(HeadsForward(network), device_ids=[device.index] if device.type == "cuda" else None)
