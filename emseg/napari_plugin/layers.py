"""Between napari layers and emseg: which layers can be segmented, their pixel size, and the layers a run adds.

No Qt here: the widgets ([`segment`][emseg.napari_plugin.segment], ...) call these, and the
tests call them on plain layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer

from emseg.errors import EmsegError
from emseg.segmentation.measurements import PixelSize

#: what a segmentation run adds, after the image layer's name: the membrane probability, the membrane mask, the cells,
#: and with TTA the uncertainty (the variance across its 8 variants)
OUTPUT_SUFFIXES = {"membrane_probability": " membrane probability", "membranes": " membranes", "cells": " cells", "uncertainty": " uncertainty"}
#: the key of a cells layer's metadata where the run that made it is described
METADATA_KEY = "emseg"


def check_image_layer(layer: Layer | None) -> np.ndarray:
    """The pixels of an image layer emseg can segment: a grey slice `(H, W)` or a stack `(Z, H, W)`, read into memory.

    Raises:
        EmsegError: No layer, not an image layer, an RGB(A) layer, a multiscale pyramid, or
            other than 2 or 3 dimensions (one line naming the layer).
    """
    if layer is None:
        raise EmsegError("no image layer: open an EM image first (File > Open, or File > Open Sample > emseg)")
    if not isinstance(layer, Image):
        raise EmsegError(f"layer {layer.name!r} is not an image layer")
    if layer.rgb:
        raise EmsegError(f"layer {layer.name!r} is RGB: emseg segments grey EM images (convert it to grey first)")
    if layer.multiscale:
        raise EmsegError(f"layer {layer.name!r} is a multiscale pyramid: segment it with emseg predict (block-wise) and open its outputs")
    if layer.ndim not in (2, 3):
        raise EmsegError(f"layer {layer.name!r} has {layer.ndim} dimensions: emseg takes a slice (2-D) or a stack of slices (3-D)")
    data = np.asarray(layer.data)
    if not (data.dtype == bool or np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise EmsegError(f"layer {layer.name!r}: unsupported pixel type {data.dtype}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise EmsegError(f"layer {layer.name!r} contains NaN or infinite values")
    return data


def layer_pixel_size(layer: Layer) -> PixelSize | None:
    """The in-plane pixel size a layer's scale says, when its units are lengths (napari's `units`); None otherwise.

    A scale without a length unit (napari's default `pixel`) says nothing about nanometres,
    so it gives None: the image is then predicted as if at the model's pixel size.
    """
    unit = layer.units[-1]
    try:
        nm = float((layer.scale[-1] * unit).to("nm").magnitude)
    except Exception:  # pint's DimensionalityError: pixels, or any unit that is not a length
        return None
    return PixelSize.in_nm(nm) if nm > 0 else None


def follow_layers(viewer: Any, *choices: Any) -> None:
    """Keep layer choices (magicgui's layer combo boxes) up to date as layers are added to and removed from `viewer`."""
    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        for choice in choices:
            event.connect(choice.reset_choices)


def segmented_image(viewer: Any, cells: Labels | None) -> Image | None:
    """The image layer a cells layer was segmented from (named in its metadata), if it is still in the viewer."""
    name = cells_run(cells).get("image_layer") if cells is not None else None
    if name and name in viewer.layers and isinstance(viewer.layers[name], Image):
        return viewer.layers[name]
    return None


def source_path(layer: Layer) -> Path | None:
    """The file a layer was opened from, if napari knows it."""
    path = layer.source.path
    return Path(path) if path else None


@dataclass(frozen=True)
class OutputLayer:
    """One layer a run adds (or updates): its data, napari layer type and keyword arguments."""

    data: np.ndarray
    kwargs: dict[str, Any]
    layer_type: str


def output_layers(
    image: Image,
    membrane_probability: np.ndarray,
    membranes: np.ndarray,
    cells: np.ndarray,
    run: dict[str, Any],
    uncertainty: np.ndarray | None = None,
) -> list[OutputLayer]:
    """The membrane probability (image), membrane mask and cells (labels) of `image`, on its grid: same scale, translation and units.

    `run` (the model, pixel size, cell step, ...) goes into the cells layer's metadata, where
    the measurement and fine-tuning widgets read it. `uncertainty` (a run with TTA) comes
    last, hidden: an image layer of the variance across the test-time augmentations.
    """
    grid = {"scale": image.scale, "translate": image.translate, "units": image.units}
    name = image.name
    unsure = [] if uncertainty is None else [
        OutputLayer(uncertainty, {"name": name + OUTPUT_SUFFIXES["uncertainty"], "colormap": "inferno",
                                  "blending": "additive", "visible": False, **grid}, "image")
    ]
    return [
        OutputLayer(membrane_probability, {"name": name + OUTPUT_SUFFIXES["membrane_probability"], "colormap": "magma",
                                           "contrast_limits": (0.0, 1.0), "blending": "additive", "visible": False, **grid}, "image"),
        OutputLayer(membranes, {"name": name + OUTPUT_SUFFIXES["membranes"], "opacity": 0.5, "visible": False, **grid}, "labels"),
        OutputLayer(cells, {"name": name + OUTPUT_SUFFIXES["cells"], "opacity": 0.5, "metadata": {METADATA_KEY: run}, **grid}, "labels"),
        *unsure,
    ]


def put_layers(viewer: Any, outputs: list[OutputLayer]) -> list[Layer]:
    """Add each output to the viewer, or replace the data of the layer of its name (keeping how the user shows it)."""
    made = []
    for output in outputs:
        name = output.kwargs["name"]
        if name in viewer.layers and viewer.layers[name]._type_string == output.layer_type:
            layer = viewer.layers[name]
            layer.data = output.data
            for key in ("scale", "translate", "metadata"):
                if key in output.kwargs:
                    setattr(layer, key, output.kwargs[key])
        else:
            if name in viewer.layers:  # a layer of another kind took the name: make room
                viewer.layers.remove(name)
            layer = viewer.add_layer(Layer.create(output.data, output.kwargs, output.layer_type))
        made.append(layer)
    return made


def cells_run(layer: Labels) -> dict[str, Any]:
    """What made a cells layer (the model, the image layer, the pixel size...), from its metadata; empty for other labels."""
    return dict(layer.metadata.get(METADATA_KEY) or {})
