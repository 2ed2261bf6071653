import pickle
from pathlib import Path

import pytest
import torch

from emseg.config.defaults import FALLBACK_THRESHOLD
from emseg.errors import EmsegError
from emseg.networks.architectures import build_network, resolve_kwargs
from emseg.networks.model_file import FORMAT_VERSION, ModelConfig, load_model, read_model_file, save_model, with_cell_step
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION

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


def _as_version_1(path: Path, threshold: object) -> None:
    """Rewrite a saved model file the way format version 1 stored it: the threshold inside info.val."""
    payload = torch.load(path, weights_only=True)
    config = payload["config"]
    config.pop("val_threshold")
    config["info"] = {"val": {"threshold": threshold}} if threshold is not None else {}
    payload["version"] = 1
    torch.save(payload, path)


@pytest.mark.parametrize(("stored", "expected"), [(0.4, 0.4), (None, None), (3.0, None), (True, None)])
def test_version_1_files_still_load_with_their_threshold(tmp_path: Path, stored: object, expected: float | None) -> None:
    path, model = _saved(tmp_path)
    _as_version_1(path, stored)
    loaded, config = load_model(path)
    assert config.val_threshold == expected
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_the_threshold_is_a_field_of_the_current_format(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    path = tmp_path / "model.pt"
    save_model(path, build_network("unet", kwargs), ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, val_threshold=0.3))
    payload = torch.load(path, weights_only=True)
    assert payload["version"] == FORMAT_VERSION == 3 and payload["config"]["val_threshold"] == 0.3
    assert load_model(path)[1].val_threshold == 0.3


@pytest.mark.parametrize(
    ("given", "validated", "expected"),
    [(0.25, 0.4, (0.25, "given")), (None, 0.4, (0.4, "the model's validated one")), (None, None, (FALLBACK_THRESHOLD, "default"))],
)
def test_one_resolver_picks_the_threshold_and_says_where_from(given, validated, expected) -> None:
    config = ModelConfig("unet", {}, dict(DEFAULT_NORMALIZATION), 32, val_threshold=validated)
    assert config.threshold(given) == expected


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(EmsegError, match="format version 99 is not supported"):
        load_model(path)


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"II*\x00" + bytes(60), "a TIFF image"), (b"\x89PNG\r\n" + bytes(60), "a PNG image"), (b"hello", "not a PyTorch file")],
)
def test_a_file_that_is_no_model_at_all_says_what_it_is(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "picture.tif"
    path.write_bytes(content)
    with pytest.raises(EmsegError, match=f"picture.tif: not an emseg model file \\({what}\\)"):
        load_model(path)


def test_a_cut_model_file_is_called_damaged(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(EmsegError, match="model.pt: not a loadable emseg model \\(truncated, damaged"):
        load_model(path)


def test_an_affinity_model_file_records_its_target_and_offsets(tmp_path: Path) -> None:
    kwargs = resolve_kwargs("unet", TINY_UNET)
    offsets = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
    path = tmp_path / "aff.pt"
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, out_channels=4, target="affinities", offsets=offsets)
    save_model(path, build_network("unet", kwargs, 4), config)
    model, loaded = load_model(path)
    assert loaded.target == "affinities" and loaded.offsets == offsets and loaded.offset_tuples()[2] == (-3, 0)
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 4, 32, 32)
    payload = torch.load(path, weights_only=True)
    payload["config"]["offsets"] = offsets[:3]  # three offsets for four channels
    torch.save(payload, path)
    with pytest.raises(EmsegError, match="1 input / 4 output channels; its context of 0 and affinities target need 1 input / 3 output channels"):
        load_model(path)
    payload["config"]["offsets"], payload["config"]["context"] = offsets, 1  # a context of 1 reads three sections
    torch.save(payload, path)
    with pytest.raises(EmsegError, match="1 input / 4 output channels; its context of 1 and affinities target need 3 input / 4 output"):
        load_model(path)


def test_a_model_of_context_records_it_and_reads_its_sections(tmp_path: Path) -> None:
    kwargs = resolve_kwargs("unet", TINY_UNET)
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, in_channels=5, context=2)
    save_model(tmp_path / "ctx.pt", build_network("unet", kwargs, in_channels=5), config)
    model, loaded = load_model(tmp_path / "ctx.pt")
    assert loaded.context == 2 and loaded.expected_in_channels() == 5
    with torch.no_grad():
        assert model(torch.zeros(1, 5, 32, 32)).shape == (1, 1, 32, 32)


def test_format_1_called_a_boundary_model_membrane(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["config"]["target"] = "membrane"
    torch.save(payload, path)
    assert load_model(path)[1].target == "boundary"


def test_format_3_carries_the_pixel_size_and_the_cell_step(tmp_path: Path) -> None:
    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    network = build_network("unet", kwargs)
    path, final = tmp_path / "network.pt", tmp_path / "model.pt"
    save_model(path, network, ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, pixel_size=[50.0, 4.6, 4.6]))
    assert load_model(path)[1].pixel_size_yx() == (4.6, 4.6) and load_model(path)[1].cell_step() is None
    cells = {"method": "gasp", "settings": {"beta": 0.4}, "chosen_on": "validation slices 22-24", "v_rand": 0.97}
    config = with_cell_step(path, final, cells)
    loaded_model, loaded = load_model(final)
    assert loaded.cell_step() == ("gasp", {"beta": 0.4}) and loaded.cells == cells == config.cells
    assert loaded.pixel_size == [50.0, 4.6, 4.6]
    for key, value in network.state_dict().items():  # the weights are untouched
        assert torch.equal(loaded_model.state_dict()[key], value)


@pytest.mark.parametrize("size", [[4.0, 4.0], [50.0, -4.0, 4.0], "4nm"])
def test_a_malformed_pixel_size_reads_as_unknown(size: object) -> None:
    raw = {"arch": "unet", "kwargs": {}, "normalization": {}, "patch_size": 32, "pixel_size": size, "cells": {"settings": {}}}
    config = ModelConfig.from_payload(raw, 3)
    assert config.pixel_size_yx() is None and config.cell_step() is None
