"""``emseg models``: the registered network names, their parameter counts and default arguments."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("models", help="list the registered architectures (params model.arch)", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.set_defaults(handler=run)


def describe() -> list[dict]:
    """One row per registered architecture, with the parameter count of its defaults."""
    # imported here: every `emseg` command builds this parser, and MONAI takes seconds to import
    from emseg.networks import REGISTRY, build_network, count_parameters

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


def run(args: argparse.Namespace) -> int:
    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']:<15} {row['parameters']:>11,} params  {row['constructor']}  - {row['description']}")
        print(f"{'':<15} defaults: {json.dumps(row['defaults'])}")
    return 0
