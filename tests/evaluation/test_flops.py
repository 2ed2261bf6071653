"""emseg.evaluation.flops: counted FLOPs follow the params (steps, target, validations, tiles), the same on every machine."""

from __future__ import annotations

import pytest

from emseg.config.params import ModelParams, Params
from emseg.evaluation.flops import forward_flops, out_channels, pipeline_flops, train_step_flops
from emseg.networks.architectures import resolve_kwargs

SMALL = {"channels": [4, 8], "strides": [2], "num_res_units": 0}


@pytest.mark.parametrize(("target", "channels"), [("boundary", 1), ("affinities", 8)])
def test_out_channels_follow_the_target(target: str, channels: int) -> None:
    assert out_channels(ModelParams(target=target)) == channels


def test_more_output_channels_cost_more_and_batch_scales_linearly() -> None:
    kwargs = resolve_kwargs("unet", SMALL)
    one, eight = train_step_flops("unet", kwargs, 1, 2, 32), train_step_flops("unet", kwargs, 8, 2, 32)
    assert 0 < one < eight
    assert train_step_flops("unet", kwargs, 1, 4, 32) == 2 * one
    assert forward_flops("unet", kwargs, 1, 64) == pytest.approx(4 * forward_flops("unet", kwargs, 1, 32), rel=0.01)


def test_the_pipeline_total_adds_training_validations_and_the_evaluated_tiles() -> None:
    params = Params.model_validate({"model": {"unet": SMALL}, "train": {"steps": 40, "val_every": 20, "patch_size": 32}})
    flops = pipeline_flops(params, (64, 64), val_slices=3, test_slices=5, unlabelled_slices=30)
    assert flops.train == 40 * flops.per_train_step
    assert flops.total == flops.train + flops.validation + flops.evaluate
    doubled = pipeline_flops(params.model_copy(update={"train": params.train.model_copy(update={"steps": 80})}), (64, 64), 3, 5, 30)
    assert doubled.train == 2 * flops.train and doubled.validation == 2 * flops.validation and doubled.evaluate == flops.evaluate
    stopped = pipeline_flops(params.model_copy(update={"train": params.train.model_copy(update={"steps": 80, "stop_at": 40})}), (64, 64), 3, 5, 30)
    assert stopped.train == flops.train and stopped.validation == flops.validation  # a run stopped early counts its steps only


def test_a_consistency_step_trains_its_unlabelled_patches_and_predicts_them_once_more() -> None:
    params = Params.model_validate({"model": {"unet": SMALL}, "train": {"steps": 40, "val_every": 20, "patch_size": 32, "batch_size": 4}})
    plain = pipeline_flops(params, (64, 64), 3, 5, 30)
    consistency = params.model_copy(update={"train": params.train.model_copy(update={"consistency_weight": 1.0, "consistency_batch": 2})})
    flops = pipeline_flops(consistency, (64, 64), 3, 5, 30)
    teacher = forward_flops("unet", resolve_kwargs("unet", SMALL), 8, 32)
    assert flops.per_train_step == plain.per_train_step * 6 // 4 + 2 * teacher
    assert flops.validation == plain.validation and flops.evaluate == plain.evaluate


def test_an_auto_context_step_adds_its_second_network_to_training_and_every_tile() -> None:
    from emseg.networks.architectures import AUTO_CONTEXT_KWARGS

    params = Params.model_validate({"model": {"unet": SMALL}, "train": {"steps": 40, "val_every": 20, "patch_size": 32}})
    plain = pipeline_flops(params, (64, 64), 3, 5, 30)
    cascade = pipeline_flops(params.model_copy(update={"model": params.model.model_copy(update={"auto_context": True})}), (64, 64), 3, 5, 30)
    # the second network alone, on the slice and the first's 8 affinities
    second = forward_flops("unet", AUTO_CONTEXT_KWARGS, 8, 32, in_channels=1 + 8)
    assert cascade.per_tile == plain.per_tile + second
    assert cascade.per_train_step > plain.per_train_step + 2 * second  # forward and backward of both, over the batch
