"""Stage aggregate (cv/dvc.yaml): the folds' per-slice scores as one table over all labelled slices, and the
cross-validated figures with their intervals."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.evaluation.crossval import collect, summarise
from emseg.io.atomic import write_json

parser = stage_parser("aggregate", __doc__, "metrics", out="per-slice table (JSON) to write")
parser.add_argument("--folds", required=True, help="folder of the folds' folders (cv/folds)")


def body(args, params):
    rows, fold_metrics = collect(args.folds, params.cv)
    metrics = summarise(rows, fold_metrics, params.cv)
    write_json(args.out, rows)
    write_json(args.metrics, metrics)
    figure = metrics["validated"]["v_rand"]
    print(
        f"cross-validated over {metrics['slices']} slices in {metrics['folds']} folds: V_rand (validated threshold) "
        f"{figure['mean']:.4f} [{figure['ci_low']:.4f}, {figure['ci_high']:.4f}], challenge V_rand {metrics['challenge']['v_rand']['mean']:.4f}"
    )


if __name__ == "__main__":
    run_stage(parser, body)
