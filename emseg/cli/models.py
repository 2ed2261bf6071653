"""`emseg models`: the registered networks, their parameter counts and default arguments, and the bundled model.

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
import json

#: the `--help` text
HELP = """emseg models: the registered network names, their parameter counts and default arguments.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg models` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser("models", help="list the registered architectures (params model.arch)", description=HELP)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=run)


def describe() -> list[dict]:
    """One row per registered architecture, with the parameter count of its defaults."""
    # imported here: every `emseg` command builds this parser, and MONAI takes seconds to import
    from emseg.networks.architectures import REGISTRY, build_network, count_parameters

    return [
        {
            "name": name,
            "parameters": count_parameters(build_network(name)),
            "constructor": f"monai.networks.nets.{spec.constructor.__name__}",
            "defaults": spec.defaults,
            "description": spec.description,
        }
        for name, spec in sorted(REGISTRY.items())
    ]


def bundled() -> dict | None:
    """The bundled model's description, if this installation has one: its info, pixel size and cell step."""
    from emseg.networks.model_file import ModelConfig, read_model_file
    from emseg.sharing.bundled import BUNDLED_MODEL, bundled_info

    info = bundled_info()
    if info is None:
        return None
    payload = read_model_file(BUNDLED_MODEL)
    config = ModelConfig.from_payload(payload["config"], payload["version"])
    return {"path": str(BUNDLED_MODEL), **info, "pixel_size_nm": config.pixel_size, "cells": config.cells}


def pixel_size_line(pixel_size: list[float] | None) -> str:
    """`[z, y, x]` nm as `4 x 4 nm pixels, 50 nm sections`, or that the model does not say."""
    if not pixel_size:
        return "pixel size not recorded (emseg predict assumes its inputs match)"
    z, y, x = pixel_size
    return f"{y:g} x {x:g} nm pixels, {z:g} nm sections"


def run(args: argparse.Namespace) -> int:
    """Run `emseg models` with its parsed arguments; the exit status."""
    rows, model = describe(), bundled()
    if args.json:
        print(json.dumps({"architectures": rows, "bundled_model": model}, indent=2))
        return 0
    if model is not None:
        scores = model["test_scores"]
        print(f"bundled model: {model['name']}, {model['path']}")
        print(f"  held-out test slices 25-29: V_rand {scores['v_rand']:.4f} (challenge's threshold), "
              f"{scores.get('v_rand_at_val_threshold', float('nan')):.4f} (validated threshold {scores.get('val_threshold', float('nan')):g}), "
              f"V_info {scores['v_info']:.4f}")
        print(f"  trained at {pixel_size_line(model['pixel_size_nm'])}")
        if model["cells"]:
            cells = model["cells"]
            print(f"  cells: {cells['method']} {json.dumps(cells['settings'])}, chosen on {cells['chosen_on']}")
        print(f"  made by: {model['made_by']} at commit {model['commit']} on {model['cpu']['model']}")
        print()
    for row in rows:
        print(f"{row['name']:<15} {row['parameters']:>11,} params  {row['constructor']}  - {row['description']}")
        print(f"{'':<15} defaults: {json.dumps(row['defaults'])}")
    return 0
