"""emseg.napari_plugin.layers: which layers can be segmented, their pixel size, and the layers a run adds (no Qt needed)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel
from napari.layers import Image, Labels

from emseg.errors import EmsegError
from emseg.napari_plugin.layers import OUTPUT_SUFFIXES, cells_run, check_image_layer, layer_pixel_size, output_layers, put_layers


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (None, "no image layer: open an EM image first"),
        (Labels(np.zeros((4, 4), np.uint8), name="lab"), "layer 'lab' is not an image layer"),
        (Image(np.zeros((4, 4, 3), np.uint8), name="colour", rgb=True), "layer 'colour' is RGB"),
        (Image([np.zeros((8, 8)), np.zeros((4, 4))], name="pyr", multiscale=True), "layer 'pyr' is a multiscale pyramid"),
        (Image(np.zeros((2, 2, 4, 4)), name="t", rgb=False), "layer 't' has 4 dimensions"),
        (Image(np.full((4, 4), np.nan, np.float32), name="nan"), "layer 'nan' contains NaN or infinite values"),
    ],
)
def test_layers_emseg_cannot_segment_are_refused_in_one_line(layer, message: str) -> None:
    with pytest.raises(EmsegError, match=f"^{message}"):
        check_image_layer(layer)


def test_a_slice_or_a_stack_is_read_into_memory() -> None:
    stack = np.arange(2 * 5 * 6, dtype=np.uint16).reshape(2, 5, 6)
    np.testing.assert_array_equal(check_image_layer(Image(stack)), stack)


@pytest.mark.parametrize(
    ("scale", "units", "nm"),
    [((4.0, 4.0), ("nm", "nm"), 4.0), ((0.005, 0.005), ("um", "um"), 5.0), ((50.0, 2.0, 2.0), ("nm", "nm", "nm"), 2.0), ((4.0, 4.0), None, None)],
)
def test_the_pixel_size_comes_from_a_length_scale_only(scale, units, nm: float | None) -> None:
    size = layer_pixel_size(Image(np.zeros((2,) * len(scale)), scale=scale, units=units))
    assert (size.nm if size else None) == (pytest.approx(nm) if nm else None)


def test_outputs_overlay_the_image_and_replace_their_own_layers_on_a_second_run() -> None:
    viewer = ViewerModel()
    image = viewer.add_image(np.zeros((6, 8)), name="em", scale=(4.0, 4.0), translate=(1.0, 2.0), units=("nm", "nm"))
    cells = np.ones((6, 8), np.uint32)
    made = put_layers(viewer, output_layers(image, np.zeros((6, 8), np.float32), np.zeros((6, 8), np.uint8), cells, {"model": "m.pt"}))
    assert [layer.name for layer in made] == ["em" + OUTPUT_SUFFIXES[key] for key in ("membrane_probability", "membranes", "cells")]
    assert [layer._type_string for layer in made] == ["image", "labels", "labels"]
    assert all(tuple(layer.scale) == (4.0, 4.0) and tuple(layer.translate) == (1.0, 2.0) for layer in made)
    assert cells_run(made[2]) == {"model": "m.pt"} and cells_run(Labels(cells)) == {}
    made[2].opacity = 0.9  # the user's display settings survive a second run
    again = put_layers(viewer, output_layers(image, np.zeros((6, 8), np.float32), np.zeros((6, 8), np.uint8), cells * 2, {"model": "n.pt"}))
    assert len(viewer.layers) == 4 and again[2] is made[2] and made[2].opacity == 0.9
    assert made[2].data.max() == 2 and cells_run(made[2]) == {"model": "n.pt"}
    # a run with TTA adds its uncertainty, hidden, last
    unsure = put_layers(viewer, output_layers(image, np.zeros((6, 8), np.float32), np.zeros((6, 8), np.uint8), cells, {}, np.ones((6, 8), np.float32)))
    assert unsure[3].name == "em" + OUTPUT_SUFFIXES["uncertainty"] and unsure[3]._type_string == "image" and not unsure[3].visible
