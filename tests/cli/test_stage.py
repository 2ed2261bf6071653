"""emseg.cli.stage: the stage scripts' parser, and how a stage reports bad params (one line, exit 2)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from emseg.cli.stage import PATHS, run_stage, stage_parser
from emseg.config.params import Params, ParamsKeyError


def test_the_parser_asks_for_the_named_paths_and_the_stage_output() -> None:
    parser = stage_parser("train", "the train stage", "png", "model", out="what it writes")
    args = parser.parse_args(["--png", "data/png", "--model", "m.pt", "--out", "o"])
    assert (args.png, args.model, args.out, args.params, args.debug) == ("data/png", "m.pt", "o", "params.yaml", False)
    assert parser.prog == "stages/train.py"
    with pytest.raises(SystemExit):
        parser.parse_args(["--png", "data/png"])  # --model and --out are required
    with pytest.raises(KeyError):
        stage_parser("x", "", "no_such_path")  # only the paths dvc.yaml hands the stages
    assert {"raw", "png", "split", "augmented", "model", "metrics", "plots"} <= set(PATHS)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params_text: str, checks=()) -> tuple[int, list]:
    params = tmp_path / "params.yaml"
    params.write_text(params_text)
    seen: list[Params] = []
    monkeypatch.setattr(sys, "argv", ["stages/x.py", "--params", str(params)])
    with pytest.raises(SystemExit) as exit_info:
        run_stage(stage_parser("x", ""), lambda args, loaded: seen.append(loaded), checks)
    return exit_info.value.code, seen


def test_a_stage_runs_its_body_with_the_validated_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, seen = _run(tmp_path, monkeypatch, "train: {steps: 7}\n")
    assert code == 0 and seen[0].train.steps == 7


def test_a_registry_check_ends_the_stage_with_one_line_naming_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(params: Params) -> None:
        raise ParamsKeyError("model.arch", f"{params.model.arch} is not welcome")

    code, seen = _run(tmp_path, monkeypatch, "model: {arch: unet}\n", checks=(refuse,))
    err = capsys.readouterr().err.strip()
    assert code == 2 and not seen
    assert err == f"stages/x.py: error: {tmp_path / 'params.yaml'}: model.arch: unet is not welcome"
