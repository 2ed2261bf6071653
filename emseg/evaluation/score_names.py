"""The names of the scores in `metrics/evaluate.json` and the per-slice tables.

The evaluate stage writes them; the aggregate stage of the cross-validation and
`emseg compare` read them. Kept apart from [`evaluate`][emseg.evaluation.evaluate] so that
the readers depend on the names alone, not on the prediction and segmentation code.
"""

from __future__ import annotations

#: the challenge's scores, each the best over the scorer's thresholds of the scored slices themselves
CHALLENGE_KEYS = ("v_rand", "v_info", "pixel_error")
#: the scores also taken at the model's validated threshold, under these names + `AT_VAL_THRESHOLD`
VALIDATED_KEYS = ("v_rand", "v_info", "pixel_error")
AT_VAL_THRESHOLD = "_at_val_threshold"
#: the scores of the cells drawn by the segmentation method, under `SEGMENTED` + these names
SEGMENTED_KEYS = ("v_rand", "v_info")
SEGMENTED = "segment_"


def at_validated(key: str) -> str:
    """The name of score `key` taken at the model's validated threshold, e.g. `v_rand_at_val_threshold`."""
    return f"{key}{AT_VAL_THRESHOLD}"


def of_cells(key: str) -> str:
    """The name of score `key` of the segmentation method's cells, e.g. `segment_v_rand`."""
    return f"{SEGMENTED}{key}"


#: what a comparison looks at when it is not told: the cells, the map at the validated threshold, the challenge's two
COMPARED = (*(of_cells(k) for k in SEGMENTED_KEYS), *(at_validated(k) for k in VALIDATED_KEYS), "v_rand", "v_info")
