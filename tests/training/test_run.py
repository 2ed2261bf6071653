import json
from pathlib import Path

import torch

from emseg.config.params import ModelParams, TrainParams
from emseg.networks.model_file import load_model
from emseg.training.run import train

from conftest import TINY_UNET, tiny_training_data

TINY_MODEL = ModelParams(arch="unet", unet=TINY_UNET)


def _tiny_train(tmp_path: Path, name: str, **overrides) -> tuple[dict, Path]:
    params = TrainParams(steps=6, batch_size=2, patch_size=32, val_every=3, log_every=2, **overrides)
    model_path = tmp_path / name / "model.pt"
    return train(tiny_training_data(), TINY_MODEL, params, seed=5, model_path=model_path, live_dir=tmp_path / name / "live"), model_path


def test_training_logs_validates_and_saves_a_loadable_model(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "run")
    assert result["best_step"] in (3, 6)
    model, config = load_model(model_path)
    assert config.arch == "unet" and config.kwargs["channels"] == [4, 8, 16]
    assert config.info["val"]["v_rand"] == result["best_val"]["v_rand"]
    assert config.val_threshold == result["best_val"]["threshold"]
    live = tmp_path / "run" / "live"
    for metric in ("train/loss", "train/lr", "train/patches_per_s", "val/loss", "val/v_rand", "val/v_info"):
        rows = (live / "plots" / "metrics" / f"{metric}.tsv").read_text().splitlines()
        assert len(rows) >= 2, metric
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["best_step"] == result["best_step"]


def test_same_seed_same_result_on_cpu(tmp_path: Path) -> None:
    a, path_a = _tiny_train(tmp_path, "a")
    b, path_b = _tiny_train(tmp_path, "b")
    assert a["best_val"] == b["best_val"]
    sa, sb = torch.load(path_a, weights_only=True)["state_dict"], torch.load(path_b, weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_border_weighted_training_runs(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "weighted", border_weight=10.0, border_sigma=3.0)
    assert model_path.is_file() and 0.0 <= result["best_val"]["v_rand"] <= 1.0


def test_ema_weights_are_what_gets_saved(tmp_path: Path) -> None:
    result, model_path = _tiny_train(tmp_path, "ema", ema_decay=0.9)
    plain, plain_path = _tiny_train(tmp_path, "plain")
    ema_state = torch.load(model_path, weights_only=True)["state_dict"]
    plain_state = torch.load(plain_path, weights_only=True)["state_dict"]
    assert any(not torch.equal(ema_state[k], plain_state[k]) for k in plain_state)
    assert 0.0 <= result["best_val"]["v_rand"] <= 1.0


def test_bf16_training_on_cpu_keeps_fp32_weights_and_is_seeded(tmp_path: Path) -> None:
    a, path_a = _tiny_train(tmp_path, "bf16_a", cpu_bf16=True, device="cpu")
    b, path_b = _tiny_train(tmp_path, "bf16_b", cpu_bf16=True, device="cpu")
    plain, plain_path = _tiny_train(tmp_path, "fp32", cpu_bf16=False, device="cpu")
    state_a = torch.load(path_a, weights_only=True)["state_dict"]
    state_b = torch.load(path_b, weights_only=True)["state_dict"]
    state_plain = torch.load(plain_path, weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float32 for v in state_a.values() if v.is_floating_point())
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert any(not torch.equal(state_a[k], state_plain[k]) for k in state_a)
    assert a["best_val"] == b["best_val"]
