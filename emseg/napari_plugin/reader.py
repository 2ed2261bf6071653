"""Open `emseg predict`'s outputs in napari as layers that overlay the raw image: the npe2 reader contribution.

[`get_reader`][emseg.napari_plugin.reader.get_reader] claims only emseg's own files, recognised
by name: `<stem>_cells`, `<stem>_membrane` and `<stem>_proba` with the file types
`OUTPUTS` of [`emseg.inference.outputs`][emseg.inference.outputs] gives them (`.tiff` read as `.tif`), and the
OME-Zarr stores `<stem>_<kind>.ome.zarr` of a volume run. Everything else is left to napari's
other readers. [`read_outputs`][emseg.napari_plugin.reader.read_outputs] makes one layer per
file:

* cells: a labels layer, the cell ids as stored (`uint32`, 0 = outlines);
* membrane: a labels layer of 0/1 (`uint8`, 1 = membrane), tinted as emseg's overlay tints it,
  so that it lies over the raw image without hiding it;
* proba: an image layer, the `float32` cell-interior probability, contrast 0..1.

Scale and units come from the file: a TIFF's pixel size
([`tiff_voxel_size`][emseg.io.stacks.tiff_voxel_size], in nm), an OME-Zarr store's
full-resolution scale and axis units; a file that says nothing gets neither (napari's pixels).
An OME-Zarr store is opened lazily, as its pyramid (`multiscale=True`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import EmsegError
from emseg.inference.outputs import OUTPUTS
from emseg.io.images import TIFF_SUFFIXES

__all__ = ["LAYERS", "OME_ZARR_SUFFIX", "EmsegOutput", "LayerData", "emseg_output", "get_reader", "read_outputs"]

#: napari's layer data tuple: (data, layer keyword arguments, layer type)
LayerData = tuple[Any, dict[str, Any], str]
#: the output kinds shown as layers: (the layer's name after the stem, the napari layer type)
LAYERS: dict[str, tuple[str, str]] = {"cells": ("cells", "labels"), "membrane": ("membranes", "labels"), "proba": ("cell probability", "image")}
#: a volume run's stores, `<stem>_<kind>.ome.zarr` (as `emseg.inference.volume.blockwise.store_names` names them)
OME_ZARR_SUFFIX = ".ome.zarr"
#: napari's unit of an axis whose size the file does not give (a z axis of unknown section thickness)
PIXEL_UNIT = "pixel"


@dataclass(frozen=True)
class EmsegOutput:
    """An emseg output file recognised by its name: its kind (a key of `LAYERS`), the input's stem, and whether it is an OME-Zarr store."""

    path: Path
    kind: str
    stem: str
    is_zarr: bool


def _endings(kind: str) -> list[tuple[str, bool]]:
    """The name endings of `kind`'s files after the stem, longest first, each with whether it is a store."""
    spec = OUTPUTS[kind]
    types = {spec.single, spec.stack}
    tiff = {suffix.lstrip(".") for suffix in TIFF_SUFFIXES}
    if types & tiff:  # `.tiff` is the same file type as `.tif`: a file re-saved under the other spelling stays readable
        types |= tiff
    endings = [(f"_{spec.suffix}.{file_type}", False) for file_type in types] + [(f"_{spec.suffix}{OME_ZARR_SUFFIX}", True)]
    return sorted(endings, key=lambda ending: -len(ending[0]))


def emseg_output(path: str | os.PathLike[str]) -> EmsegOutput | None:
    """The emseg output `path` names (by its name alone: nothing is read), or None for any other file."""
    path = Path(path)
    lower = path.name.lower()
    for kind in LAYERS:
        for ending, is_zarr in _endings(kind):
            if lower.endswith(ending):
                return EmsegOutput(path, kind, path.name[: -len(ending)], is_zarr)
    return None


def _paths(path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    return [path] if isinstance(path, (str, os.PathLike)) else list(path)


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The npe2 reader contribution: [`read_outputs`][emseg.napari_plugin.reader.read_outputs] for emseg's outputs, else None.

    Args:
        path: A file or store, or a list of them (napari passes a list for several files dropped at once).

    Returns:
        The reader when every path names an emseg output (cells, membrane or probability map,
        as a TIFF/PNG or an OME-Zarr store); None otherwise, so that napari's other readers
        take the file (a list that mixes in one other file is left to them whole).
    """
    paths = _paths(path)
    if not paths or any(emseg_output(p) is None for p in paths):
        return None
    return read_outputs


def read_outputs(path: str | list[str]) -> list[LayerData]:
    """One napari layer per emseg output file: `(data, kwargs, layer_type)`.

    Args:
        path: A file or store named as `emseg predict` names its outputs, or a list of them.

    Returns:
        The layers in the order of the paths: cells and membranes as `labels`, the probability
        as an `image`; a single slice as 2-D data, a stack as 3-D; a store as its pyramid of
        lazy arrays. `kwargs` hold `name` (`"<stem> cells"`, `"<stem> membranes"`,
        `"<stem> cell probability"`), `metadata` (`emseg_output`: the kind, `path`), and
        `scale` and `units` where the file gives a pixel size.

    Raises:
        EmsegError: A path that is no emseg output, or a missing, damaged or unreadable file
            (one line naming it).
    """
    layers = []
    for item in _paths(path):
        output = emseg_output(item)
        if output is None:
            raise EmsegError(f"{item}: not an emseg output (<stem>_cells.tif, _membrane.png/.tif, _proba.tif or their .ome.zarr stores)")
        layers.append(_read_zarr(output) if output.is_zarr else _read_image(output))
    return layers


# --- the layers ----------------------------------------------------------------------------------


def _kwargs(output: EmsegOutput, is_float: bool) -> dict[str, Any]:
    """The layer's name, metadata and look (no scale)."""
    name, _ = LAYERS[output.kind]
    kwargs: dict[str, Any] = {"name": f"{output.stem} {name}".strip(), "metadata": {"emseg_output": output.kind, "path": str(output.path)}}
    if output.kind == "membrane":
        from emseg.visualization import MEMBRANE_RGB, TINT_ALPHA

        # one colour, emseg's overlay tint, instead of napari's cycle of label colours: the mask is one class
        kwargs["colormap"] = {None: "transparent", 0: "transparent", 1: [c / 255 for c in MEMBRANE_RGB] + [1.0]}
        kwargs["opacity"] = TINT_ALPHA / 256
    elif output.kind == "proba":
        kwargs["colormap"] = "magma"
        if is_float:  # a probability's range; another pixel type is no file of emseg's, left to napari's own limits
            kwargs["contrast_limits"] = (0.0, 1.0)
    return kwargs


def _pixels(output: EmsegOutput, data: Any) -> Any:
    """The layer's pixels from the stored ones (numpy, zarr or dask arrays)."""
    if output.kind == "cells" and np.dtype(data.dtype).kind not in "iu":
        raise EmsegError(f"{output.path}: cell labels must be integers, the file holds {data.dtype}")
    if output.kind == "membrane":
        # stored as 255 = membrane; 0/1 makes label 1 the membrane, the one colour of the layer's colormap
        return (data > 0).astype(np.uint8)
    return data


def _read_image(output: EmsegOutput) -> LayerData:
    from emseg.io.images import read_stack
    from emseg.io.stacks import tiff_voxel_size

    stack = read_stack(output.path)  # (slices, H, W); EmsegError naming the file when missing or damaged
    data = _pixels(output, stack[0] if len(stack) == 1 else stack)
    size = tiff_voxel_size(output.path) if output.path.suffix.lower() in TIFF_SUFFIXES else None
    kwargs = _kwargs(output, np.issubdtype(data.dtype, np.floating))
    if size is not None:
        scale = [size.y, size.x] if data.ndim == 2 else [size.z or 1.0, size.y, size.x]
        # a stack of unknown section thickness keeps one section per step, in napari's own unit for "unknown"
        units = ["nm", "nm"] if data.ndim == 2 else ["nm" if size.z else PIXEL_UNIT, "nm", "nm"]
        kwargs.update(scale=scale, units=units)
    return data, kwargs, LAYERS[output.kind][1]


def _read_zarr(output: EmsegOutput) -> LayerData:
    from emseg.inference.volume import omezarr
    from emseg.inference.volume.sources import emseg_unit
    from emseg.io.stacks import ome_zarr_level, open_zarr

    root = open_zarr(str(output.path), output.path)  # EmsegError: missing, or not a zarr store
    try:
        level = ome_zarr_level(root)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise EmsegError(f"{output.path}: broken OME-Zarr multiscales metadata ({type(exc).__name__}: {exc})") from None
    if level is None:
        raise EmsegError(f"{output.path}: a zarr store without OME-Zarr multiscales metadata")
    try:
        levels = [omezarr.open_level(output.path, index, mode="r") for index in range(omezarr.level_count(output.path))]
    except EmsegError:
        raise
    except Exception as exc:  # noqa: BLE001 -- zarr raises several kinds for a level listed but missing or broken
        raise EmsegError(f"{output.path}: an OME-Zarr level is missing or unreadable ({type(exc).__name__}: {exc})") from None
    if output.kind == "membrane":
        import dask.array as da

        # lazily: a volume's mask is bigger than memory; only the chunks napari shows are read and mapped to 0/1
        levels = [da.from_zarr(array) for array in levels]
    data = [_pixels(output, array) for array in levels]
    kwargs = _kwargs(output, np.issubdtype(np.dtype(levels[0].dtype), np.floating))
    # napari takes level 0's scale and finds the coarser levels' factors from their shapes
    kwargs.update(multiscale=True, scale=list(level.scale))
    if any(level.units):
        # emseg's short names (nm) where it has one, else the OME-NGFF name, which napari's units (pint) read too
        kwargs["units"] = [emseg_unit(unit) or unit if unit else PIXEL_UNIT for unit in level.units]
    return data, kwargs, LAYERS[output.kind][1]
