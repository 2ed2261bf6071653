"""emseg.evaluation.score_names: the names the evaluate stage writes are the ones its readers ask for."""

from __future__ import annotations

import json

from emseg.evaluation.score_names import COMPARED, SEGMENTED_KEYS, VALIDATED_KEYS, at_validated, of_cells

from conftest import REPO_ROOT


def test_the_names_are_built_the_way_the_committed_results_spell_them() -> None:
    assert at_validated("v_rand") == "v_rand_at_val_threshold" and of_cells("v_info") == "segment_v_info"


def test_every_compared_score_is_in_the_committed_evaluate_run_and_the_cross_validation_table() -> None:
    """`emseg compare`'s defaults and the aggregate stage's keys are what the evaluate stage wrote in this repository."""
    metrics = json.loads((REPO_ROOT / "metrics" / "evaluate.json").read_text())
    rows = json.loads((REPO_ROOT / "cv" / "per_slice.json").read_text())
    assert set(COMPARED) <= set(metrics) and all(set(COMPARED) <= set(row) for row in rows)
    assert {at_validated(k) for k in VALIDATED_KEYS} | {of_cells(k) for k in SEGMENTED_KEYS} <= set(metrics)
