"""emseg.training.fit: training on a lab's own slices without DVC, the entry of `emseg train`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emseg.config.layout import UNLABELLED_VALUE
from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.networks.model_file import load_model
from emseg.training.fit import MIN_FOR_HOLD_OUT, fit, hold_out

from conftest import TINY_PROFILE, merge, synthetic_stack

#: the tiny profile, with a fine-tuning schedule of a few steps and a small cell-step grid
PARAMS = parse_params(merge(TINY_PROFILE, {"train": {"finetune": {"steps": 2, "val_every": 2}}, "segment": {"method": "components", "components": {"threshold": [0.3, 0.7]}}}))


@pytest.mark.parametrize(
    ("n", "val", "expected"),
    [
        (1, None, ([0], [0])),
        (MIN_FOR_HOLD_OUT - 1, None, ([0, 1], [0, 1])),
        (MIN_FOR_HOLD_OUT, None, ([0, 1], [2])),
        (10, None, (list(range(8)), [8, 9])),
        (10, 0, (list(range(10)), list(range(10)))),
        (4, 3, ([0], [1, 2, 3])),
    ],
)
def test_the_hold_out_rule(n: int, val: int | None, expected: tuple[list[int], list[int]]) -> None:
    assert hold_out(n, val) == expected


@pytest.mark.parametrize(("n", "val"), [(0, None), (3, 3), (3, -1)])
def test_a_hold_out_that_leaves_nothing_to_train_is_refused(n: int, val: int | None) -> None:
    with pytest.raises(EmsegError):
        hold_out(n, val)


def test_fit_writes_a_model_with_its_pixel_size_and_the_cell_step_chosen_on_held_out_slices(tmp_path: Path) -> None:
    images, labels = synthetic_stack(4, 48, 48)
    result = fit(list(images), list(labels), tmp_path / "models" / "model.pt", PARAMS, pixel_size=[50.0, 4.6, 4.6])
    _, config = load_model(tmp_path / "models" / "model.pt")
    assert result.train_slices == [0, 1, 2] and result.val_slices == [3] and result.held_out
    assert config.pixel_size == [50.0, 4.6, 4.6] and config.info["steps"] == PARAMS.train.steps
    assert config.cells == result.cells and config.cells["method"] == "components"
    assert config.cells["chosen_on"] == "held-out labelled slices [3]" and config.cell_step()[1]["threshold"] in (0.3, 0.7)
    # the folder made at the end; the network and the logs went with the temporary folder
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")] == ["models", "models/model.pt"]
    assert "chosen on held-out labelled slices [3]" in result.line()


def test_fine_tuning_starts_from_the_model_on_the_finetune_schedule_and_takes_sparse_labels(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 48, 48, seed=5)
    base = fit(list(images), list(labels), tmp_path / "base.pt", PARAMS, pixel_size=[50.0, 4.0, 4.0])
    sparse = labels.copy()
    sparse[1, :, 24:] = UNLABELLED_VALUE  # half of the second slice nobody labelled
    tuned = fit(list(images), list(sparse), tmp_path / "tuned.pt", PARAMS, init=base.model_path, pixel_size=[50.0, 4.0, 4.0])
    _, config = load_model(tmp_path / "tuned.pt")
    assert config.info["init_from"] == str(base.model_path) and config.info["steps"] == PARAMS.train.finetune.steps
    # nothing to hold out: the fine-tuned model keeps the cell step of the model it started from
    assert not tuned.held_out and config.cell_step() == load_model(base.model_path)[1].cell_step()
    assert config.cells["chosen_on"] == "the training slices [0, 1] (none held out); kept: no labelled slice left to hold out"
    assert np.isfinite(tuned.best_val["v_rand"])


def test_a_fine_tune_trains_the_network_it_starts_from_whatever_the_params_say(tmp_path: Path) -> None:
    from emseg.training.fit import starting_point

    images, labels = synthetic_stack(3, 48, 48)
    base = fit(list(images), list(labels), tmp_path / "base.pt", PARAMS)
    other = PARAMS.model_copy(update={"model": PARAMS.model.model_copy(update={"target": "boundary", "context": 1})})
    run, config, differs = starting_point(base.model_path, other)
    assert differs == ["target", "offsets", "out_channels", "context"] and run.model.target == "affinities" and run.model.context == 0
    assert run.train == other.train  # only the network is the model's
    fit(list(images), list(labels), tmp_path / "tuned.pt", other, init=base.model_path)
    _, tuned = load_model(tmp_path / "tuned.pt")
    assert (tuned.target, tuned.offsets, tuned.context) == (config.target, config.offsets, 0)


def test_an_init_that_is_no_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    images, labels = synthetic_stack(2, 48, 48)
    (tmp_path / "notes.txt").write_text("{}")
    with pytest.raises(EmsegError, match="notes.txt"):
        fit(list(images), list(labels), tmp_path / "tuned.pt", PARAMS, init=tmp_path / "notes.txt")
    assert not (tmp_path / "tuned.pt").exists()


def test_a_listener_sees_every_update_and_can_stop_the_run_leaving_nothing(tmp_path: Path) -> None:
    from emseg.errors import Cancelled

    images, labels = synthetic_stack(2, 48, 48)
    params = PARAMS.model_copy(update={"train": PARAMS.train.model_copy(update={"log_every": 1, "checkpoint_every": 1})})
    seen = []
    result = fit(list(images), list(labels), tmp_path / "m.pt", params, listener=seen.append, provenance={"image": "em.tif", "slices": [3, 5]})
    assert [status.step for status in seen] == list(range(1, params.train.steps + 1)) and seen[-1].total == params.train.steps
    _, config = load_model(result.model_path)
    assert config.info["provenance"] == {"base_model": None, "train_slices": [0, 1], "val_slices": [], "steps": params.train.steps,
                                         "image": "em.tif", "slices": [3, 5]}

    def stop(status) -> None:
        raise Cancelled()

    with pytest.raises(Cancelled):
        fit(list(images), list(labels), tmp_path / "stopped" / "m.pt", params, listener=stop)
    assert not (tmp_path / "stopped").exists()


def test_run_params_are_the_defaults_or_a_files_checked_against_the_registries(tmp_path: Path) -> None:
    from emseg.training.fit import load_run_params

    assert load_run_params(None) == parse_params({})
    (tmp_path / "params.yaml").write_text("segment:\n  method: nope\n")
    with pytest.raises(EmsegError, match="segment.method"):
        load_run_params(tmp_path / "params.yaml")


def test_a_model_of_context_trains_on_each_slice_with_its_sections_and_records_them(tmp_path: Path) -> None:
    images, labels = synthetic_stack(4, 48, 48)
    params = parse_params(merge(TINY_PROFILE, {"model": {"context": 1}, "segment": {"method": "components", "components": {"threshold": [0.5]}}}))
    fit(list(images), list(labels), tmp_path / "model.pt", params)
    model, config = load_model(tmp_path / "model.pt")
    assert config.context == 1 and config.in_channels == 3
    assert next(model.parameters()).shape[1] == 3  # the first convolution reads three sections
    # a fine-tune from it, under params of no context, still gives each slice its sections
    fit(list(images), list(labels), tmp_path / "again.pt", PARAMS, init=tmp_path / "model.pt")
    assert load_model(tmp_path / "again.pt")[1].context == 1


def test_a_model_with_descriptors_trains_their_head_and_predicts_affinities_only(tmp_path: Path) -> None:
    import torch

    images, labels = synthetic_stack(4, 48, 48)
    offsets = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
    params = parse_params(merge(TINY_PROFILE, {"model": {"target": "affinities", "offsets": offsets, "lsd_sigma": 5.0},
                                               "segment": {"method": "components", "components": {"threshold": [0.5]}}}))
    fit(list(images), list(labels), tmp_path / "model.pt", params)
    model, config = load_model(tmp_path / "model.pt")
    assert config.aux_channels == 6 and config.out_channels == 4
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 4, 32, 32)
    assert config.info["lsd_sigma"] == 5.0  # so that a fine-tune trains the head alike
    fit(list(images), list(labels), tmp_path / "tuned.pt", PARAMS, init=tmp_path / "model.pt")
    assert load_model(tmp_path / "tuned.pt")[1].aux_channels == 6


def test_an_auto_context_model_trains_end_to_end_and_fine_tunes_as_one(tmp_path: Path) -> None:
    images, labels = synthetic_stack(4, 48, 48)
    params = parse_params(merge(TINY_PROFILE, {"model": {"auto_context": True}, "segment": {"method": "components", "components": {"threshold": [0.5]}}}))
    fit(list(images), list(labels), tmp_path / "model.pt", params)
    model, config = load_model(tmp_path / "model.pt")
    assert config.auto_context and hasattr(model.net, "second")
    # a fine-tune from it, under params without auto-context, trains the model's two networks
    fit(list(images), list(labels), tmp_path / "tuned.pt", PARAMS, init=tmp_path / "model.pt")
    assert load_model(tmp_path / "tuned.pt")[1].auto_context
