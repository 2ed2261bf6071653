import pickle
from pathlib import Path

import pytest
import torch

from emseg.errors import EmsegError
from emseg.model_file import ModelConfig, load_model, read_model_file, save_model
from emseg.networks import build_network, resolve_kwargs
from emseg.normalization import DEFAULT_NORMALIZATION

from conftest import TINY_UNET


def _saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    model = build_network("unet", kwargs).eval()
    path = tmp_path / "model.pt"
    save_model(path, model, ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32))
    return path, model


def test_round_trip_gives_identical_outputs_with_weights_only(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    assert torch.load(path, weights_only=True)["format"] == "emseg-model"
    loaded, config = load_model(path)
    x = torch.randn(1, 1, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert config.arch == "unet" and config.patch_size == 32


def test_non_emseg_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(EmsegError, match="not an emseg model file"):
        load_model(path)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        # protocol 2, the one torch.load expects, so that only the exploit is under test
        pickle.dump({"format": "emseg-model", "payload": _Exploit(str(marker))}, handle, protocol=2)
    with pytest.raises(EmsegError, match="refused for safety|not a loadable emseg model"):
        read_model_file(path)
    assert not marker.exists()


def test_wrong_channel_count_is_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["in_channels"] = 3
    torch.save(payload, path)
    with pytest.raises(EmsegError, match="3 input"):
        load_model(path)


def test_same_weights_give_the_same_file_bytes(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    again = tmp_path / "again.pt"
    save_model(again, model, ModelConfig("unet", resolve_kwargs("unet", TINY_UNET), dict(DEFAULT_NORMALIZATION), 32))
    assert path.read_bytes() == again.read_bytes()


@pytest.mark.parametrize(
    ("info", "expected"),
    [({"val": {"threshold": 0.4}}, 0.4), ({}, None), ({"val": {}}, None), ({"val": {"threshold": 3.0}}, None), ({"val": {"threshold": True}}, None)],
)
def test_validated_threshold_only_when_recorded_and_in_range(info: dict, expected: float | None) -> None:
    config = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32, info=info)
    assert config.validated_threshold() == expected
