"""What every DVC stage script shares: its argument parser and clean error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from emseg.errors import run_with_clean_errors
from emseg.params import DEFAULT_PARAMS_FILE, Params, load_params


def stage_parser(name: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"stages/{name}.py", description=description)
    parser.add_argument("--params", default=DEFAULT_PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return parser


def run_stage(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Params], None]) -> None:
    """Parse arguments, load and validate params, run ``body``; exit 2 with one line on a user error."""
    args = parser.parse_args()
    status = run_with_clean_errors(lambda: body(args, load_params(args.params)), args.debug, prog=parser.prog)
    sys.exit(status)
