"""Another grid for the cell step, or another inference window, judged under cross-validation on a finished run's fold models.

The evaluate stage chooses the cell step's settings on each fold's validation slices from the
grid of `segment` in params.yaml (a method's list-valued settings, else its own grid). When
the folds keep choosing a setting at the grid's edge (GASP's smallest beta, say), the grid
may be cutting the optimum off. This re-runs each fold's evaluation, exactly as the stage
does (`emseg.evaluation.evaluate.evaluate`: TTA as `evaluate` says, the choice made on the
validation slices, the test slices scored), with the run's params and `-S` overrides of
`segment` keys, into the layout of a cross-validation (`OUT/folds/<k>/`), so that
`emseg compare` pairs it with the run itself: the same models, only the grid differs.

    python benchmarks/cell_grid_cv.py --run /work/cv-bestac --out OUT -S 'segment.gasp.beta=[0.1,0.2,0.3,0.4,0.5]'
    emseg compare benchmarks/results/levers/best_autocontext/folds OUT/folds

`--tile N` predicts with windows of N px instead of the training patch (`emseg predict --tile`;
512 takes a whole ISBI slice at once), the grid as the run's or as `-S` sets it.

A run is a cross-validation clone: `RUN/cv/folds/<k>/model.pt` and `split.json`, the slices
in `RUN/data/png`, its `RUN/params.yaml`. Only `segment` keys may be overridden: anything else
would not be the run's evaluation with another grid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml
from bench_flops import overridden
from ensemble_cv import evaluate_fold
from run_all import command_line, write_result

from emseg.config.params import parse_params
from emseg.errors import EmsegError, run_with_clean_errors
from emseg.networks.model_file import load_model
from emseg.runtime.machine import machine_info
from emseg.segmentation.methods import check_segment_params


def main(argv: list[str] | None = None) -> int:
    """Evaluate every fold of `--run` with the overridden grid; write OUT/cell_grid.json with the command and the machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished cross-validation's clone")
    parser.add_argument("--out", type=Path, required=True, help="where the folds' results go (OUT/folds/<k>/)")
    parser.add_argument("-S", dest="set", action="append", default=[], metavar="segment.KEY=VALUE", help="override a segment key (YAML value)")
    parser.add_argument("--tile", type=int, metavar="PX", help="the inference window's side (default: the model's training patch)")
    parser.add_argument("--folds", default="0,1,2,3,4", help="the folds (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.set and args.tile is None:
        raise EmsegError("-S, --tile: give a segment.KEY=VALUE or a window (without either this is the run's own evaluation)")
    for assignment in args.set:
        if not assignment.removeprefix("+").startswith("segment."):
            raise EmsegError(f"-S {assignment}: only segment keys change the cell step's grid")
    params_file = args.run / "params.yaml"
    if not params_file.is_file():
        raise EmsegError(f"--run {args.run}: no params.yaml (a cross-validation clone holds one)")
    raw = overridden(yaml.safe_load(params_file.read_text()), args.set)
    params = parse_params(raw, f"{params_file} with {' '.join(args.set)}", (check_segment_params,))
    cells = {}
    for fold in (int(k) for k in args.folds.split(",")):
        model_file = args.run / "cv" / "folds" / str(fold) / "model.pt"
        if not model_file.is_file():
            raise EmsegError(f"{model_file}: no model (fold {fold} of that run has not trained)")
        network, config = load_model(model_file)
        metrics = evaluate_fold(network.eval(), config, params, args.run, fold, args.out, tile=args.tile)  # prints its line
        cells[str(fold)] = metrics["segment_v_rand"]
    write_result(args.out / "cell_grid.json", {
        "benchmark": "cell_grid_cv",
        "command": command_line("cell_grid_cv.py", argv),
        "run": str(args.run),
        "overrides": args.set,
        "tile": args.tile,
        "machine": machine_info(),
        "cells_v_rand": cells,
    })
    return 0


if __name__ == "__main__":
    sys.exit(run_with_clean_errors(main, debug=False, prog="cell_grid_cv.py"))
