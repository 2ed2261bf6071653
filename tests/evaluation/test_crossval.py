"""emseg.evaluation.crossval: the folds' tables as one over every slice, and its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg.config.layout import cv_fold_file
from emseg.config.params import CVParams
from emseg.errors import EmsegError
from emseg.evaluation.crossval import collect, summarise
from emseg.io.atomic import write_json
from emseg.preprocessing.split import cv_split

PARAMS = CVParams(folds=[0, 1], val_size=1, resamples=200)


def _write_fold(root: Path, fold: int, test: list[int], score: float, threshold: float = 0.3) -> None:
    write_json(cv_fold_file(root, fold, "split"), {"fold": fold, **cv_split(8, PARAMS, fold), "test": test})
    rows = [
        {"slice": s, "v_rand": score + 0.01, "v_info": score, "v_rand_at_val_threshold": score,
         "v_info_at_val_threshold": score, "pixel_error_at_val_threshold": 1 - score}
        for s in test
    ]
    write_json(cv_fold_file(root, fold, "per_slice"), rows)
    metrics = {"v_rand": score + 0.01, "v_info": score, "pixel_error": 1 - score, "threshold": 0.5, "val_threshold": threshold,
               **{f"{k}_at_val_threshold": v for k, v in (("v_rand", score), ("v_info", score), ("pixel_error", 1 - score))}}
    write_json(cv_fold_file(root, fold, "metrics"), metrics)


def test_folds_become_one_table_and_slice_weighted_figures(tmp_path: Path) -> None:
    _write_fold(tmp_path, 0, [0, 1, 2, 3], 0.9)
    _write_fold(tmp_path, 1, [4, 5, 6, 7], 0.8, threshold=0.4)
    rows, metrics = collect(tmp_path, PARAMS)
    assert [row["slice"] for row in rows] == list(range(8)) and [row["fold"] for row in rows] == [0] * 4 + [1] * 4
    summary = summarise(rows, metrics, PARAMS)
    assert summary["slices"] == 8 and summary["folds"] == 2
    v_rand = summary["validated"]["v_rand"]
    assert v_rand["mean"] == pytest.approx(0.85) and v_rand["per_fold"] == {"0": 0.9, "1": 0.8}
    assert v_rand["ci_low"] <= 0.85 <= v_rand["ci_high"]
    assert summary["challenge"]["v_rand"]["mean"] == pytest.approx(0.86)
    assert summary["threshold"] == {"validated": {"0": 0.3, "1": 0.4}, "challenge": {"0": 0.5, "1": 0.5}}


def test_folds_that_do_not_test_every_slice_once_are_refused(tmp_path: Path) -> None:
    _write_fold(tmp_path, 0, [0, 1, 2, 3], 0.9)
    _write_fold(tmp_path, 1, [3, 4, 5, 6], 0.8)
    with pytest.raises(EmsegError, match="do not cover the labelled slices exactly once"):
        collect(tmp_path, PARAMS)


def test_a_table_that_is_not_the_folds_test_block_is_refused(tmp_path: Path) -> None:
    _write_fold(tmp_path, 0, [0, 1, 2, 3], 0.9)
    write_json(cv_fold_file(tmp_path, 0, "per_slice"), [{"slice": 0}])
    with pytest.raises(EmsegError, match="per_slice.json: its slices are not the test slices of fold 0"):
        collect(tmp_path, PARAMS)


def _segment(tmp_path: Path, fold: int, method: str, scores: list[float]) -> None:
    tried = [{"settings": {"beta": beta}, "v_rand": v} for beta, v in zip((0.3, 0.4, 0.5), scores)]
    best = max(tried, key=lambda t: t["v_rand"])
    write_json(cv_fold_file(tmp_path, fold, "segment"), {"method": method, "settings": best["settings"], "val_v_rand": best["v_rand"], "tried": tried})


def test_the_pooled_cell_step_is_the_best_mean_over_the_folds_validation_blocks(tmp_path: Path) -> None:
    from emseg.evaluation.crossval import pooled_cell_step, pooled_threshold

    _segment(tmp_path, 0, "gasp", [0.90, 0.95, 0.80])  # fold 0 alone would take beta 0.4
    _segment(tmp_path, 1, "gasp", [0.96, 0.85, 0.96])  # fold 1 alone 0.3 (first of the equal ones)
    _segment(tmp_path, 2, "gasp", [0.95, 0.94, 0.70])
    pooled = pooled_cell_step(tmp_path, [0, 1, 2])
    assert pooled["method"] == "gasp" and pooled["settings"] == {"beta": 0.3}
    assert pooled["v_rand"] == pytest.approx((0.90 + 0.96 + 0.95) / 3) and pooled["per_fold"] == {"0": 0.90, "1": 0.96, "2": 0.95}
    for fold, threshold in enumerate((0.4, 0.6, 0.5)):
        write_json(cv_fold_file(tmp_path, fold, "metrics"), {"val_threshold": threshold})
    assert pooled_threshold(tmp_path, [0, 1, 2]) == 0.5
    _segment(tmp_path, 2, "mws", [0.95, 0.94, 0.70])
    with pytest.raises(EmsegError, match=r"2/segment.json: fold 2 tried another cell method or other settings than fold 0"):
        pooled_cell_step(tmp_path, [0, 1, 2])


def _val_curve(root: Path, fold: int, rows: dict[int, float]) -> None:
    path = cv_fold_file(root, fold, "val_curve")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("step\tv_rand\n" + "".join(f"{step}\t{value}\n" for step, value in rows.items()))


def test_the_pooled_step_is_the_best_mean_validation_step_over_the_folds(tmp_path: Path) -> None:
    from emseg.evaluation.crossval import pooled_step

    _val_curve(tmp_path, 0, {250: 0.90, 500: 0.97, 750: 0.95})  # fold 0 alone would stop at 500
    _val_curve(tmp_path, 1, {250: 0.91, 500: 0.93, 750: 0.96})  # fold 1 alone at 750
    _val_curve(tmp_path, 2, {250: 0.80, 500: 0.96, 750: 0.95})
    pooled = pooled_step(tmp_path, [0, 1, 2])
    assert pooled["step"] == 500 and pooled["v_rand"] == pytest.approx((0.97 + 0.93 + 0.96) / 3)
    assert pooled["per_fold"] == {"0": 0.97, "1": 0.93, "2": 0.96} and pooled["per_fold_best"] == {"0": 500, "1": 750, "2": 500}
    _val_curve(tmp_path, 0, {250: 0.5, 500: 0.75, 750: 0.5})
    _val_curve(tmp_path, 1, {250: 0.5, 500: 0.5, 750: 0.75})  # 500 and 750 tie on the mean: the earlier step
    assert pooled_step(tmp_path, [0, 1])["step"] == 500


def test_the_pooled_step_names_a_missing_or_mismatched_table(tmp_path: Path) -> None:
    from emseg.evaluation.crossval import pooled_step

    _val_curve(tmp_path, 0, {250: 0.90, 500: 0.97})
    with pytest.raises(EmsegError, match=r"1/dvclive/plots/metrics/val/v_rand.tsv: missing"):
        pooled_step(tmp_path, [0, 1])
    _val_curve(tmp_path, 1, {300: 0.90, 500: 0.97})
    with pytest.raises(EmsegError, match=r"v_rand.tsv: fold 1 validated at other steps than fold 0"):
        pooled_step(tmp_path, [0, 1])
    cv_fold_file(tmp_path, 1, "val_curve").write_text("step\tdice\n250\t0.5\n")
    with pytest.raises(EmsegError, match=r"v_rand.tsv: not a table of step and v_rand columns"):
        pooled_step(tmp_path, [0, 1])
