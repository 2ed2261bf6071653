"""`emseg compare`: constructed tables whose answer is known, every kind of source, and bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from emseg.cli.main import main

SLICES = list(range(30))


def _table(path: Path, validated: np.ndarray, **extra: np.ndarray) -> Path:
    rows = [{"slice": s, "v_rand_at_val_threshold": float(v), **{k: float(x[s]) for k, x in extra.items()}} for s, v in zip(SLICES, validated)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["compare", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


BASE = np.random.default_rng(0).uniform(0.95, 0.99, 30)


@pytest.mark.parametrize(
    ("b", "verdict"),
    [
        (BASE, "not distinguishable"),  # identical
        (BASE + 0.003 + np.random.default_rng(1).normal(0, 0.0003, 30), "better"),  # shifted up
        (BASE - 0.003 + np.random.default_rng(2).normal(0, 0.0003, 30), "worse"),  # shifted down
        (BASE + np.random.default_rng(3).normal(0, 0.006, 30), "not distinguishable"),  # noisy
    ],
    ids=["identical", "better", "worse", "noisy"],
)
def test_the_verdict_of_constructed_tables(b: np.ndarray, verdict: str, tmp_path: Path, capsys) -> None:
    a_path, b_path = _table(tmp_path / "a.json", BASE), _table(tmp_path / "b.json", b)
    rc, out, err = _run(capsys, a_path, b_path, "--json", tmp_path / "out.json")
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.startswith("v_rand_at_val_threshold"))
    assert line.endswith(f"B is {verdict}")
    result = json.loads((tmp_path / "out.json").read_text())["results"][0]
    assert result["verdict"] == verdict and result["difference"] == pytest.approx(float(np.mean(b - BASE)))


def test_a_folder_a_csv_file_and_a_git_revision_are_tables(tmp_path: Path, capsys) -> None:
    _table(tmp_path / "run" / "per_slice.json", BASE, v_rand=BASE)
    csv = tmp_path / "b.csv"
    csv.write_text("slice,v_rand_at_val_threshold,v_rand\n" + "".join(f"{s},{v + 0.01},{v}\n" for s, v in zip(SLICES, BASE)))
    rc, out, _ = _run(capsys, tmp_path / "run", csv)
    assert rc == 0 and "v_rand_at_val_threshold" in out and "B is better" in out and "v_rand " in out
    repo = tmp_path / "repo"
    _table(repo / "cv" / "per_slice.json", BASE)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    _table(repo / "cv" / "per_slice.json", BASE - 0.01)  # the working copy differs from the commit
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(repo)
        rc, out, err = _run(capsys, "HEAD", "cv")
    assert rc == 0, err
    assert "B is worse" in out


@pytest.mark.parametrize(
    ("b_rows", "message"),
    [
        ([{"slice": s, "v_rand_at_val_threshold": 0.9} for s in range(29)], "A and B scored different slices (30 and 29"),
        ([{"slice": s, "other": 0.9} for s in SLICES], "--metrics: (none) not in both tables"),
    ],
    ids=["different_slices", "no_common_score"],
)
def test_tables_that_cannot_be_paired_are_one_error_and_nothing_written(b_rows: list, message: str, tmp_path: Path, capsys) -> None:
    a_path = _table(tmp_path / "a.json", BASE)
    (tmp_path / "b.json").write_text(json.dumps(b_rows))
    rc, out, err = _run(capsys, a_path, tmp_path / "b.json", "--json", tmp_path / "out.json")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"emseg: error: {message}")
    assert not (tmp_path / "out.json").exists()


def test_an_unknown_score_and_an_unknown_source_are_one_error(tmp_path: Path, capsys) -> None:
    a_path = _table(tmp_path / "a.json", BASE)
    rc, _, err = _run(capsys, a_path, a_path, "--metrics", "v_rnad")
    assert rc == 2 and err.startswith("emseg: error: --metrics: v_rnad not in both tables")
    rc, _, err = _run(capsys, a_path, "no-such-run")
    assert rc == 2 and err.strip() == "emseg: error: no-such-run: no such file or folder, and no git revision or dvc experiment holding cv/per_slice.json"


def test_the_finished_folds_of_a_running_cross_validation_against_the_same_slices_of_a_whole_run(tmp_path: Path, capsys) -> None:
    whole = _table(tmp_path / "whole.json", BASE)
    shifted = BASE + 0.003 + np.random.default_rng(4).normal(0, 0.0003, 30)
    for fold, slices in ((0, range(6)), (1, range(6, 12))):  # two of five folds finished
        rows = [{"slice": s, "v_rand_at_val_threshold": float(shifted[s])} for s in slices]
        (tmp_path / "folds" / str(fold) / "plots").mkdir(parents=True)
        (tmp_path / "folds" / str(fold) / "plots" / "per_slice.json").write_text(json.dumps(rows))
    rc, _, err = _run(capsys, whole, tmp_path / "folds")
    assert rc == 2 and "A and B scored different slices (30 and 12" in err
    rc, out, _ = _run(capsys, whole, tmp_path / "folds", "--common", "--json", tmp_path / "out.json")
    assert rc == 0 and "the 12 slices both hold" in out and "B is better" in out
    result = json.loads((tmp_path / "out.json").read_text())["results"][0]
    assert result["slices"] == 12 and result["difference"] == pytest.approx(float(np.mean(shifted[:12] - BASE[:12])))


def test_more_seeds_average_each_slices_difference_before_the_verdict(tmp_path: Path, capsys) -> None:
    # seed 1 shows a gain, seed 2 the same loss slice by slice: one seed alone says better, both say nothing
    gain = BASE + 0.003 + np.random.default_rng(5).normal(0, 0.0003, 30)
    other_base = BASE + np.random.default_rng(6).normal(0, 0.002, 30)
    loss = other_base - (gain - BASE)
    a1, b1 = _table(tmp_path / "a1.json", BASE), _table(tmp_path / "b1.json", gain)
    a2, b2 = _table(tmp_path / "a2.json", other_base), _table(tmp_path / "b2.json", loss)
    rc, out, _ = _run(capsys, a1, b1)
    assert rc == 0 and "B is better" in out
    rc, out, _ = _run(capsys, a1, b1, "--pair", a2, b2, "--json", tmp_path / "out.json")
    assert rc == 0 and "averaged over the 2 pairs" in out and "B is not distinguishable" in out
    result = json.loads((tmp_path / "out.json").read_text())["results"][0]
    expected = float(np.mean(((gain - BASE) + (loss - other_base)) / 2))
    assert result["pairs"] == 2 and result["difference"] == pytest.approx(expected)
    assert result["a"] == pytest.approx(float(np.mean((BASE + other_base) / 2)))
    # a pair of other slices is one line, nothing written
    short = tmp_path / "short.json"
    short.write_text(json.dumps([{"slice": s, "v_rand_at_val_threshold": 0.9} for s in range(12)]))
    rc, _, err = _run(capsys, a1, b1, "--pair", short, short, "--json", tmp_path / "bad.json")
    assert rc == 2 and err.count("\n") == 1 and "--pair 2: its tables score other slices" in err and not (tmp_path / "bad.json").exists()
