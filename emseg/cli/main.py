"""The `emseg` console entry point: one subcommand per job.

Each subcommand lives in its own module of this package, exposing `register(subparsers)`,
which adds its parser and sets `handler=run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from emseg import __version__
from emseg.errors import run_with_clean_errors

SUBCOMMAND_MODULES = (
    "emseg.cli.predict", "emseg.cli.train", "emseg.cli.score", "emseg.cli.compare", "emseg.cli.export", "emseg.cli.models",
    "emseg.cli.profile",
)


def build_parser() -> argparse.ArgumentParser:
    """The `emseg` parser, with every subcommand's parser registered."""
    parser = argparse.ArgumentParser(prog="emseg", description="Segment electron-microscopy images.")
    parser.add_argument("--version", action="version", version=f"emseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `emseg` with `argv` (default: the command line); the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_with_clean_errors(lambda: args.handler(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
