from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from emseg.config.params import ModelParams, Params, SegmentParams, load_params, parse_params
from emseg.errors import EmsegError

from conftest import REPO_ROOT

#: the blocks whose keys beyond their fields are registry names (``model.<arch>``, ``segment.<method>``)
NAMED_BLOCKS = (ModelParams, SegmentParams)


def test_the_schema_defaults_are_the_repository_params_file() -> None:
    """One source for each default: ``Params()`` is the CPU profile that params.yaml spells out
    (with one empty ``model.<arch>`` / ``segment.<method>`` block per registered name, which the schema adds nothing to)."""
    loaded = load_params(REPO_ROOT / "params.yaml")
    assert all(block == {} for block in (*loaded.model.blocks().values(), *loaded.segment.blocks().values()))
    bare = loaded.model_copy(update={"model": ModelParams(**loaded.model.model_dump(include=set(ModelParams.model_fields))),
                                     "segment": SegmentParams(**loaded.segment.model_dump(include=set(SegmentParams.model_fields)))})
    assert bare == Params()


def test_params_file_spells_out_every_key_so_dvc_tracks_it() -> None:
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())

    def keys(model: type, block: dict, prefix: str) -> None:
        assert set(block) >= set(model.model_fields) if model in NAMED_BLOCKS else set(block) == set(model.model_fields), prefix
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                keys(field.annotation, block[name], f"{prefix}.{name}")

    keys(Params, raw, "params")


def test_the_schema_takes_any_name_for_the_registries_to_check() -> None:
    """Names that live in a registry are plain strings and mappings here: the registries check them
    (tests/networks, tests/training, tests/segmentation), so the schema imports none of them."""
    params = parse_params({"model": {"arch": "basic_unet", "basic_unet": {"features": [8, 8, 16, 32, 64, 8]}, "unett": {}},
                           "train": {"loss": "hinge"}, "segment": {"method": "mwz", "gasp": {"beta": [0.4]}}})
    assert params.model.overrides() == {"features": [8, 8, 16, 32, 64, 8]}
    assert params.model.overrides("unet") == {} and set(params.model.blocks()) == {"basic_unet", "unett"}
    assert params.train.loss == "hinge" and params.segment.given("gasp") == {"beta": [0.4]}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": {"unet": [8, 16]}}, r"^params.yaml: model.unet: must be a mapping of constructor arguments \({} for the defaults\), got \[8, 16\]$"),
        ({"segment": {"gasp": 0.5}}, r"^params.yaml: segment.gasp: must be a mapping of settings"),
    ],
)
def test_named_blocks_must_be_mappings(raw: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params(raw)


def test_a_registry_check_is_reported_under_the_params_file_and_key() -> None:
    from emseg.config.params import ParamsKeyError

    def refuse(params: Params) -> None:
        raise ParamsKeyError("model.arch", f"no {params.model.arch} here")

    with pytest.raises(EmsegError, match=r"^custom.yaml: model.arch: no unet here$"):
        parse_params({}, "custom.yaml", checks=(refuse,))


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
        ({"model": {"offsets": [[0, 1], [1, 0]]}}, r"^params.yaml: model.offsets: the first two offsets must be the nearest neighbours"),
        ({"model": {"offsets": [[-1, 0], [0, -1], [2]]}}, r"^params.yaml: model.offsets: offsets must be \[dy, dx\] pairs"),
        ({"model": {"offsets": [[-1, 0], [0, -1], [0, -1]]}}, r"^params.yaml: model.offsets: offsets must be distinct and non-zero"),
        ({"model": {"target": "affinities"}, "train": {"border_weight": 10}}, r"^params.yaml: train.border_weight: the U-Net border weights are for a boundary model"),
        ({"model": {"target": "boundary"}, "train": {"malis_steps": 10}}, r"^params.yaml: train.malis_steps: MALIS trains the nearest-neighbour affinities"),
        ({"train": {"consistency_weight": 1.0}, "data": {"test_images": ""}}, r"^params.yaml: train.consistency_weight: the consistency trains on the unlabelled slices, and data.test_images is ''$"),
        ({"train": {"consistency_weight": 1.0, "ema_decay": 0.0}}, r"^params.yaml: train.consistency_weight: the consistency's teacher is the moving average"),
        ({"train": {"consistency_weight": 1.0, "consistency_batch": 3, "processes": 2}}, r"^params.yaml: train.consistency_batch: 3 patches cannot be split evenly over 2"),
        ({"train": {"steps": 100, "stop_at": 101}}, r"^params.yaml: train.stop_at: 101 is past the schedule's 100 steps \(train.steps\)$"),
    ],
)
def test_target_params_are_checked_with_one_line(raw: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params(raw)


#: every [low, high] pair of the schema, with a value under its bound
PAIRS = {
    ("augment", "elastic", "magnitude"): -1.0,
    ("augment", "gamma", "range"): 0.0,
    ("augment", "contrast", "range"): 0.0,
    ("augment", "blur", "range"): -0.5,
}


def _nested(path: tuple[str, ...], value: object) -> dict:
    return {path[0]: _nested(path[1:], value)} if len(path) > 1 else {path[0]: value}


def test_every_low_high_pair_of_the_schema_is_listed_here() -> None:
    """A new [low, high] pair in the schema must join PAIRS, so that the checks below cover it."""

    def pairs(model: type, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        found = set()
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                found |= pairs(field.annotation, (*prefix, name))
            elif "tuple[float, float]" in str(field.annotation):
                found.add((*prefix, name))
        return found

    assert pairs(Params, ()) == set(PAIRS)


@pytest.mark.parametrize("path", sorted(PAIRS), ids=".".join)
def test_a_reversed_pair_is_refused_naming_its_key(path: tuple[str, ...]) -> None:
    with pytest.raises(EmsegError, match=rf"^params.yaml: {'[.]'.join(path)}: \[3, 2\] must be \[low, high\] with low <= high$"):
        parse_params(_nested(path, [3.0, 2.0]))
    assert parse_params(_nested(path, [2.0, 2.0]))  # equal ends: a fixed value


@pytest.mark.parametrize("path", sorted(PAIRS), ids=".".join)
def test_a_pair_out_of_range_is_refused_naming_its_key(path: tuple[str, ...]) -> None:
    low = PAIRS[path]
    with pytest.raises(EmsegError, match=rf"^params.yaml: {'[.]'.join(path)}: \[{low:g}, 2\]: both ends must be (above|at least) 0$"):
        parse_params(_nested(path, [low, 2.0]))


def test_descriptors_are_for_affinity_models_only() -> None:
    assert parse_params({"model": {"lsd_sigma": 12.0}}).model.lsd_sigma == 12.0
    with pytest.raises(EmsegError, match="model.lsd_sigma: .*model.target: affinities"):
        parse_params({"model": {"target": "boundary", "lsd_sigma": 12.0}})
    with pytest.raises(EmsegError, match="model.context"):
        parse_params({"model": {"context": -1}})
