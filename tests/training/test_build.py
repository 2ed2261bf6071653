"""emseg.training.build: the parts of a run made from params, seeded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emseg.config.params import ModelParams, TrainParams
from emseg.errors import EmsegError
from emseg.networks.architectures import REGISTRY, resolve_kwargs
from emseg.training.build import build_trainer, model_config, network_differences, network_params

from conftest import TINY_UNET, tiny_training_data

TINY = ModelParams(arch="unet", target="boundary", unet=TINY_UNET)
PARAMS = TrainParams(steps=2, batch_size=2, patch_size=32, val_every=2, log_every=1, checkpoint_every=2)


def test_the_same_seed_builds_the_same_network_and_patch_stream(tmp_path: Path) -> None:
    a = build_trainer(tiny_training_data(), TINY, PARAMS, seed=3, model_path=tmp_path / "a.pt")
    b = build_trainer(tiny_training_data(), TINY, PARAMS, seed=3, model_path=tmp_path / "b.pt")
    c = build_trainer(tiny_training_data(), TINY, PARAMS, seed=4, model_path=tmp_path / "c.pt")
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values()))
    assert torch.equal(a.sampler.sample(2).image, b.sampler.sample(2).image)


def test_an_ema_is_kept_only_when_asked_for(tmp_path: Path) -> None:
    with_ema = build_trainer(tiny_training_data(), TINY, PARAMS, seed=0, model_path=tmp_path / "a.pt")
    without = build_trainer(tiny_training_data(), TINY, PARAMS.model_copy(update={"ema_decay": 0.0}), seed=0, model_path=tmp_path / "b.pt")
    assert with_ema.ema is not None and with_ema.evaluated is with_ema.ema.module
    assert without.ema is None and without.evaluated is without.model


def test_a_consistency_run_needs_unlabelled_slices_and_keeps_a_teacher(tmp_path: Path) -> None:
    params = PARAMS.model_copy(update={"consistency_weight": 1.0})
    with pytest.raises(EmsegError, match=r"^params train.consistency_weight: there are no unlabelled slices"):
        build_trainer(tiny_training_data(), TINY, params, seed=0, model_path=tmp_path / "a.pt")
    data = tiny_training_data()
    data.unlabelled_images = [data.val_images[0]]
    trainer = build_trainer(data, TINY, params, seed=0, model_path=tmp_path / "a.pt")
    assert trainer.ema is not None and trainer.local_consistency == params.consistency_batch
    assert len(trainer.sampler.unlabelled) == 1


def test_border_weights_reach_the_sampler_only_for_a_boundary_model_that_asks(tmp_path: Path) -> None:
    weighted = build_trainer(tiny_training_data(), TINY, PARAMS.model_copy(update={"border_weight": 5.0}), seed=0, model_path=tmp_path / "w.pt")
    plain = build_trainer(tiny_training_data(), TINY, PARAMS, seed=0, model_path=tmp_path / "p.pt")
    assert weighted.sampler.weights is not None and plain.sampler.weights is None


def test_the_model_file_config_records_every_argument_and_the_target(tmp_path: Path) -> None:
    """The file holds the full argument set, registry defaults included, so that it loads whatever the defaults become."""
    trainer = build_trainer(tiny_training_data(), TINY, PARAMS, seed=0, model_path=tmp_path / "m.pt")
    assert trainer.config.kwargs == resolve_kwargs("unet", TINY_UNET) and set(REGISTRY["unet"].defaults) <= set(trainer.config.kwargs)
    assert trainer.config.target == "boundary" and trainer.config.out_channels == 1 and trainer.config.patch_size == 32
    affinity = model_config(ModelParams(arch="unet", unet=TINY_UNET), TINY_UNET, 64)
    assert affinity.target == "affinities" and affinity.out_channels == len(affinity.offsets) == 8
    assert affinity.offset_tuples()[:2] == ((-1, 0), (0, -1))


def test_a_run_starts_from_a_model_files_weights_and_keeps_its_cell_step(tmp_path: Path) -> None:
    from emseg.networks.model_file import save_model

    base = build_trainer(tiny_training_data(), TINY, PARAMS, seed=7, model_path=tmp_path / "base.pt")
    base.config.cells = {"method": "watershed", "settings": {}, "chosen_on": "x", "v_rand": 0.5}
    save_model(tmp_path / "base.pt", base.model, base.config)
    tuned = build_trainer(tiny_training_data(), TINY, PARAMS, seed=0, model_path=tmp_path / "t.pt", init=tmp_path / "base.pt", pixel_size=(45, 4.6, 4.6))
    assert all(torch.equal(x, y) for x, y in zip(base.model.state_dict().values(), tuned.model.state_dict().values()))
    assert tuned.config.cells == base.config.cells and tuned.config.info["init_from"] == str(tmp_path / "base.pt")
    assert tuned.config.pixel_size == [45.0, 4.6, 4.6]


@pytest.mark.parametrize(
    ("change", "field"),
    [({"unet": {**TINY_UNET, "channels": [4, 8, 32]}}, "kwargs"), ({"target": "affinities"}, "target"), ({"arch": "basic_unet", "basic_unet": {}}, "arch"),
     ({"auto_context": True}, "auto_context")],
)
def test_a_model_of_another_network_is_refused_in_one_line_naming_what_differs(tmp_path: Path, change: dict, field: str) -> None:
    from emseg.networks.model_file import save_model

    base = build_trainer(tiny_training_data(), TINY, PARAMS, seed=7, model_path=tmp_path / "base.pt")
    save_model(tmp_path / "base.pt", base.model, base.config)
    other = TINY.model_copy(update=change)
    assert network_differences(other, base.config)[0] == field and network_differences(TINY, base.config) == []
    # the pipeline's train stage: its params say what it trains, so a model of another network is refused
    with pytest.raises(EmsegError, match=rf"^{tmp_path / 'base.pt'}: cannot start from this model: its {field} is .*, the run's is .*\(params model block\)$"):
        build_trainer(tiny_training_data(), other, PARAMS, seed=7, model_path=tmp_path / "tuned.pt", init=tmp_path / "base.pt")


@pytest.mark.parametrize("model", [
    TINY,
    ModelParams(arch="unet", target="affinities", offsets=[[-1, 0], [0, -1], [-4, 0], [0, -4]], context=1, lsd_sigma=5.0, unet=TINY_UNET),
    ModelParams(arch="unet", target="affinities", offsets=[[-1, 0], [0, -1], [-4, 0], [0, -4]], auto_context=True, unet=TINY_UNET),
])
def test_a_model_files_network_is_rebuilt_as_the_model_block_that_made_it(tmp_path: Path, model: ModelParams) -> None:
    from emseg.networks.model_file import load_model, save_model

    made = build_trainer(tiny_training_data(), model, PARAMS, seed=0, model_path=tmp_path / "m.pt")
    save_model(tmp_path / "m.pt", made.model, made.config)
    _, config = load_model(tmp_path / "m.pt")
    block = network_params(config, tmp_path / "m.pt")
    assert network_differences(block, config) == [] and block.lsd_sigma == model.lsd_sigma and block.context == model.context
    assert block.auto_context == model.auto_context


def test_a_descriptor_head_whose_sigma_is_not_recorded_cannot_be_fine_tuned(tmp_path: Path) -> None:
    model = ModelParams(arch="unet", target="affinities", lsd_sigma=5.0, unet=TINY_UNET)
    config = model_config(model, resolve_kwargs("unet", TINY_UNET), 32)
    config.info = {}
    with pytest.raises(EmsegError, match=r"^x\.pt: cannot start from this model: it has an auxiliary head of 6 channels but does not record"):
        network_params(config, Path("x.pt"))
