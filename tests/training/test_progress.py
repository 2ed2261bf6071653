"""emseg.training.progress: a line every few percent where the output is not a terminal."""

from __future__ import annotations

import io

from emseg.training.progress import TrainingProgress


def test_a_log_gets_a_line_every_few_percent_with_the_time_left() -> None:
    stream = io.StringIO()
    progress = TrainingProgress(100, stream=stream, every_percent=25)
    for step in range(5, 101, 5):
        progress.update(step, loss=1.0 / step, val_v_rand=0.9 if step == 50 else None)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["25/100", "50/100", "75/100", "100/100"]
    assert "val V_rand" not in lines[0] and "val V_rand 0.9000" in lines[1] and "val V_rand 0.9000" in lines[3]
    assert all("min to go" in line and "loss" in line for line in lines)


def test_a_resumed_run_counts_from_its_checkpoint() -> None:
    stream = io.StringIO()
    progress = TrainingProgress(100, start=60, stream=stream, every_percent=10)
    progress.update(70, loss=0.5)
    assert stream.getvalue().startswith("train: step 70/100 (70%)")


def test_a_listener_gets_every_update_with_the_time_left() -> None:
    import math

    seen = []
    progress = TrainingProgress(10, stream=io.StringIO(), listener=seen.append)
    progress.update(0, loss=2.0)
    progress.update(5, loss=1.0, val_v_rand=0.8)
    progress.update(6, loss=0.9)
    assert [(s.step, s.total, s.loss, s.val_v_rand) for s in seen] == [(0, 10, 2.0, None), (5, 10, 1.0, 0.8), (6, 10, 0.9, 0.8)]
    assert math.isnan(seen[0].seconds_left) and seen[2].seconds_left >= 0
