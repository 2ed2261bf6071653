from pathlib import Path

import pytest
import yaml

from emseg.errors import EmsegError
from emseg.params import Params, load_params, parse_params

from conftest import REPO_ROOT


def test_repository_params_file_is_valid_and_matches_schema_defaults() -> None:
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.model.arch in ("unet", "basic_unet", "attention_unet", "segresnet")
    # every key the schema knows is spelled out, so DVC tracks it
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for block, model in Params.model_fields.items():
        assert block in raw, block
        if block != "model":
            assert set(raw[block]) == set(model.annotation.model_fields), block


def test_unknown_key_names_the_key() -> None:
    with pytest.raises(EmsegError, match=r"params.yaml: train.stepz: unknown key"):
        parse_params({"train": {"stepz": 10}})


@pytest.mark.parametrize("value", [0, -5])
def test_non_positive_steps_are_refused(value: int) -> None:
    with pytest.raises(EmsegError, match=r"train.steps: Input should be greater than 0"):
        parse_params({"train": {"steps": value}})


def test_bad_yaml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(EmsegError, match="not valid YAML") as info:
        load_params(path)
    assert "\n" not in str(info.value)


def test_yaml_tags_that_would_build_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("base: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(EmsegError, match="not valid YAML"):
        load_params(path)


def test_split_fold_must_be_below_n_folds() -> None:
    with pytest.raises(EmsegError, match="split"):
        parse_params({"split": {"strategy": "kfold", "n_folds": 3, "fold": 3}})


@pytest.mark.parametrize(
    ("block", "key", "value", "message"),
    [
        ("evaluate", "threads", -1, r"evaluate.threads: Input should be greater than or equal to 0"),
        ("train", "cpu_bf16", "maybe", r"train.cpu_bf16: Input should be a valid boolean"),
    ],
)
def test_thread_and_precision_keys_are_checked(block: str, key: str, value: object, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params({block: {key: value}})
