from pathlib import Path

from typing import get_args

import pytest
import yaml
from pydantic import BaseModel

from emseg.errors import EmsegError
from emseg.losses import LOSSES
from emseg.networks import REGISTRY
from emseg.params import ModelParams, Params, TrainParams, load_params, parse_params

from conftest import REPO_ROOT


def test_the_schema_defaults_are_the_repository_params_file() -> None:
    """One source for each default: ``Params()`` is the CPU profile that params.yaml spells out."""
    assert Params() == load_params(REPO_ROOT / "params.yaml")


def test_params_file_spells_out_every_key_so_dvc_tracks_it() -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())

    def keys(model: type, block: dict, prefix: str) -> None:
        assert set(block) == set(model.model_fields), prefix
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                keys(field.annotation, block[name], f"{prefix}.{name}")

    keys(Params, raw, "params")


def test_architecture_and_loss_names_come_from_their_registries() -> None:
    assert set(get_args(ModelParams.model_fields["arch"].annotation)) == set(REGISTRY)
    assert set(ModelParams.model_fields) == {"arch", "target", "offsets", *REGISTRY}
    assert set(get_args(TrainParams.model_fields["loss"].annotation)) == set(LOSSES)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"arch": "unet", "unett": {"channels": [8, 16]}}, r"^params.yaml: model.unett: not a registered architecture \(registered: attention_unet, "),
        ({"arch": "resnet9000"}, r"^params.yaml: model.arch: Input should be 'attention_unet', .* \(got 'resnet9000'\)$"),
        ({"unet": {"chanels": [8, 16]}}, r"^params.yaml: model.unet: chanels not accepted by UNet; valid: channels, "),
        ({"unet": {"channels": [4, 8, 16], "strides": [2]}}, r"^params.yaml: model.unet: invalid arguments for UNet \("),
        # a block of a network that is not the chosen one is checked all the same
        ({"arch": "unet", "segresnet": {"blocks": 3}}, r"^params.yaml: model.segresnet: blocks not accepted by SegResNet"),
    ],
)
def test_model_blocks_are_registered_networks_with_arguments_their_constructor_takes(model: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params({"model": model})


def test_model_overrides_reach_the_chosen_network() -> None:
    params = parse_params({"model": {"arch": "basic_unet", "basic_unet": {"features": [8, 8, 16, 32, 64, 8]}}})
    assert params.model.overrides() == {"features": [8, 8, 16, 32, 64, 8]}
    assert params.model.overrides("unet") == {}


def test_unknown_loss_lists_the_registered_ones() -> None:
    with pytest.raises(EmsegError, match=r"^params.yaml: train.loss: Input should be 'dice_ce', .*'dice_ce_cldice' \(got 'hinge'\)$"):
        parse_params({"train": {"loss": "hinge"}})


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
        ("train", "cpu_bf16", "maybe", r"train.cpu_bf16: must be true, false or auto, got 'maybe'"),
        ("train", "processes", 0, r"train.processes: Input should be greater than or equal to 1"),
    ],
)
def test_thread_and_precision_keys_are_checked(block: str, key: str, value: object, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params({block: {key: value}})


def test_the_global_batch_must_split_evenly_over_the_processes() -> None:
    with pytest.raises(EmsegError, match=r"^params.yaml: train.batch_size: 4 patches cannot be split evenly over 3 processes"):
        parse_params({"train": {"processes": 3}})
    assert parse_params({"train": {"processes": 2}}).train.processes == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"segment": {"method": "mwz"}}, r"^params.yaml: segment.method: Input should be 'components', .*\(got 'mwz'\)$"),
        ({"segment": {"watershd": {}}}, r"^params.yaml: segment.watershd: not a registered segmentation method"),
        ({"segment": {"watershed": {"sigma": 1}}}, r"^params.yaml: segment.watershed: sigma not a setting of watershed"),
        ({"segment": {"gasp": {"beta": [0.1] * 10, "threshold": [0.1] * 5, "linkage": ["mean"] * 5}}}, r"segment.gasp: a grid of 250 settings; at most 200"),
        ({"model": {"target": "boundary"}, "segment": {"method": "mws"}}, r"^params.yaml: segment.method: mws needs an affinity model"),
        ({"model": {"target": "affinities"}, "train": {"loss": "dice_focal"}}, r"^params.yaml: train.loss: dice_focal does not take affinities"),
        ({"model": {"offsets": [[0, 1], [1, 0]]}}, r"^params.yaml: model.offsets: the first two offsets must be the nearest neighbours"),
    ],
)
def test_segment_and_target_params_are_checked_with_one_line(raw: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params(raw)


def test_an_affinity_model_with_the_mutex_watershed_is_a_valid_profile() -> None:
    params = parse_params({"model": {"target": "affinities"}, "segment": {"method": "mws", "mws": {"stride": [2, 4]}}})
    assert params.segment.given() == {"stride": [2, 4]} and params.model.offsets[:2] == [[-1, 0], [0, -1]]
