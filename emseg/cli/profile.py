"""`emseg profile`: the `dvc exp run` command of a profile (the best, the GPU) over the project's `params.yaml`.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: the `--help` text
HELP = """emseg profile: print the dvc exp run command of a profile, a named set of params overrides.

params.yaml is the CPU profile (the default dvc repro). The best profile (best) trains the
bundled model within an hour of a 2-core CPU; the GPU profile (gpu) spends a GPU's speed.
Run the printed command in the project's folder, or evaluate it:

  eval "$(emseg profile best)"          # one training and evaluation
  eval "$(emseg profile best --cv)"     # its 5-fold cross-validation
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg profile` parser to `subparsers` (its description is `HELP`)."""
    from emseg.config.profiles import profile_names

    parser = subparsers.add_parser(
        "profile", help="the dvc exp run command of a profile (best, gpu)", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help=f"the profile: {', '.join(profile_names())}")
    parser.add_argument("--cv", action="store_true", help="the cross-validation pipeline's experiment (cv/dvc.yaml)")
    parser.add_argument("-n", "--exp-name", metavar="NAME", help="the experiment's name (default: the profile's, cv-<name> with --cv)")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the project's params file (default: %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `emseg profile` with its parsed arguments; the exit status."""
    from emseg.config.params import parse_params, read_params_file
    from emseg.config.profiles import exp_run_command, load_profile, with_profile
    from emseg.networks.architectures import check_model_params
    from emseg.segmentation.methods import check_segment_params
    from emseg.training.losses import check_loss_params

    raw = read_params_file(args.params)
    checks = (check_model_params, check_loss_params, check_segment_params)
    parse_params(raw, args.params, checks)  # the project's own file first, so that an error names the right culprit
    parse_params(with_profile(raw, load_profile(args.name)), f"{args.params} with profile {args.name}", checks)
    print(exp_run_command(args.name, raw, args.cv, args.exp_name))
    return 0
