"""What every DVC stage script shares: its argument parser and clean error handling.

The `stages/*.py` scripts that `dvc.yaml` runs build their parser with
[`stage_parser`][emseg.cli.stage.stage_parser] and run their body with
[`run_stage`][emseg.cli.stage.run_stage]. The paths they take are named in `PATHS`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from emseg.config.params import DEFAULT_PARAMS_FILE, Params, ParamsCheck, load_params
from emseg.errors import run_with_clean_errors

#: the paths dvc.yaml hands the stage scripts, by option name; ``--out`` is each stage's own output
PATHS = {
    "raw": "folder of the fetched stacks",
    "png": "folder of the converted PNG slices",
    "split": "split JSON",
    "augmented": "folder of augmented training slices",
    "model": "model file",
    "live": "dvclive output folder",
    "checkpoints": "folder for resumable checkpoints (not a DVC output)",
    "metrics": "metrics JSON to write",
    "plots": "folder for plot data and overlay images",
    "eval": "folder for the scored and predicted stacks",
    "preview": "preview grid PNG to write",
    "segment": "segment.json to write: the segmentation chosen on the validation slices (beside the model)",
}


def stage_parser(name: str, description: str, *paths: str, out: str | None = None) -> argparse.ArgumentParser:
    """The parser of `stages/<name>.py`.

    Args:
        name: The stage's name (its script `stages/<name>.py`).
        description: The parser's description.
        *paths: The required path options, keys of `PATHS` (`raw`, `png`, `model`, ...).
        out: The help text of `--out`, for a stage whose output is given there; None: no `--out`.

    Returns:
        A parser with the required path options, `--out` when asked for, `--params` and `--debug`.
    """
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=description)
    for path in paths:
        parser.add_argument(f"--{path}", required=True, help=PATHS[path])
    if out is not None:
        parser.add_argument("--out", required=True, help=out)
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run_stage(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Params], None], checks: Sequence[ParamsCheck] = ()
) -> None:
    """Parse arguments, load and validate params, run `body`; exit 2 with one line on a user error.

    Args:
        parser: The stage's parser, from [`stage_parser`][emseg.cli.stage.stage_parser].
        body: The stage's work, given the parsed arguments and the validated params.
        checks: The registries' checks of the params blocks the stage uses (e.g. the
            network registry's for the train stage), run before `body`.
    """
    args = parser.parse_args()
    status = run_with_clean_errors(lambda: body(args, load_params(args.params, checks)), args.debug, prog=parser.prog)
    sys.exit(status)
