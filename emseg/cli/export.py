"""`emseg export`: a BioImage Model Zoo package (format 0.5) of an emseg model.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: the `--help` text
HELP = """emseg export MODEL --bioimageio OUT.zip: a BioImage Model Zoo package (format 0.5) of an emseg model.

The package opens in ilastik, deepImageJ and QuPath (and runs with bioimageio.core): the
network with its weights (pytorch_state_dict with the MONAI architecture, and
torchscript), the per-slice z-score as preprocessing, sigmoid and 1 - p as
postprocessing (its output is the cell-interior probability emseg predict writes; an
affinity model's package outputs its affinities, one channel per offset, with the
offsets in its config), tile and halo sizes, a test input and its expected output, a
cover image, documentation and the data set's citations. The test input is a patch-sized crop of --image (default: the
first slice of the ISBI test volume beside the repository, else a synthetic EM-like slice).
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg export` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser(
        "export", help="export a model for other tools (BioImage Model Zoo package)", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", type=Path, metavar="MODEL", help="emseg model file")
    parser.add_argument("--bioimageio", type=Path, required=True, metavar="OUT.zip", help="the package to write")
    parser.add_argument("--image", type=Path, help="the image whose crop becomes the test input (any grey image emseg reads)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `emseg export` with its parsed arguments; the exit status."""
    from emseg.config.layout import RAW_NAMES
    from emseg.errors import EmsegError
    from emseg.io.images import read_stack
    from emseg.io.synthetic import synthetic_slice
    from emseg.networks.model_file import read_model_file
    from emseg.sharing.bioimageio import export_bioimageio

    read_model_file(args.model)  # refuse a file that is no emseg model before anything else
    if not args.bioimageio.parent.is_dir():
        raise EmsegError(f"--bioimageio {args.bioimageio}: folder {args.bioimageio.parent} not found")
    default = Path(__file__).resolve().parents[2].parent / "shared" / "isbi2012" / RAW_NAMES["test_images"]
    if args.image is not None:
        image = read_stack(args.image)[0]
    elif default.is_file():
        image = read_stack(default)[0]
    else:
        image = synthetic_slice(512, 512, 0, cells=40)[0]
    out = export_bioimageio(args.model, args.bioimageio, image)
    print(f"wrote {out}: BioImage Model Zoo package (format 0.5) of {args.model}")
    return 0
