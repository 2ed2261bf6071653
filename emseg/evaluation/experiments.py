"""Reading finished DVC experiments: which ones ran to the end, and what their logs say.

`dvc exp show --json -A` lists every experiment with its params and metrics; queued and
running ones show the workspace's metrics, not their own, and are left out here.
"""

from __future__ import annotations

import csv
import io
from typing import Any

#: the metrics file whose presence marks an experiment that ran through evaluate
EVALUATE_METRICS = "metrics/evaluate.json"


def finished_experiments(table: list[dict[str, Any]], prefix: str = "") -> dict[str, dict[str, Any]]:
    """The finished experiments whose names start with `prefix`.

    Args:
        table: The output of `dvc exp show --json`.
        prefix: The start of the experiments' names.

    Returns:
        `{name: {"rev": commit, "data": the experiment's data}}`.
    """
    found: dict[str, dict[str, Any]] = {}
    for baseline in table:
        for exp in baseline.get("experiments") or []:
            rev = exp["revs"][0]
            name = exp.get("name") or rev.get("name") or ""
            data = rev.get("data") or {}
            state = (exp.get("executor") or {}).get("state", "success")
            evaluated = (data.get("metrics") or {}).get(EVALUATE_METRICS, {}).get("data")
            finished = state == "success" and data.get("rev") not in (None, "workspace") and not rev.get("error")
            if name.startswith(prefix) and evaluated and finished:
                found.setdefault(name, {"rev": rev["rev"], "data": data})
    return found


def training_seconds(tsv_text: str, batch_size: int) -> tuple[float, float]:
    """The seconds spent in logged training windows, and the overall patches per second.

    Args:
        tsv_text: dvclive's `train/patches_per_s` log (each row: a window's end step and its rate).
        batch_size: Patches per step.

    Raises:
        ValueError: The log has no rows.
    """
    rows = list(csv.DictReader(io.StringIO(tsv_text), delimiter="\t"))
    if not rows:
        raise ValueError("empty patches_per_s log")
    seconds, patches, previous = 0.0, 0, 0
    for row in rows:
        step, rate = int(row["step"]), float(row["patches_per_s"])
        window = (step - previous) * batch_size
        seconds += window / rate
        patches += window
        previous = step
    return seconds, patches / seconds
