"""Affinities: for each pixel and each offset, whether the pixel and the one at that offset lie in different cells.

The one definition of the affinity target, used by the patch sampler (after a patch's
flips and rotations, so that the target is derived from the label the network sees), by
the losses' masks, by test-time augmentation
([`dihedral_offset`][emseg.networks.affinities.dihedral_offset]) and by the agglomerations.
A channel holds, for offset `(dy, dx)`, the probability that pixel `(y, x)` and pixel
`(y + dy, x + dx)` are *not* in the same cell: 1 across a membrane or on one, 0 inside one
cell; the same sense as the membrane map (high = separate), and the convention of elf's
mutex watershed. The first two offsets are the nearest neighbours; they are also what a
boundary map is made of ([`boundary_from_affinities`][emseg.networks.affinities.boundary_from_affinities]).

Labels follow the canonical convention of [`emseg.config.layout`][emseg.config.layout]: `CELL_VALUE`
= cell, 0 = membrane, `UNLABELLED_VALUE` = nobody labelled the pixel; a pair with an unlabelled
pixel has no target, and its mask is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emseg.config.defaults import DEFAULT_OFFSETS
from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.errors import EmsegError

Offset = tuple[int, int]

#: 4-connectivity, as the ISBI scorer's ground-truth cells
_FOUR_CONNECTED = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


def cell_instances(label: np.ndarray) -> np.ndarray:
    """The 4-connected cells (`CELL_VALUE` pixels) of a label slice as instances 1, 2, ...; membrane and unlabelled pixels 0."""
    from scipy import ndimage  # imported here: the CLI parser reaches this module

    # == CELL_VALUE, not > 0: an unlabelled pixel (UNLABELLED_VALUE) is no cell, nor does it join two
    instances, _ = ndimage.label(label == CELL_VALUE, structure=_FOUR_CONNECTED)
    return instances


def _shifted(array: np.ndarray, offset: Offset, fill: float) -> np.ndarray:
    """`out[y, x] = array[y + dy, x + dx]`, `fill` where that lies outside."""
    dy, dx = offset
    out = np.full_like(array, fill)
    height, width = array.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:  # the offset leaves the image from every pixel
        return out
    src_y, dst_y = slice(max(dy, 0), height + min(dy, 0)), slice(max(-dy, 0), height + min(-dy, 0))
    src_x, dst_x = slice(max(dx, 0), width + min(dx, 0)), slice(max(-dx, 0), width + min(-dx, 0))
    out[..., dst_y, dst_x] = array[..., src_y, src_x]
    return out


def affinity_targets(label: np.ndarray, offsets: Sequence[Offset] = DEFAULT_OFFSETS) -> tuple[np.ndarray, np.ndarray]:
    """The affinity target of one label slice, and its mask.

    Args:
        label: One label slice (H, W): `CELL_VALUE` = cell, 0 = membrane, `UNLABELLED_VALUE` =
            not labelled.
        offsets: The `(dy, dx)` offsets, one channel each.

    Returns:
        The target (C, H, W), 1 where the pixel pair is not in one cell; and its mask
        (C, H, W), 0 where the offset leaves the slice (those pairs exist in no image) or
        either pixel of the pair is unlabelled (that pair has no target): those pairs count in
        no loss. Both `float32`.
    """
    instances = cell_instances(label)
    targets = np.empty((len(offsets), *label.shape), np.float32)
    masks = np.empty_like(targets)
    labelled = (label != UNLABELLED_VALUE).astype(np.float32)  # all ones for fully labelled slices: the mask is the same
    for channel, offset in enumerate(offsets):
        other = _shifted(instances, offset, 0)
        targets[channel] = ~((instances > 0) & (instances == other))
        np.multiply(_shifted(labelled, offset, 0.0), labelled, out=masks[channel])
    return targets, masks


def boundary_from_affinities(affinities: np.ndarray) -> np.ndarray:
    """A membrane map (H, W) from affinities: the mean of the two nearest-neighbour channels."""
    return 0.5 * (affinities[0] + affinities[1])


def dihedral_offset(offset: Offset, k: int, flip: bool) -> Offset:
    """Where `offset` points in an image that was flipped and then turned: the same pixel pair, seen in the turned image.

    Args:
        offset: The `(dy, dx)` offset in the original image.
        k: Quarter turns, counter-clockwise (`numpy.rot90`), applied after the flip.
        flip: Whether the image was flipped left-right first.
    """
    dy, dx = offset
    if flip:
        dx = -dx
    for _ in range(k % 4):  # rot90 maps (y, x) -> (W - 1 - x, y): a step (dy, dx) becomes (-dx, dy)
        dy, dx = -dx, dy
    return dy, dx


def variant_plan(offsets: Sequence[Offset], k: int, flip: bool) -> list[tuple[int, int, Offset | None]]:
    """How the channels of affinities predicted on a flipped-and-turned image map back to the original frame.

    The variant's channel `c` is about offset `o_c` in its own frame, i.e. offset
    `d = T^-1(o_c)` in the original one. It is the original channel of `d` (shift None), or
    that of `-d` read `-d` further on (the same pixel pair, seen from its other end).

    Args:
        offsets: The model's offsets, the channels' order.
        k: Quarter turns of the variant (as [`dihedral_offset`][emseg.networks.affinities.dihedral_offset]).
        flip: Whether the variant was flipped before turning.

    Returns:
        One `(variant channel, original channel, shift)` per channel.

    Raises:
        EmsegError: Neither `d` nor `-d` has a channel: the offsets must be closed under
            quarter turns and flips.
    """
    index = {offset: channel for channel, offset in enumerate(offsets)}
    plan: list[tuple[int, int, Offset | None]] = []
    for channel, offset in enumerate(offsets):
        d = dihedral_offset(offset, *_inverse_variant(k, flip))
        opposite = (-d[0], -d[1])
        if d in index:
            plan.append((channel, index[d], None))
        elif opposite in index:
            plan.append((channel, index[opposite], opposite))
        else:
            raise EmsegError(f"offset {list(d)} (offset {list(offset)} turned) has no channel: use offsets closed under turns and flips")
    return plan


def untransform(variant: np.ndarray, offsets: Sequence[Offset], k: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """Affinities predicted on a flipped-and-turned image, back in the original image's frame.

    [`variant_plan`][emseg.networks.affinities.variant_plan] says which channel goes where.

    Args:
        variant: The affinities (C, H, W) predicted on the image flipped left-right (when
            `flip`), then turned `k` times.
        offsets: The model's offsets.
        k: Quarter turns of the variant.
        flip: Whether the variant was flipped before turning.

    Returns:
        The affinities in the original frame, and a weight map: 0 where the variant says nothing
        about a pair (its partner lies outside the variant's prediction).
    """
    spatial = np.rot90(variant, -k, axes=(-2, -1))
    if flip:
        spatial = spatial[..., ::-1]
    out = np.zeros(spatial.shape, np.float32)
    weight = np.zeros(spatial.shape, np.float32)
    ones = np.ones(spatial.shape[1:], np.float32)
    for source, target, shift in variant_plan(offsets, k, flip):
        out[target] += spatial[source] if shift is None else _shifted(spatial[source], shift, 0.0)
        weight[target] += ones if shift is None else _shifted(ones, shift, 0.0)
    return out, weight


def _inverse_variant(k: int, flip: bool) -> tuple[int, bool]:
    """The (k, flip) whose [`dihedral_offset`][emseg.networks.affinities.dihedral_offset] undoes that of `(k, flip)`."""
    # T = rot^k . flip; T^-1 = flip . rot^-k = rot^k . flip when flipping, rot^-k otherwise
    return (k % 4, True) if flip else ((-k) % 4, False)
