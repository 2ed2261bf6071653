"""benchmarks/arch_table.py: the parts that read `dvc exp show` and dvclive logs."""

from __future__ import annotations

import pytest

from conftest import load_benchmark

arch_table = load_benchmark("arch_table")


def test_training_seconds_sums_the_logged_windows() -> None:
    # 25 steps of batch 4 at 50 patches/s = 2 s, then 25 more at 100 patches/s = 1 s
    seconds, rate = arch_table.training_seconds("step\tpatches_per_s\n25\t50.0\n50\t100.0\n", batch_size=4)
    assert seconds == pytest.approx(3.0)
    assert rate == pytest.approx(200 / 3.0)


def test_training_seconds_refuses_an_empty_log() -> None:
    with pytest.raises(ValueError):
        arch_table.training_seconds("step\tpatches_per_s\n", batch_size=4)


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
    found = arch_table.experiments_with_prefix(table, "cmp-")
    assert sorted(found) == ["cmp-segresnet", "cmp-unet"]
    assert found["cmp-unet"]["rev"] == "r1"


def test_markdown_sorts_by_test_v_rand() -> None:
    rows = [
        {"arch": "a", "parameters": 1_500_000, "train_minutes": 2.0, "patches_per_s": 10.0, "step_seconds": None, "mpix_per_s": None,
         "best_val_v_rand": 0.9, "v_rand": 0.95, "v_info": 0.96, "pixel_error": 0.05},
        {"arch": "b", "parameters": 500_000, "train_minutes": 3.0, "patches_per_s": 8.0, "step_seconds": 0.1234, "mpix_per_s": 1.234,
         "best_val_v_rand": None, "v_rand": 0.97, "v_info": 0.97, "pixel_error": 0.04},
    ]
    lines = arch_table.markdown(rows).splitlines()
    assert lines[2].startswith("| b | 0.50 M | 3.0 | 8.0 | 0.123 | 1.23 | - | 0.9700")
    assert lines[3].startswith("| a | 1.50 M |")


def test_step_seconds_times_a_real_training_step() -> None:
    tiny = {"channels": [4, 8], "strides": [2], "num_res_units": 1}
    assert 0.0 < arch_table.step_seconds("unet", tiny, batch=2, patch=32, threads=1) < 60.0
