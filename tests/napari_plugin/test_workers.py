"""emseg.napari_plugin.workers: runs on a worker thread, their progress, cancel and one-line notifications."""

from __future__ import annotations

import threading

import pytest

from emseg.errors import Cancelled, EmsegError
from emseg.napari_plugin.workers import Progress, RunPanel, notify_error


def test_progress_counts_until_cancel_is_pressed() -> None:
    progress = Progress(10)
    progress.advance(3)
    progress.set(4, 8, "step 4/8")
    assert (progress.done, progress.total, progress.text) == (4, 8, "step 4/8") and "left" in progress.eta_text()
    progress.cancelled.set()
    with pytest.raises(Cancelled):
        progress.advance()
    with pytest.raises(Cancelled):
        progress.set(5, 8)


def test_an_error_is_one_line(notes) -> None:
    notify_error(EmsegError("x.tif: not an image"), "segmentation")
    notify_error(ValueError("bad value\nsecond line"), "fine-tune")
    assert notes == [("show_error", "emseg segmentation: x.tif: not an image"), ("show_error", "emseg fine-tune failed: ValueError: bad value")]


def test_the_work_runs_on_a_worker_and_its_result_on_the_gui_thread(qtbot, wait_for, notes) -> None:
    panel = RunPanel("Run", "test run")
    threads: dict[str, str] = {}

    def work(progress: Progress) -> int:
        threads["work"] = threading.current_thread().name
        progress.set(1, 1)
        return 42

    results: list[int] = []

    def done(result: int) -> list:
        results.append(result)
        threads["done"] = threading.current_thread().name
        return [lambda: threads.setdefault("step", threading.current_thread().name)]  # a step for the next turn of the event loop

    panel.start(work, done)
    assert not panel.run_button.enabled and panel.cancel_button.enabled
    assert panel.start(work, results.append) is None  # one run at a time
    wait_for(panel)
    assert results == [42] and threads["done"] == threads["step"] == "MainThread" and threads["work"] != "MainThread"
    assert panel.run_button.enabled and not panel.cancel_button.enabled
    assert notes == [("show_info", "emseg test run is already running")]


def test_a_failing_run_says_so_and_calls_nothing(qtbot, wait_for, notes) -> None:
    panel = RunPanel("Run", "test run")
    results: list[object] = []

    def work(progress: Progress) -> None:
        raise EmsegError("model.pt: not an emseg model file")

    panel.start(work, results.append)
    wait_for(panel)
    assert not results and panel.status.value == "test run: failed"
    assert notes == [("show_error", "emseg test run: model.pt: not an emseg model file")]


def test_the_results_status_line_is_not_overwritten_by_the_progress(qtbot, wait_for) -> None:
    import time

    panel = RunPanel("Run", "test run")

    def work(progress: Progress) -> int:
        time.sleep(0.5)  # long enough for the progress display to tick
        return 1

    def done(result: int) -> list:
        # the status line set between slow steps: the progress display's timer comes due during each
        return [lambda: time.sleep(0.3), lambda: setattr(panel.status, "value", "test run: done"), lambda: time.sleep(0.3)]

    panel.start(work, done)
    wait_for(panel)
    qtbot.wait(400)
    assert panel.status.value == "test run: done"
