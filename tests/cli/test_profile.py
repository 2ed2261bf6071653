"""`emseg profile`: the dvc exp run command of a profile, checked against the project's params."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from emseg.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def test_prints_a_command_that_a_shell_splits_into_dvc_arguments(capsys) -> None:
    assert main(["profile", "gpu", "--params", str(ROOT / "params.yaml"), "--cv"]) == 0
    words = shlex.split(capsys.readouterr().out)
    assert words[:5] == ["dvc", "exp", "run", "cv/dvc.yaml", "-n"] and "+model.unet.channels=[32,64,128,256,512]" in words


def test_a_profile_that_does_not_fit_the_projects_params_is_one_line(tmp_path: Path, capsys) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["arch"] = "basic_unet"  # the GPU profile widens model.unet: still valid, a block for another network
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["profile", "gpu", "--params", str(tmp_path / "params.yaml")]) == 0
    params["train"]["steps"] = "many"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["profile", "best", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"emseg: error: {tmp_path / 'params.yaml'}: train.steps"), err


def test_a_missing_params_file_or_profile_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["profile", "best", "--params", str(tmp_path / "params.yaml")]) == 2
    assert main(["profile", "fastest", "--params", str(ROOT / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"emseg: error: {tmp_path / 'params.yaml'}: params file not found", "emseg: error: no profile 'fastest'; profiles: best, gpu"]
