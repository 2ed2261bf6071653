"""Stage choose_step (final/dvc.yaml): the training step a model trained on every labelled slice stops at.

Such a model has no validation block to keep its best step, so the cross-validation's folds choose
it together: the step of the highest mean validation V_rand over their training runs
([`pooled_step`][emseg.evaluation.crossval.pooled_step]); no test block counts.
"""

from emseg.cli.stage import run_stage, stage_parser
from emseg.evaluation.crossval import pooled_step
from emseg.io.atomic import write_json

parser = stage_parser("choose_step", __doc__, out="the chosen step's file to write (JSON)")
parser.add_argument("--folds", required=True, help="folder of the cross-validation folds (cv/folds)")


def body(args, params):
    chosen = pooled_step(args.folds, params.cv.folds)
    write_json(args.out, chosen)
    own = ", ".join(f"{fold}: {step}" for fold, step in chosen["per_fold_best"].items())
    print(f"step {chosen['step']} of {params.train.steps}: mean validation V_rand {chosen['v_rand']:.4f} over the folds (their own best steps {own})")


if __name__ == "__main__":
    run_stage(parser, body)
