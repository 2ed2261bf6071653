"""emseg.evaluation.experiments: reading `dvc exp show` and dvclive logs."""

from __future__ import annotations

import pytest

from emseg.evaluation.experiments import finished_experiments, training_seconds


def test_training_seconds_sums_the_logged_windows() -> None:
    # 25 steps of batch 4 at 50 patches/s = 2 s, then 25 more at 100 patches/s = 1 s
    seconds, rate = training_seconds("step\tpatches_per_s\n25\t50.0\n50\t100.0\n", batch_size=4)
    assert seconds == pytest.approx(3.0)
    assert rate == pytest.approx(200 / 3.0)


def test_training_seconds_refuses_an_empty_log() -> None:
    with pytest.raises(ValueError):
        training_seconds("step\tpatches_per_s\n", batch_size=4)


def _exp(name: str, state: str | None, rev: str, metrics: bool = True) -> dict:
    data = {"rev": rev, "metrics": {"metrics/evaluate.json": {"data": {"v_rand": 0.9}}} if metrics else {}}
    exp = {"name": name, "revs": [{"rev": rev, "name": name, "data": data, "error": None}]}
    if state is not None:
        exp["executor"] = {"state": state}
    return exp


def test_only_finished_experiments_with_the_prefix_are_kept() -> None:
    table = [{"rev": "abc", "experiments": [
        _exp("cmp-unet", "success", "r1"),
        _exp("cmp-segresnet", None, "r2"),  # run with `dvc exp run`, not the queue
        _exp("cmp-dynunet", "running", "workspace"),  # shows the workspace's metrics
        _exp("cmp-swin", "queued", "r4"),
        _exp("cmp-failed", "failed", "r5"),
        _exp("cmp-nometrics", "success", "r6", metrics=False),
        _exp("other-unet", "success", "r7"),
    ]}]
    found = finished_experiments(table, "cmp-")
    assert sorted(found) == ["cmp-segresnet", "cmp-unet"]
    assert found["cmp-unet"]["rev"] == "r1"
    assert sorted(finished_experiments(table)) == ["cmp-segresnet", "cmp-unet", "other-unet"]
