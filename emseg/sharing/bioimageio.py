"""A BioImage Model Zoo package of an emseg model (format 0.5), for ilastik, deepImageJ, QuPath and bioimageio.core.

The package holds the network without emseg around it: the MONAI network as
`pytorch_state_dict` (with its architecture, `monai.networks.nets.<Class>` and its
arguments; for an auto-context model, two of them in a row, from the source file
[`auto_context_architecture`][emseg.sharing.auto_context_architecture] that the package
carries) and as `torchscript`; the per-slice z-score as preprocessing; input sizes in
steps of the network's divisor, with a halo; a test input (a patch-sized crop) and the
output expected of it; a cover image, documentation and citations.
`bioimageio.core.test_model` runs it (the test suite does), and its output equals
emseg's own on the test input, within `TOLERANCE`. What the output is depends on the
model's target (`HEADS`, one [`Head`][emseg.sharing.bioimageio.Head] per target):

* a boundary model: a sigmoid and `1 - p` as postprocessing, so that the output is the
  cell-interior probability `emseg predict` writes (high = cell);
* an affinity model: a sigmoid, so that the output holds one channel per offset, the
  probability that the pixel and the one at that offset lie in different cells (the
  sense elf's mutex watershed takes); the offsets are in the package's `config`
  (`mws: offsets`, where torch-em's affinity packages keep them, and `emseg: offsets`).

ONNX weights are not written: the export needs the `onnx` package, which emseg does
not depend on.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg.errors import EmsegError
from emseg.inference.predictor import Predictor
from emseg.networks.architectures import AUTO_CONTEXT_ARCH, IN_CHANNELS, REGISTRY, SPATIAL_DIMS
from emseg.networks.model_file import ModelConfig, load_model
from emseg.preprocessing.normalization import _EPS
from emseg.segmentation.thinning import membrane_to_cell
from emseg.visualization import MEMBRANE_RGB, grey_rgb, tint, write_rgb_png

#: the largest absolute difference the package's output may have from emseg predict's (stated in the package)
TOLERANCE = 1e-4
#: context a tile needs on each side, pixels (at most a quarter of the training patch)
HALO = 32
CITATIONS = (
    ("Arganda-Carreras et al. 2015, Crowdsourcing the creation of image segmentation algorithms for connectomics (the ISBI 2012 challenge)", "10.3389/fnana.2015.00142"),
    ("Cardona et al. 2010, An integrated micro- and macroarchitectural analysis of the Drosophila brain (the data)", "10.1371/journal.pbio.1000502"),
)


@dataclass(frozen=True)
class Head:
    """What a package's output is, for one model target: its tensor, postprocessing, test output and documentation."""

    tensor_id: str
    description: str
    #: the output channels' names, from the model's config
    channel_names: Callable[[ModelConfig], list[str]]
    #: the sigmoid's inverse, ``1 - p``, after it (a boundary model's output is the cell-interior probability)
    invert: bool
    #: the output (C, H, W) emseg computes for a slice, as the package must reproduce it
    expected: Callable[[Predictor, np.ndarray], np.ndarray]
    documentation: Callable[[ModelConfig], str]


def _offset_name(offset: tuple[int, int]) -> str:
    return f"dy{offset[0]}_dx{offset[1]}".replace("-", "m")


HEADS: dict[str, Head] = {
    "boundary": Head(
        "cell_probability",
        "cell-interior probability: 1 inside a cell, 0 on a membrane",
        lambda config: ["cell"],
        True,
        lambda predictor, image: predictor.cell(image)[None],
        lambda config: "* **Output**: the cell-interior probability (1 = inside a cell, 0 = membrane), the convention of the ISBI 2012 "
        f"challenge. Threshold it (the model's validated threshold: {config.threshold()[0]:g}) to get the cells.\n",
    ),
    "affinities": Head(
        "affinities",
        "per offset (dy, dx): the probability that the pixel and the one at (y + dy, x + dx) lie in different cells",
        lambda config: [_offset_name(offset) for offset in config.offset_tuples() or ()],
        False,
        lambda predictor, image: predictor.predict(image).affinities,
        lambda config: "* **Output**: affinities, one channel per offset (dy, dx) = "
        f"{[list(offset) for offset in config.offset_tuples() or ()]}: the probability that the pixel and the one at "
        "(y + dy, x + dx) lie in *different* cells (1 across a membrane, 0 inside one cell). The offsets are also in the "
        "package's config (`mws: offsets`). The first two channels are the nearest neighbours; their mean is a membrane map. "
        "Cells come from an agglomeration of them: elf's mutex watershed "
        "(`elf.segmentation.mutex_watershed.mutex_watershed(affinities, offsets, strides=[2, 2])`) or GASP.\n",
    ),
}


def _axis_scale(config: ModelConfig, index: int) -> dict[str, Any]:
    """The `scale` and `unit` of spatial axis `index` (0 = y, 1 = x): the model's pixel size in nm, or nothing when unknown."""
    size = config.pixel_size_yx()
    return {} if size is None else {"scale": size[index], "unit": "nanometer"}


def _documentation(config: ModelConfig, path: Path, halo: int) -> Path:
    kind = "membrane" if config.target == "boundary" else "affinity"
    path.write_text(
        f"# emseg {kind} model\n\n"
        + (f"Two MONAI networks in a row (auto-context: a `{REGISTRY[config.arch].constructor.__name__}`, then a thin "
           f"`{REGISTRY[AUTO_CONTEXT_ARCH].constructor.__name__}` that reads the slice and the first one's sigmoid)"
           if config.auto_context else f"A MONAI `{REGISTRY[config.arch].constructor.__name__}`")
        + " trained by the emseg pipeline "
        "(https://github.com, `dvc repro`) to find cell membranes in serial-section electron microscopy.\n\n"
        "* **Input**: one grey EM slice (`y`, `x`), any size in steps of the network's divisor; each slice is "
        "z-scored (mean 0, standard deviation 1) before the network.\n"
        + HEADS[config.target].documentation(config)
        + "* **Tiles**: predict large images in tiles of the training patch size "
        f"({config.patch_size} px) with a halo of {halo} px.\n\n"
        f"Validation scores at training: {config.info.get('val', {})}.\n"
    )
    return path


def _write_inputs(model: torch.nn.Module, config: ModelConfig, image: np.ndarray, folder: Path) -> tuple[Path, Path, Path]:
    """The test input (1, 1, P, P) as float32, its expected output (1, C, P, P), and a cover image; from `image`."""
    size = config.patch_size
    crop = np.ascontiguousarray(image[:size, :size])
    if crop.shape != (size, size):
        raise EmsegError(f"the test image is smaller than the model's patch ({crop.shape} < {size}x{size})")
    predictor = Predictor(model, config, amp=False)
    expected = HEADS[config.target].expected(predictor, crop)
    np.save(folder / "test_input.npy", crop.astype(np.float32)[None, None])
    np.save(folder / "test_output.npy", expected.astype(np.float32)[None])
    cell = membrane_to_cell(predictor.membrane(crop))
    write_rgb_png(folder / "cover.png", tint(grey_rgb(crop.astype(np.uint8) if crop.dtype != np.uint8 else crop), cell < config.threshold()[0], MEMBRANE_RGB))
    return folder / "test_input.npy", folder / "test_output.npy", folder / "cover.png"


#: the source of an auto-context model's architecture, copied into its package
AUTO_CONTEXT_SOURCE = Path(__file__).with_name("auto_context_architecture.py")


def _architecture(model: torch.nn.Module, config: ModelConfig, folder: Path):
    """The package's architecture (a `bioimageio.spec` description) and the bare network it describes, the model's weights in it.

    A single network is `monai.networks.nets.<Class>`; an auto-context model is
    `AutoContextNetwork` from a copy of `AUTO_CONTEXT_SOURCE` in `folder`, loaded from that
    copy so that the traced weights are the package's own architecture.
    """
    from bioimageio.spec.model import v0_5 as spec

    kwargs = {"spatial_dims": SPATIAL_DIMS, "in_channels": IN_CHANNELS, "out_channels": config.out_channels, **config.kwargs}
    constructor = REGISTRY[config.arch].constructor
    if not config.auto_context:
        return spec.ArchitectureFromLibraryDescr(callable=spec.Identifier(constructor.__name__), import_from="monai.networks.nets", kwargs=kwargs), model.net
    source = folder / AUTO_CONTEXT_SOURCE.name
    shutil.copyfile(AUTO_CONTEXT_SOURCE, source)
    # the second network's channels as build_network made them (the slice and the first's outputs in), not derived again here
    built = model.net.second
    second = {"spatial_dims": SPATIAL_DIMS, "in_channels": built.in_channels, "out_channels": built.out_channels, **config.auto_context_kwargs}
    cascade = {"first_class": constructor.__name__, "first_kwargs": kwargs, "second_class": REGISTRY[AUTO_CONTEXT_ARCH].constructor.__name__, "second_kwargs": second}
    module_spec = importlib.util.spec_from_file_location("emseg_package_architecture", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    net = module.AutoContextNetwork(**cascade)
    net.load_state_dict(model.net.state_dict())
    return spec.ArchitectureFromFileDescr(source=source, callable=spec.Identifier("AutoContextNetwork"), kwargs=cascade), net


def _weights(net: torch.nn.Module, config: ModelConfig, folder: Path) -> tuple[Path, Path]:
    """The bare network's state dict, and its torchscript trace."""
    net = net.eval()
    state = folder / "weights.pt"
    torch.save(net.state_dict(), state)
    with warnings.catch_warnings():
        # torch 2.13 calls TorchScript deprecated, and the tracer notes instance norm's size check;
        # deepImageJ and ilastik read TorchScript, and the package's sizes keep that check true
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(net, torch.zeros(1, IN_CHANNELS, config.patch_size, config.patch_size))
    script = folder / "weights.torchscript.pt"
    traced.save(str(script))
    return state, script


def describe(model_path: Path, image: np.ndarray, folder: Path):
    """The BioImage Model Zoo description (a `bioimageio.spec` model description, format 0.5) of the model at `model_path`.

    Its files (weights, test tensors, cover, documentation) are written into `folder`; the
    test input is the top-left patch-sized crop of `image`.
    """
    from bioimageio.spec.model import v0_5 as spec

    model, config = load_model(model_path)
    if config.aux_channels:
        raise EmsegError(f"{model_path}: the model carries an auxiliary training head; its BioImage Model Zoo package is not written yet")
    if config.context:
        raise EmsegError(
            f"{model_path}: the model reads {config.context} section(s) on each side of a slice; its BioImage Model Zoo package "
            "is not written yet (export a model of context 0)"
        )
    head = HEADS[config.target]
    divisor = model.divisor
    halo = min(HALO, config.patch_size // 4)
    smallest = max(2 * divisor, -(-(2 * halo + divisor) // divisor) * divisor)
    test_input, test_output, cover = _write_inputs(model, config, image, folder)
    architecture, net = _architecture(model, config, folder)
    state, script = _weights(net, config, folder)
    size = spec.ParameterizedSize(min=smallest, step=divisor)
    # the pixel size the model was trained at, on the spatial axes (a consumer rescales its image to it)
    scale = {axis: _axis_scale(config, index) for index, axis in enumerate(("y", "x"))}
    inputs = spec.InputTensorDescr(
        id=spec.TensorId("raw"),
        description="one grey EM slice",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("em")]),
              spec.SpaceInputAxis(id=spec.AxisId("y"), size=size, **scale["y"]), spec.SpaceInputAxis(id=spec.AxisId("x"), size=size, **scale["x"])],
        test_tensor=spec.FileDescr(source=test_input),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[spec.ZeroMeanUnitVarianceDescr(kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=[spec.AxisId("y"), spec.AxisId("x")], eps=_EPS))],
    )
    same = {axis: spec.SizeReference(tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(axis)) for axis in ("y", "x")}
    postprocessing = [spec.SigmoidDescr()]
    if head.invert:
        postprocessing.append(spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=-1.0, offset=1.0)))
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId(head.tensor_id),
        description=head.description,
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier(name) for name in head.channel_names(config)]),
              spec.SpaceOutputAxisWithHalo(id=spec.AxisId("y"), size=same["y"], halo=halo, **scale["y"]),
              spec.SpaceOutputAxisWithHalo(id=spec.AxisId("x"), size=same["x"], halo=halo, **scale["x"])],
        test_tensor=spec.FileDescr(source=test_output),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=postprocessing,
    )
    version = spec.Version(torch.__version__.split("+")[0])
    emseg_config = {
        "tolerance": TOLERANCE, "patch_size": config.patch_size, "val_threshold": config.threshold()[0], "target": config.target,
        "pixel_size_nm": config.pixel_size, "cells": config.cells,
    }
    extra_config = {}
    if config.target == "affinities":
        offsets = [list(offset) for offset in config.offset_tuples() or ()]
        emseg_config["offsets"] = offsets
        extra_config["mws"] = {"offsets": offsets}
    kind = "membrane" if config.target == "boundary" else "affinity"
    return spec.ModelDescr(
        name=f"emseg {config.arch} {kind} model",
        description=f"Cell membranes in serial-section EM (ISBI 2012 style): {head.description}",
        authors=[spec.Author(name="emseg contributors")],
        cite=[spec.CiteEntry(text=text, doi=spec.Doi(doi)) for text, doi in CITATIONS],
        license=spec.LicenseId("Apache-2.0"),
        documentation=spec.FileDescr(source=_documentation(config, folder / "README.md", halo)),
        covers=[spec.FileDescr(source=cover)],
        tags=["electron-microscopy", "membrane-segmentation", "2d", "pytorch", "monai", "isbi2012"] + (["affinities", "mutex-watershed"] if config.target == "affinities" else []),
        inputs=[inputs],
        outputs=[outputs],
        weights=spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=state,
                architecture=architecture,
                pytorch_version=version,
            ),
            torchscript=spec.TorchscriptWeightsDescr(source=script, pytorch_version=version, parent="pytorch_state_dict"),
        ),
        config={"emseg": emseg_config, **extra_config,
                "bioimageio": {"reproducibility_tolerance": [{"absolute_tolerance": TOLERANCE, "relative_tolerance": 0.0, "mismatched_elements_per_million": 0}]}},
    )


def export_bioimageio(model_path: str | os.PathLike[str], out: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write the BioImage Model Zoo package of the model at `model_path` to `out`, atomically.

    Args:
        model_path: The emseg model file.
        out: The package to write, a `.zip` file.
        image: A slice whose patch-sized crop becomes the test input.

    Returns:
        `out`.

    Raises:
        EmsegError: `out` is not a `.zip` in an existing folder, the image is smaller than the
            model's patch, or the model file cannot be loaded.
    """
    from bioimageio.spec import save_bioimageio_package

    out = Path(out)
    if out.suffix.lower() != ".zip":
        raise EmsegError(f"--bioimageio {out}: the package is a .zip file")
    if not out.parent.is_dir():
        raise EmsegError(f"--bioimageio {out}: folder {out.parent} not found")
    with tempfile.TemporaryDirectory(prefix="emseg-export-") as tmp:
        description = describe(Path(model_path), image, Path(tmp))
        from emseg.io.atomic import atomic_output

        with atomic_output(out) as target:
            save_bioimageio_package(description, output_path=target.with_suffix(".zip"))
            target.with_suffix(".zip").replace(target)
    return out
