"""emseg.training.build: the parts of a run made from params, seeded."""

from __future__ import annotations

from pathlib import Path

import torch

from emseg.config.params import ModelParams, TrainParams
from emseg.networks.architectures import REGISTRY, resolve_kwargs
from emseg.training.build import build_trainer, model_config

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
