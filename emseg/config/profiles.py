"""Profiles: named sets of params overrides on top of `params.yaml` (the CPU profile), run as DVC experiments.

A profile is a partial params mapping in `emseg/data/profiles/<name>.yaml`. DVC runs it as
an experiment with one `-S key=value` per leaf ([`set_params`][emseg.config.profiles.set_params]),
so the experiment's params diff is the profile, and `dvc exp show` and the cross-validation
pipeline (`dvc exp run cv/dvc.yaml ...`) see it like any other override.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from emseg.errors import EmsegError

#: where the profiles' files are (package data)
PROFILES_DIR = Path(__file__).parents[1] / "data" / "profiles"


def profile_names() -> list[str]:
    """The profiles emseg ships, by name."""
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict[str, Any]:
    """The overrides of the profile `name`, a nested mapping of params keys.

    Raises:
        EmsegError: No profile of that name (one line listing the profiles).
    """
    path = PROFILES_DIR / f"{name}.yaml"
    if name not in profile_names():
        raise EmsegError(f"no profile {name!r}; profiles: {', '.join(profile_names())}")
    overrides = yaml.safe_load(path.read_text())
    if not isinstance(overrides, dict):
        raise EmsegError(f"{path}: a profile must be a mapping of params keys")
    return overrides


def _value(value: Any) -> str:
    """A value as a Hydra override writes it (DVC's `-S` grammar): JSON without spaces, `null` for None."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def set_params(overrides: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The `key=value` arguments of `dvc exp run -S` that apply `overrides` to the params file's mapping `params`.

    A key the file does not have yet (e.g. `model.unet.channels` under an empty `unet: {}`)
    is written `+key=value`: DVC refuses plain `-S` there ("Key ... is not in struct").
    """
    args = []

    def walk(node: Mapping[str, Any], present: Any, prefix: str) -> None:
        for key, value in node.items():
            inside = present.get(key) if isinstance(present, Mapping) else None
            known = isinstance(present, Mapping) and key in present
            if isinstance(value, Mapping) and value and (inside is None or isinstance(inside, Mapping)):
                walk(value, inside if known else None, f"{prefix}{key}.")
            else:
                args.append(f"{'' if known else '+'}{prefix}{key}={_value(value)}")

    walk(overrides, params, "")
    return args


def with_profile(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The params mapping `params` with a profile's `overrides` applied, nested mappings merged key by key."""
    merged = dict(params)
    for key, value in overrides.items():
        inside = merged.get(key)
        merged[key] = with_profile(inside, value) if isinstance(value, Mapping) and isinstance(inside, Mapping) else value
    return merged


def exp_run_command(name: str, params: Mapping[str, Any], cv: bool = False, exp_name: str | None = None) -> str:
    """The shell command that runs the profile `name` as a DVC experiment (of the cross-validation pipeline with `cv`)."""
    words = ["dvc", "exp", "run", *(["cv/dvc.yaml"] if cv else []), "-n", exp_name or (f"cv-{name}" if cv else name)]
    for arg in set_params(load_profile(name), params):
        words += ["-S", arg]
    return shlex.join(words)
