"""The engines that run block tasks: this process, or Dask."""

from __future__ import annotations

import pytest

from emseg.errors import EmsegError
from emseg.inference.volume.engine import InProcess, connect, make_engine


def _square(x: int) -> int:
    return x * x


def test_in_process_runs_every_task_in_order() -> None:
    assert list(InProcess().map(_square, [3, 1, 2])) == [9, 1, 4]


@pytest.mark.parametrize(
    "workers, scheduler, message",
    [(2, "tcp://127.0.0.1:9", "not both"), (0, None, "--workers must be at least 1"), (-1, None, "--workers must be at least 1")],
)
def test_impossible_engines_are_refused(workers, scheduler, message) -> None:
    with pytest.raises(EmsegError, match=message):
        make_engine(workers, scheduler)


def test_no_cluster_asked_for_is_this_process() -> None:
    assert isinstance(make_engine(None, None), InProcess)


def test_a_scheduler_that_does_not_answer_names_its_address() -> None:
    with pytest.raises(EmsegError, match=r"--scheduler tcp://127\.0\.0\.1:9: no Dask scheduler answered within 1 s"):
        connect("tcp://127.0.0.1:9", timeout_s=1)
