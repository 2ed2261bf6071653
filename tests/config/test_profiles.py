"""emseg.config.profiles: named params overrides, run as DVC experiments."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from emseg.config.params import load_params, parse_params, read_params_file
from emseg.config.profiles import exp_run_command, load_profile, profile_names, set_params, with_profile
from emseg.errors import EmsegError

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_profiles_are_listed_and_each_changes_something() -> None:
    assert {"best", "gpu"} <= set(profile_names())
    for name in profile_names():
        assert load_profile(name), name


def test_a_key_params_yaml_lacks_is_added_with_a_plus_and_values_are_written_without_spaces() -> None:
    params = {"train": {"steps": 10}, "model": {"unet": {}, "offsets": [[-1, 0]]}}
    overrides = {"train": {"steps": 20, "tta": True}, "model": {"unet": {"channels": [8, 16]}, "offsets": [[-1, 0], [0, -1]]}}
    assert set_params(overrides, params) == [
        "train.steps=20", "+train.tta=true", "+model.unet.channels=[8,16]", "model.offsets=[[-1,0],[0,-1]]",
    ]
    assert with_profile(params, overrides)["model"] == {"unet": {"channels": [8, 16]}, "offsets": [[-1, 0], [0, -1]]}


@pytest.mark.parametrize("name", profile_names())
def test_dvc_applies_the_printed_overrides_to_params_yaml_as_the_profile_says(name: str, tmp_path: Path) -> None:
    from dvc.utils.hydra import apply_overrides

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    raw = read_params_file(tmp_path / "params.yaml")
    apply_overrides(tmp_path / "params.yaml", set_params(load_profile(name), raw))
    assert load_params(tmp_path / "params.yaml") == parse_params(with_profile(raw, load_profile(name)))


def test_the_command_names_the_experiment_and_the_pipeline() -> None:
    raw = read_params_file(ROOT / "params.yaml")
    words = shlex.split(exp_run_command("best", raw, cv=True))
    assert words[:6] == ["dvc", "exp", "run", "cv/dvc.yaml", "-n", "cv-best"] and words[6] == "-S"
    assert shlex.split(exp_run_command("best", raw, exp_name="mine"))[3:5] == ["-n", "mine"]


def test_an_unknown_profile_is_one_line_naming_the_profiles(tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match=r"^no profile 'fast'; profiles: .*best"):
        load_profile("fast")
    assert yaml.safe_load((ROOT / "emseg" / "data" / "profiles" / "best.yaml").read_text())
