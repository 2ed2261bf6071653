"""emseg.inference.cell_step: the cell step of a prediction, from the asked method, the model file, segment.json or components."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg.errors import EmsegError
from emseg.inference.cell_step import cell_method, settings_text
from emseg.io.atomic import write_json
from emseg.networks.model_file import ModelConfig


def config(target: str = "affinities", cells: dict | None = None) -> ModelConfig:
    return ModelConfig("unet", {}, {}, 64, target=target, offsets=[[0, 1], [1, 0]] if target == "affinities" else None, cells=cells)


def test_the_model_files_step_wins_and_gives_its_settings_to_the_same_method_asked(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    write_json(tmp_path / "segment.json", {"method": "multicut", "settings": {"beta": 0.3}})
    recorded = config(cells={"method": "gasp", "settings": {"beta": 0.4}})
    assert cell_method(model, None, recorded) == ("gasp", {"beta": 0.4}, f"settings from the model file {model}")
    assert cell_method(model, "gasp", recorded)[1] == {"beta": 0.4}
    assert cell_method(model, "watershed", recorded) == ("watershed", {}, "default settings")
    assert cell_method(model, None, config()) == ("multicut", {"beta": 0.3}, f"settings from {tmp_path / 'segment.json'}")
    assert cell_method(tmp_path / "alone" / "model.pt", None, config()) == ("components", {}, "at the mask's threshold")


def test_an_unknown_method_or_one_the_model_cannot_run_is_refused_naming_the_option(tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match="^--cells: unknown method 'mwz'"):
        cell_method(tmp_path / "m.pt", "mwz", config())
    with pytest.raises(EmsegError, match="^cells mws needs an affinity model"):
        cell_method(tmp_path / "m.pt", "mws", config("boundary"), option="cells")


def test_settings_read_as_a_summary() -> None:
    assert settings_text({"beta": 0.4, "min_size": 25}) == " (beta=0.4, min_size=25)" and settings_text({}) == ""
