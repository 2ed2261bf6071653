"""Training logs: what the trainer logs through, and dvclive's logs of a run that resumes.

In the train stage the logger is dvclive's `Live` (loss, validation metrics, learning
rate, throughput; on CUDA the GPU memory and utilisation through its system monitor),
writing into a staging folder that replaces `dvclive/` when training completes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from dvclive import Live

from emseg.io.atomic import atomic_output


class Logger(Protocol):
    """What the trainer logs through (dvclive's `Live` is one)."""

    step: int
    summary: dict[str, Any]

    def log_metric(self, name: str, val: float) -> None:
        """Record `val` as metric `name` at the current step."""
        ...

    def next_step(self) -> None:
        """Write the current step's rows and move on to the next step."""
        ...


class SilentLogger:
    """The logger of the ranks other than 0: rank 0 logs for the whole job."""

    def __init__(self) -> None:
        self.step = 0
        self.summary: dict[str, Any] = {}

    def log_metric(self, name: str, val: float) -> None:
        """Log nothing."""
        pass

    def next_step(self) -> None:
        """Log nothing."""
        pass


def truncate_live_logs(live_dir: Path, step: int) -> None:
    """Drop the dvclive rows logged after `step`: a resumed run logs those steps again."""
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        kept = lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) <= step]
        with atomic_output(tsv) as tmp:
            tmp.write_text("\n".join(kept) + "\n")


def open_live(folder: Path, resuming: bool, monitor_system: bool) -> Live:
    """dvclive's logger, writing into `folder`.

    Args:
        folder: The (staging) folder of the logs.
        resuming: Continue the logs already there.
        monitor_system: Also log the GPU's memory and utilisation.
    """
    return Live(dir=str(folder), resume=resuming, dvcyaml=None, save_dvc_exp=False, monitor_system=monitor_system)
