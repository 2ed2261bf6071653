"""Stage model (final/dvc.yaml): the final model file, the network trained on every labelled slice (up to the step the
cross-validation folds chose) with the cell step and threshold that they chose on their validation blocks, and the
cross-validated figures beside it.
"""

from emseg.cli.stage import run_stage, stage_parser
from emseg.evaluation.crossval import pooled_cell_step, pooled_threshold
from emseg.io.atomic import read_json, write_json
from emseg.networks.model_file import with_cell_step

parser = stage_parser("final", __doc__, "model", "metrics", out="the final model file to write")
parser.add_argument("--step", required=True, help="the training step the folds chose (stages/choose_step.py wrote it)")
parser.add_argument("--folds", required=True, help="folder of the cross-validation folds (cv/folds)")
parser.add_argument("--cv-metrics", required=True, help="the cross-validation's aggregate figures (cv/metrics.json)")


def body(args, params):
    folds = params.cv.folds
    cells = pooled_cell_step(args.folds, folds)
    threshold = pooled_threshold(args.folds, folds)
    cross_validated = read_json(args.cv_metrics)
    figures = {key: cross_validated[key] for key in ("slices", "folds", "confidence")}
    figures |= {"cells": cross_validated["segmented"], "validated": cross_validated["validated"]}
    info = {"trained_on": "every labelled slice", "cross_validated": figures}
    step = read_json(args.step)  # read before anything is written
    with_cell_step(args.model, args.out, cells, info, val_threshold=threshold)
    write_json(args.metrics, {"step": step, "cell_step": cells, "val_threshold": threshold, "cross_validated": info["cross_validated"]})
    figure = cross_validated["segmented"]["v_rand"]
    print(f"final model {args.out}: cells {cells['method']} {cells['settings']} (mean validation V_rand {cells['v_rand']:.4f}), "
          f"threshold {threshold:g}; cross-validated cells V_rand {figure['mean']:.4f} [{figure['ci_low']:.4f}, {figure['ci_high']:.4f}]")


if __name__ == "__main__":
    run_stage(parser, body)
