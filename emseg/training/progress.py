"""How far training has got: a progress bar on a terminal, a plain line every few percent in a log.

`dvc repro` shows the train stage's output as it comes, and training is the long part
of the pipeline: it should never sit silent for half an hour.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from tqdm import tqdm


@dataclass(frozen=True)
class TrainingStatus:
    """How far a run has got, for a listener (the napari plugin's progress bar): step, loss, validation, seconds so far and left."""

    step: int
    total: int
    loss: float
    val_v_rand: float | None
    seconds: float
    #: NaN before the first step is done
    seconds_left: float


class TrainingProgress:
    """Step, loss, the last validation V_rand and the time left, for `total` steps from `start`.

    A tqdm bar when `stream` (default: stderr) is a terminal, else one line every
    `every_percent` percent of the steps; `listener`, when given, is called with a
    [`TrainingStatus`][emseg.training.progress.TrainingStatus] at every update (it may raise
    [`Cancelled`][emseg.errors.Cancelled] to stop the run).
    """

    def __init__(
        self, total: int, start: int = 0, stream: TextIO | None = None, every_percent: float = 5.0,
        listener: Callable[[TrainingStatus], object] | None = None,
    ) -> None:
        self.total, self.start = total, start
        self.listener = listener
        self.stream = stream or sys.stderr
        self.every = max(1, round(total * every_percent / 100))
        self.began = time.perf_counter()
        self.val_v_rand: float | None = None
        self.next_line = start + self.every - start % self.every
        self.bar = tqdm(total=total, initial=start, unit="step", desc="train", file=self.stream, dynamic_ncols=True) if self._tty() else None

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, step: int, loss: float, val_v_rand: float | None = None) -> None:
        """Training has done `step` steps: its loss over the last ones, and a validation's V_rand if one ran."""
        if val_v_rand is not None:
            self.val_v_rand = val_v_rand
        if self.listener is not None:
            seconds = time.perf_counter() - self.began
            done = step - self.start
            left = seconds / done * (self.total - step) if done else float("nan")
            self.listener(TrainingStatus(step, self.total, loss, self.val_v_rand, seconds, left))
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.3f}", val_v_rand="-" if self.val_v_rand is None else f"{self.val_v_rand:.4f}", refresh=False)
        elif step >= self.next_line or step == self.total:
            self.next_line = step + self.every - step % self.every
            print(self.line(step, loss), file=self.stream, flush=True)

    def line(self, step: int, loss: float) -> str:
        """The plain progress line of `step`: step, loss, validation V_rand, minutes so far and to go."""
        elapsed = time.perf_counter() - self.began
        done = step - self.start
        left = elapsed / done * (self.total - step) if done else float("nan")
        val = "" if self.val_v_rand is None else f", val V_rand {self.val_v_rand:.4f}"
        return (
            f"train: step {step}/{self.total} ({step / self.total:.0%}), loss {loss:.3f}{val}, "
            f"{elapsed / 60:.1f} min so far, about {left / 60:.1f} min to go"
        )

    def close(self) -> None:
        """Close the progress bar, if there is one."""
        if self.bar is not None:
            self.bar.close()
