"""Long runs off the GUI thread: napari's thread workers, with a progress bar, a cancel button and one-line notifications.

The work itself is emseg's (prediction, measurements, fine-tuning); it reports progress
through a callback that may be called from the worker thread, and stops when that callback
raises [`Cancelled`][emseg.errors.Cancelled]. Errors become a napari notification naming
the problem ([`EmsegError`][emseg.errors.EmsegError]'s one line), never a traceback wall, and
a failed or cancelled run adds no layer: results are put in the viewer only by `on_done`,
on the GUI thread, once the work has returned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from emseg.errors import Cancelled, EmsegError


def notify_error(exc: BaseException, what: str) -> None:
    """One notification for a failed run: emseg's own message, or the exception's type and first line."""
    if isinstance(exc, EmsegError):
        show_error(f"emseg {what}: {exc}")
    else:
        first = str(exc).splitlines()[0] if str(exc) else ""
        show_error(f"emseg {what} failed: {type(exc).__name__}: {first}")


class Progress:
    """Thread-safe progress of one run: a callback for the work, the cancel flag, and what the bar shows."""

    def __init__(self, total: int = 0) -> None:
        self.total, self.done = total, 0
        self.cancelled = threading.Event()
        self.text = ""
        self.started = time.perf_counter()

    def advance(self, steps: int = 1) -> None:
        """`steps` more units done (called from the worker thread); raises `Cancelled` once cancel was pressed."""
        if self.cancelled.is_set():
            raise Cancelled()
        self.done += steps

    def set(self, done: int, total: int, text: str = "") -> None:
        """`done` of `total` units, with a line of text (e.g. the ETA); raises `Cancelled` once cancel was pressed."""
        if self.cancelled.is_set():
            raise Cancelled()
        self.done, self.total, self.text = done, total, text

    def eta_text(self) -> str:
        """Seconds so far and, from the rate so far, left."""
        elapsed = time.perf_counter() - self.started
        if not self.done or not self.total:
            return f"{elapsed:.0f} s"
        left = elapsed / self.done * (self.total - self.done)
        return f"{elapsed:.0f} s, about {left:.0f} s left"


class RunPanel(Container):
    """A run button, a cancel button, a progress bar and a status line; runs one job at a time on a worker thread.

    Args:
        run_text: The run button's text.
        what: What the notifications call the run ("segmentation", "fine-tune", ...).
    """

    def __init__(self, run_text: str, what: str) -> None:
        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.bar = ProgressBar(value=0, min=0, max=1, visible=False)
        self.status = Label(value="")
        super().__init__(widgets=[self.run_button, self.cancel_button, self.bar, self.status], labels=False)
        self.what = what
        self.worker: FunctionWorker | None = None
        self.progress: Progress | None = None
        self._steps: list[Callable[[], Any]] = []
        #: the work has returned or failed: the status line is the result's, no longer the progress'
        self._over = False
        self._timer_running = False
        self.cancel_button.changed.connect(self.cancel)

    @property
    def running(self) -> bool:
        """Whether a job is running."""
        return self.worker is not None

    def start(self, work: Callable[[Progress], Any], on_done: Callable[[Any], Any], progress: Progress | None = None) -> FunctionWorker | None:
        """Run `work(progress)` on a worker thread; `on_done(result)` on the GUI thread when it returns.

        `on_done` may return more steps (callables) to run on the GUI thread one per turn of
        the event loop, so that putting several big layers in the viewer never holds it for
        all of them at once; the run counts as finished after the last.

        Returns:
            The worker (tests wait for its `finished` signal), or None when one is running.
        """
        if self.worker is not None:
            show_info(f"emseg {self.what} is already running")
            return None
        self.progress = progress or Progress()  # the work may set its total once it knows it
        # the handlers given at creation: an "errored" handler there stops napari re-raising the error on the GUI thread
        connect = {"returned": lambda result: self._done(on_done, result), "errored": self._failed, "finished": self._finished}
        worker = create_worker(work, self.progress, _start_thread=False, _connect=connect)
        self.worker, self._over = worker, False
        self.run_button.enabled, self.cancel_button.enabled, self.bar.visible = False, True, True
        self.bar.value, self.status.value = 0, f"{self.what}: starting"
        worker.start()
        self._tick()
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress report."""
        if self.progress is not None:
            self.progress.cancelled.set()
            self.status.value = f"{self.what}: cancelling"

    @ensure_main_thread
    def _tick(self) -> None:
        """Show the progress on the GUI thread, every 200 ms while a job runs (the worker never touches Qt)."""
        from qtpy.QtCore import QTimer

        progress = self.progress
        if self.worker is None or progress is None or self._over:
            return
        if progress.total:
            self.bar.max = max(progress.total, 1)
            self.bar.value = min(progress.done, progress.total)
        if not progress.cancelled.is_set():
            self.status.value = f"{self.what}: {progress.text or progress.eta_text()}"
        QTimer.singleShot(200, self._tick)

    def _done(self, on_done: Callable[[Any], Any], result: Any) -> None:
        self._over = True
        try:
            self._steps = list(on_done(result) or [])
        except Exception as exc:  # putting the results in the viewer failed: say so, once
            notify_error(exc, self.what)
            self.status.value = f"{self.what}: failed"

    def _failed(self, exc: BaseException) -> None:
        self._over = True
        if isinstance(exc, Cancelled):
            show_info(f"emseg {self.what} cancelled: nothing was added")
            self.status.value = f"{self.what}: cancelled"
        else:
            notify_error(exc, self.what)
            self.status.value = f"{self.what}: failed"

    def _finished(self) -> None:
        """Run the steps `on_done` left, one per turn of the event loop; then the panel is free again."""
        from qtpy.QtCore import QTimer

        if self._steps:
            step = self._steps.pop(0)
            try:
                step()
            except Exception as exc:  # a step failed: say so once, skip the rest
                notify_error(exc, self.what)
                self.status.value = f"{self.what}: failed"
                self._steps = []
            QTimer.singleShot(0, self._finished)
            return
        self.worker = None
        self.run_button.enabled, self.cancel_button.enabled, self.bar.visible = True, False, False
