"""emseg.napari_plugin.sample_data: the ISBI 2012 slice found offline (EMSEG_SAMPLE_DATA, data/raw, params data.source), and the synthetic slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from emseg.config.defaults import ISBI_PIXEL_SIZE
from emseg.errors import EmsegError
from emseg.io.images import write_tiff
from emseg.napari_plugin import sample_data
from emseg.napari_plugin.sample_data import ENV_VAR, isbi_slice, synthetic_slice

from conftest import ISBI_DIR

#: a tiny stand-in for train-volume.tif: two 8x6 slices, each a value of its own
TINY = np.stack([np.full((8, 6), 10, np.uint8), np.full((8, 6), 20, np.uint8)])


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current folder, and no EMSEG_SAMPLE_DATA."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv(ENV_VAR, raising=False)
    return folder


def _stack(path: Path, pixels: np.ndarray = TINY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiff(path, pixels)
    return path


def _only_layer(layers: list) -> tuple:
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    return data, kwargs


@pytest.mark.parametrize("points_at", ["folder", "file"])
def test_the_environment_variable_names_the_folder_or_the_file(workdir: Path, monkeypatch: pytest.MonkeyPatch, points_at: str) -> None:
    path = _stack(workdir.parent / "isbi" / ("train-volume.tif" if points_at == "folder" else "my-copy.tif"))
    monkeypatch.setenv(ENV_VAR, str(path.parent if points_at == "folder" else path))
    data, kwargs = _only_layer(isbi_slice())
    np.testing.assert_array_equal(data, TINY[0])  # slice 0, 2-D
    assert kwargs["name"] == "ISBI 2012 slice" and kwargs["metadata"] == {"path": str(path)}
    assert kwargs["scale"] == list(ISBI_PIXEL_SIZE[1:]) == [4.0, 4.0] and kwargs["units"] == ["nm", "nm"]


def test_the_fetched_copy_in_data_raw_and_the_order_of_the_places(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _stack(workdir / "data" / "raw" / "train-volume.tif")
    data, kwargs = _only_layer(isbi_slice())
    np.testing.assert_array_equal(data, TINY[0])
    assert kwargs["metadata"]["path"] == str(raw)
    # EMSEG_SAMPLE_DATA comes first
    other = _stack(workdir.parent / "env" / "train-volume.tif", TINY[::-1])
    monkeypatch.setenv(ENV_VAR, str(other.parent))
    data, _ = _only_layer(isbi_slice())
    np.testing.assert_array_equal(data, TINY[1])
    # ... and one that names nothing is passed over for the next place
    monkeypatch.setenv(ENV_VAR, str(workdir.parent / "nowhere"))
    data, _ = _only_layer(isbi_slice())
    np.testing.assert_array_equal(data, TINY[0])


def test_the_local_source_params_yaml_names(workdir: Path) -> None:
    source = _stack(workdir.parent / "lab" / "em" / "volume.tif")
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "../lab/em", "train_images": "volume.tif"}}))
    data, kwargs = _only_layer(isbi_slice())
    np.testing.assert_array_equal(data, TINY[0])
    assert Path(kwargs["metadata"]["path"]).resolve() == source.resolve()


def test_not_found_says_where_it_looked_and_how_to_get_it(workdir: Path) -> None:
    _stack(workdir.parent / "elsewhere" / "train-volume.tif")  # on an http(s) source: not offline, not looked at
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "https://example.org/isbi"}}))
    with pytest.raises(EmsegError) as caught:
        isbi_slice()
    message = str(caught.value)
    assert "\n" not in message
    assert str(workdir / "data" / "raw" / "train-volume.tif") in message and "example.org" not in message
    assert "dvc repro fetch" in message and f"{ENV_VAR} is not set" in message and f"set {ENV_VAR}" in message


def test_not_found_names_what_the_environment_variable_and_params_pointed_at(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(workdir / "missing.tif"))
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "src"}}))
    with pytest.raises(EmsegError) as caught:
        isbi_slice()
    message = str(caught.value)
    assert str(workdir / "missing.tif") in message and str(workdir / "src" / "train-volume.tif") in message
    assert "is not set" not in message


def test_a_damaged_copy_is_named(workdir: Path) -> None:
    raw = workdir / "data" / "raw" / "train-volume.tif"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(b"II*\x00 not a whole TIFF")
    with pytest.raises(EmsegError, match="train-volume.tif"):
        isbi_slice()


def test_the_synthetic_slice_is_em_like_and_the_same_every_time() -> None:
    data, kwargs = _only_layer(synthetic_slice())
    assert data.shape == (512, 512) and data.dtype == np.uint8
    assert kwargs == {"name": "synthetic EM-like slice"}  # a drawn slice has no physical pixel size
    np.testing.assert_array_equal(data, synthetic_slice()[0][0])
    dark = data < 128  # membranes: a thin dark minority
    assert 0.01 < dark.mean() < 0.2


def test_the_samples_are_layers_napari_makes(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari.layers import Layer

    monkeypatch.setenv(ENV_VAR, str(_stack(workdir / "t.tif")))
    isbi, synthetic = (Layer.create(*sample()[0]) for sample in (isbi_slice, synthetic_slice))
    assert (isbi.name, isbi.ndim, list(isbi.scale)) == ("ISBI 2012 slice", 2, [4.0, 4.0])
    assert [str(unit) for unit in isbi.units] == ["nanometer", "nanometer"]
    assert (synthetic.name, synthetic.ndim, list(synthetic.scale)) == ("synthetic EM-like slice", 2, [1.0, 1.0])
    assert [str(unit) for unit in synthetic.units] == ["pixel", "pixel"]


@pytest.mark.skipif(not (ISBI_DIR / "train-volume.tif").is_file(), reason=f"no ISBI 2012 copy at {ISBI_DIR}")
def test_the_real_isbi_slice(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(ISBI_DIR))
    data, kwargs = _only_layer(isbi_slice())
    assert data.shape == (512, 512) and data.dtype == np.uint8
    np.testing.assert_array_equal(data, tifffile.imread(ISBI_DIR / "train-volume.tif", key=0))
    assert kwargs["scale"] == [4.0, 4.0]


def test_the_places_are_looked_at_in_order(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(workdir / "given"))
    (workdir / "given").mkdir()
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "src"}}))
    assert sample_data.isbi_candidates() == [
        workdir / "given" / "train-volume.tif", workdir / "data" / "raw" / "train-volume.tif", str(workdir / "src" / "train-volume.tif")
    ]
