"""`emseg export --bioimageio`: a package bioimageio.core validates and runs, whose output is emseg's own,
for a boundary model, an affinity model and an auto-context affinity model."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from emseg.cli.main import main
from emseg.inference.predictor import Predictor
from emseg.networks.architectures import PadToMultiple, build_network, resolve_kwargs
from emseg.networks.model_file import ModelConfig, load_model, save_model
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.sharing.bioimageio import TOLERANCE

from conftest import TINY_UNET, synthetic_slice, tif


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model(path, build_network("unet", kwargs).eval(), ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, val_threshold=0.4))
    return path


OFFSETS = [[-1, 0], [0, -1], [-3, 0], [0, -3]]
CELLS = {"method": "gasp", "settings": {"beta": 0.4}, "chosen_on": "validation slices [3]", "v_rand": 0.9}


@pytest.fixture(scope="module")
def affinity_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(2)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    path = tmp_path_factory.mktemp("affinity_model") / "model.pt"
    config = ModelConfig(
        "unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, out_channels=len(OFFSETS), target="affinities", offsets=OFFSETS, val_threshold=0.4,
        pixel_size=[50.0, 4.6, 4.6], cells=CELLS,
    )
    save_model(path, build_network("unet", kwargs, len(OFFSETS)).eval(), config)
    return path


@pytest.fixture(scope="module")
def auto_context_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(3)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    path = tmp_path_factory.mktemp("auto_context_model") / "model.pt"
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, out_channels=len(OFFSETS), target="affinities", offsets=OFFSETS,
                         val_threshold=0.4, auto_context=True)
    network = build_network("unet", kwargs, len(OFFSETS), auto_context=True).eval()
    with torch.no_grad():  # an untrained second network barely reads the first: make it, so that a wrong first network shows
        for name, weight in network.net.second.named_parameters():
            weight.mul_(3.0 if "weight" in name else 1.0)
    save_model(path, network, config)
    return path


def _export_and_test(model: Path, tmp_path: Path, capsys) -> tuple[dict, np.ndarray, np.ndarray]:
    """Export ``model``, run bioimageio.core's test of the package; its rdf, test input (H, W) and test output (C, H, W)."""
    from bioimageio.core import test_model

    image = tif(tmp_path / "slice.tif", synthetic_slice(80, 72, 3)[0])
    out = tmp_path / "model.zip"
    assert main(["export", str(model), "--bioimageio", str(out), "--image", str(image)]) == 0, capsys.readouterr().err
    names = set(zipfile.ZipFile(out).namelist())
    assert {"rdf.yaml", "weights.pt", "weights.torchscript.pt", "test_input.npy", "test_output.npy", "cover.png", "README.md"} <= names
    summary = test_model(out)
    assert summary.status == "passed", [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    with zipfile.ZipFile(out) as package:
        package.extractall(tmp_path / "unzipped")
    rdf = yaml.safe_load((tmp_path / "unzipped" / "rdf.yaml").read_text())
    return rdf, np.load(tmp_path / "unzipped" / "test_input.npy")[0, 0], np.load(tmp_path / "unzipped" / "test_output.npy")[0]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # inside bioimageio.core
def test_the_package_passes_bioimageio_test_and_reproduces_emseg_predict(model_path: Path, tmp_path: Path, capsys) -> None:
    rdf, test_input, expected = _export_and_test(model_path, tmp_path, capsys)
    assert [axis.get("channel_names") for axis in rdf["outputs"][0]["axes"] if axis["type"] == "channel"] == [["cell"]]
    assert [step["id"] for step in rdf["outputs"][0]["postprocessing"]][:2] == ["sigmoid", "scale_linear"]
    # the package's test input, predicted by emseg predict, gives the package's test output
    tif(tmp_path / "crop.tif", test_input.astype(np.uint8))
    assert main(["predict", str(tmp_path / "crop.tif"), "--model", str(model_path), "--out", str(tmp_path / "pred"), "--outputs", "proba"]) == 0
    np.testing.assert_allclose(tifffile.imread(tmp_path / "pred" / "crop_proba.tif"), expected[0], atol=TOLERANCE)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # inside bioimageio.core
def test_an_affinity_package_outputs_one_channel_per_offset_and_names_them(affinity_model_path: Path, tmp_path: Path, capsys) -> None:
    rdf, test_input, expected = _export_and_test(affinity_model_path, tmp_path, capsys)
    output = rdf["outputs"][0]
    steps = [step["id"] for step in output["postprocessing"]]
    assert output["id"] == "affinities" and "sigmoid" in steps and "scale_linear" not in steps  # no 1 - p: high = different cells
    assert [axis["channel_names"] for axis in output["axes"] if axis["type"] == "channel"] == [["dym1_dx0", "dy0_dxm1", "dym3_dx0", "dy0_dxm3"]]
    assert rdf["config"]["mws"]["offsets"] == rdf["config"]["emseg"]["offsets"] == OFFSETS
    # the model's pixel size on the spatial axes, and its cell step in the config
    spatial = [axis for axis in rdf["inputs"][0]["axes"] + output["axes"] if axis["type"] == "space"]
    assert [(axis["scale"], axis["unit"]) for axis in spatial] == [(4.6, "nanometer")] * 4
    assert rdf["config"]["emseg"]["cells"] == CELLS and rdf["config"]["emseg"]["pixel_size_nm"] == [50.0, 4.6, 4.6]
    assert expected.shape == (len(OFFSETS), *test_input.shape)
    model, config = load_model(affinity_model_path)
    np.testing.assert_allclose(Predictor(model, config, amp=False).predict(test_input).affinities, expected, atol=TOLERANCE)
    assert 0.0 <= expected.min() and expected.max() <= 1.0


@pytest.mark.parametrize(("case", "message"), [("not_a_model", "not an emseg model file"), ("missing_folder", "folder"), ("not_a_zip", "the package is a .zip file")])
def test_bad_exports_are_one_error_and_write_nothing(case: str, message: str, model_path: Path, tmp_path: Path, capsys) -> None:
    model, out = model_path, tmp_path / "out.zip"
    if case == "not_a_model":
        model = tif(tmp_path / "image.tif", np.zeros((8, 8), np.uint8))
    elif case == "missing_folder":
        out = tmp_path / "no-such-folder" / "out.zip"
    else:
        out = tmp_path / "out.tar"
    assert main(["export", str(model), "--bioimageio", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emseg: error:") and message in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == (["image.tif"] if case == "not_a_model" else [])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")  # inside bioimageio.core
def test_an_auto_context_package_carries_its_two_networks_and_reproduces_emseg(auto_context_model_path: Path, tmp_path: Path, capsys) -> None:
    rdf, test_input, expected = _export_and_test(auto_context_model_path, tmp_path, capsys)
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert architecture["callable"] == "AutoContextNetwork" and architecture["source"] == "auto_context_architecture.py"
    assert architecture["kwargs"]["second_kwargs"]["in_channels"] == 1 + len(OFFSETS)
    assert (tmp_path / "unzipped" / "auto_context_architecture.py").is_file()
    model, config = load_model(auto_context_model_path)
    np.testing.assert_allclose(Predictor(model, config, amp=False).predict(test_input).affinities, expected, atol=TOLERANCE)
    # the output is the second network's: the first network's alone, predicted the same way, differs from it
    first = PadToMultiple(model.net.first, model.divisor).eval()
    alone = Predictor(first, dataclasses.replace(config, auto_context=False), amp=False).predict(test_input).affinities
    assert np.abs(alone - expected).max() > 100 * TOLERANCE
