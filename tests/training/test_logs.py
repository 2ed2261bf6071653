"""emseg.training.logs: dvclive's logs of a resumed run, and the silent logger of the other ranks."""

from __future__ import annotations

from pathlib import Path

from emseg.training.logs import SilentLogger, open_live, truncate_live_logs


def test_a_resumed_run_drops_the_rows_logged_after_its_checkpoint(tmp_path: Path) -> None:
    with open_live(tmp_path, resuming=False, monitor_system=False) as live:
        for step in (25, 50, 75, 100):
            live.step = step
            live.log_metric("train/loss", 1.0 / step)
            live.next_step()
    table = tmp_path / "plots" / "metrics" / "train" / "loss.tsv"
    assert [line.split("\t")[0] for line in table.read_text().splitlines()] == ["step", "25", "50", "75", "100"]
    truncate_live_logs(tmp_path, 50)
    assert [line.split("\t")[0] for line in table.read_text().splitlines()] == ["step", "25", "50"]


def test_the_silent_logger_takes_every_call_and_keeps_nothing() -> None:
    logger = SilentLogger()
    logger.log_metric("train/loss", 0.5)
    logger.next_step()
    assert logger.step == 0 and logger.summary == {}
