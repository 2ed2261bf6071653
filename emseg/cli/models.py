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
    """The bundled model's description, if this installation has one: its info (with its cross-validated figures), pixel size and cell step."""
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


def cross_validated_line(figures: dict) -> str:
    """What the bundled model's recipe scored under cross-validation: its cells' V_rand and the validated-threshold V_rand, with intervals."""
    cells, validated = figures["cells"]["v_rand"], figures["validated"]["v_rand"]
    return (f"cross-validated over {figures['slices']} labelled slices ({figures['folds']} folds, {figures['confidence']:.0%} intervals): "
            f"cells V_rand {cells['mean']:.4f} "
            f"[{cells['ci_low']:.4f}, {cells['ci_high']:.4f}], at the validated threshold {validated['mean']:.4f} "
            f"[{validated['ci_low']:.4f}, {validated['ci_high']:.4f}]")


def run(args: argparse.Namespace) -> int:
    """Run `emseg models` with its parsed arguments; the exit status."""
    rows, model = describe(), bundled()
    if args.json:
        print(json.dumps({"architectures": rows, "bundled_model": model}, indent=2))
        return 0
    if model is not None:
        print(f"bundled model: {model['name']}, {model['path']}")
        print(f"  trained on {model['trained_on']} (the step the cross-validation's folds chose)")
        print(f"  {cross_validated_line(model['cross_validated'])}")
        print(f"  trained at {pixel_size_line(model['pixel_size_nm'])}")
        if model["cells"]:
            cells = model["cells"]
            print(f"  cells: {cells['method']} {json.dumps(cells['settings'])}, chosen on {cells['chosen_on']}")
        elsewhere = model.get("cells_for_other_stacks")
        if elsewhere:
            flags = f"--cells components --threshold {elsewhere['settings']['threshold']:g}" if elsewhere["method"] == "components" else None
            print(f"  cells on other stacks: {elsewhere['method']} {json.dumps(elsewhere['settings'])}, chosen on {elsewhere['chosen_on']}"
                  + (f"; emseg predict draws them with {flags}" if flags else ""))
        print(f"  made by: {model['made_by']} at commit {model['commit']} on {model['cpu']['model']}")
        print()
    for row in rows:
        print(f"{row['name']:<15} {row['parameters']:>11,} params  {row['constructor']}  - {row['description']}")
        print(f"{'':<15} defaults: {json.dumps(row['defaults'])}")
    return 0
