"""Turn a lab's labels into emseg's convention, and load labelled training slices from any layout.

emseg trains on labels stored as `uint8`: 0 = membrane, `CELL_VALUE` (255) = cell interior,
`UNLABELLED_VALUE` (128) = nobody labelled this pixel (see [`emseg.config.layout`][emseg.config.layout]).
Labs bring two kinds of labels, and [`canonical_labels`][emseg.preprocessing.labels.canonical_labels]
takes both:

* `membrane`: a mask of two values, one of them membrane (`membrane_value`, or `auto`);
* `instances`: one integer per cell, 0 = background (membrane, extracellular space); the
  membranes between touching cells are derived from the borders between different ids.

Either may be sparse: pixels of the `unlabelled` value become `UNLABELLED_VALUE`.
[`load_labelled`][emseg.preprocessing.labels.load_labelled] reads images and labels with
[`load_stack`][emseg.io.stacks.load_stack], checks that they belong together and returns the
slices and the pixel size a trainer needs; fetch and convert run the same checks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from emseg.config.layout import CELL_VALUE, UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.io.stacks import Stack, VoxelSize, load_stack

#: the kinds of labels `data.labels` names
LABEL_KINDS = ("membrane", "instances")
LabelKind = Literal["membrane", "instances"]
#: the pixel types emseg keeps images in (PNG stores both losslessly)
IMAGE_DTYPES = (np.uint8, np.uint16)
#: in a 1-bit mask read as 0/1, a membrane value of 255 means its 1 (white), and 1 means 255 in a 0/255 one
_WHITE = (1, 255)


def _shown(values: np.ndarray) -> str:
    return ", ".join(str(v) for v in values[:6].tolist()) + (", ..." if values.size > 6 else "")


def choose_membrane_value(values: np.ndarray, counts: np.ndarray, membrane_value: int | str, origin: str) -> int:
    """Which of a mask's two labelled values marks membrane.

    `auto` takes the rarer value: membranes are thin walls between much larger cell interiors,
    so in EM they are a minority of the pixels (ISBI 2012: 0 is about 22 % of the labels;
    the VNC stack's 1-bit masks: True, the membrane, is the minority too). On a tie it takes
    the lower value. A given value must be one of the two; in a 1-bit mask (0/1 or 0/255,
    which readers return either way) 1 and 255 both mean the non-zero value.

    Args:
        values: The two labelled values, sorted (`np.unique`).
        counts: How many pixels hold each.
        membrane_value: An int, or `auto`.
        origin: The labels' file, for the message.

    Raises:
        EmsegError: A given value that is not one of the two.
    """
    if membrane_value == "auto":
        return int(values[int(np.argmin(counts))])
    value = int(membrane_value)
    present = [int(v) for v in values]
    if value in present:
        return value
    if value in _WHITE and present[0] == 0 and present[1] in _WHITE:
        return present[1]
    raise EmsegError(f"{origin}: membrane_value {value} is none of the label values {_shown(values)}")


def instance_cells(instances: np.ndarray, unlabelled: int | None = None) -> np.ndarray:
    """The cell pixels of instance labels once the borders between touching cells are made membrane.

    A cell pixel whose right or lower neighbour is a pixel of another cell becomes membrane.
    Every pair of 4-neighbours from two different cells is either side by side or one above
    the other, so marking the left or upper pixel of each such pair breaks them all: the
    4-connected components of the remaining cell pixels never join two cells, and the border
    costs each touching pair one pixel, not two. Pixels of `unlabelled` are no cell and no
    border (nobody knows what they are); 0 is background unless it is the `unlabelled` value.

    Args:
        instances: `(slices, height, width)` integers, one per cell.
        unlabelled: The value of unlabelled pixels, or None.

    Returns:
        A boolean stack of the instances' shape: True where a cell interior stays.
    """
    cells = instances != 0 if unlabelled != 0 else np.ones(instances.shape, bool)
    if unlabelled is not None:
        cells &= instances != unlabelled
    border = np.zeros(instances.shape, bool)
    border[..., :, :-1] = cells[..., :, :-1] & cells[..., :, 1:] & (instances[..., :, :-1] != instances[..., :, 1:])
    border[..., :-1, :] |= cells[..., :-1, :] & cells[..., 1:, :] & (instances[..., :-1, :] != instances[..., 1:, :])
    return cells & ~border


def canonical_labels(
    labels: np.ndarray, origin: str, kind: LabelKind = "membrane", membrane_value: int | str = "auto", unlabelled: int | None = None
) -> np.ndarray:
    """A label stack in emseg's convention: `uint8`, 0 membrane, `CELL_VALUE` cell, `UNLABELLED_VALUE` unlabelled.

    Args:
        labels: `(slices, height, width)`; bool, integer (or, for masks, float) values.
        origin: The labels' file, named by every error.
        kind: `membrane`: a mask of two values besides `unlabelled`; `instances`: one integer
            per cell, membranes derived by [`instance_cells`][emseg.preprocessing.labels.instance_cells].
        membrane_value: For masks, the membrane's value, or `auto` (the rarer of the two; see
            [`choose_membrane_value`][emseg.preprocessing.labels.choose_membrane_value]).
        unlabelled: The value of pixels nobody labelled, or None; absent from the stack is fine,
            and so is a slice that is all unlabelled.

    Raises:
        EmsegError: One line naming `origin`: an unknown kind, labels whose labelled pixels hold
            one value only (or none, or no membrane or no cell once converted), a mask of more
            than two values, instance labels that are not integers.
    """
    return _canonical(labels, origin, kind, membrane_value, unlabelled)[0]


def _canonical(labels: np.ndarray, origin: str, kind: str, membrane_value: int | str, unlabelled: int | None) -> tuple[np.ndarray, int | None]:
    """[`canonical_labels`][emseg.preprocessing.labels.canonical_labels], and the membrane value of a mask (None for instances)."""
    if kind not in LABEL_KINDS:
        raise EmsegError(f"labels kind {kind!r}: use one of {', '.join(LABEL_KINDS)}")
    if membrane_value != "auto" and (isinstance(membrane_value, bool) or not isinstance(membrane_value, int | np.integer)):
        raise EmsegError(f"membrane_value {membrane_value!r}: use an integer or auto")
    if labels.dtype == bool:  # not a view: Pillow's 1-bit images hold True as byte 255
        labels = labels.astype(np.uint8)
    skip = labels == unlabelled if unlabelled is not None else None
    values, counts = np.unique(labels if skip is None else labels[~skip], return_counts=True)
    what = "besides the unlabelled value " if unlabelled is not None else ""
    if values.size == 0:
        raise EmsegError(f"{origin}: every pixel is unlabelled ({unlabelled}); label at least one membrane and one cell")
    if values.size == 1:
        raise EmsegError(f"{origin}: labels hold one value only {what}({_shown(values)}): no membrane/cell contrast to learn")
    if kind == "membrane":
        if values.size > 2:
            raise EmsegError(
                f"{origin}: labels must be binary (membrane and cell) for membrane labels, found values {what}{_shown(values)}; "
                "for one integer per cell set labels: instances"
            )
        membrane = choose_membrane_value(values, counts, membrane_value, origin)
        out = np.where(labels == membrane, 0, CELL_VALUE).astype(np.uint8)
    else:
        if labels.dtype.kind not in "biu":
            raise EmsegError(f"{origin}: instance labels must be integers (one per cell), found pixel type {labels.dtype}")
        membrane = None
        out = np.where(instance_cells(labels, unlabelled), CELL_VALUE, 0).astype(np.uint8)
    if skip is not None:
        out[skip] = UNLABELLED_VALUE
    labelled = out if skip is None else out[~skip]
    for value, name in ((0, "membrane"), (CELL_VALUE, "cell")):
        if not (labelled == value).any():
            raise EmsegError(f"{origin}: the labels give no {name} pixel once converted ({kind} labels, values {_shown(values)})")
    return out, membrane


def check_image_type(stack: Stack) -> None:
    """Refuse images whose pixel type emseg does not keep (8- or 16-bit integers), naming the file."""
    if stack.pixels.dtype not in IMAGE_DTYPES:
        raise EmsegError(f"{stack.spec}: pixel type {stack.pixels.dtype} is not supported (8-bit or 16-bit integer images)")


def match_slices(images: Stack, labels: Stack) -> Stack:
    """Check that images and labels belong together; the labels, in the images' slice order.

    Two folders must hold the same names, suffix aside (`raw/00.tif` and `membranes/00.png`):
    a label file that matches no image, or an image without a label file, is an error (mark an
    unlabelled slice with the `unlabelled` value instead). Then the shapes must be equal, and
    where both carry a pixel size, the sizes.

    Raises:
        EmsegError: One line naming the labels and the images.
    """
    if images.slice_files is not None and labels.slice_files is not None:
        image_stems = [Path(name).stem for name in images.slice_files]
        label_stems = [Path(name).stem for name in labels.slice_files]
        for stems, stack in ((image_stems, images), (label_stems, labels)):
            twice = sorted({stem for stem in stems if stems.count(stem) > 1})
            if twice:
                raise EmsegError(f"{stack.spec}: several files named {', '.join(twice)} (suffix aside); one slice per name")
        extra = [name for name, stem in zip(labels.slice_files, label_stems) if stem not in set(image_stems)]
        if extra:
            raise EmsegError(
                f"{labels.spec}: label files {_listed(extra)} match no image in {images.spec} (a label file goes with the image of its name, suffix aside)"
            )
        missing = [name for name, stem in zip(images.slice_files, image_stems) if stem not in set(label_stems)]
        if missing:
            raise EmsegError(f"{labels.spec}: no label file for images {_listed(missing)} of {images.spec} (mark unlabelled slices with the unlabelled value)")
        if label_stems != image_stems:
            order = [label_stems.index(stem) for stem in image_stems]
            labels = Stack(labels.spec, labels.pixels[order], labels.pixel_size, tuple(labels.slice_files[i] for i in order))
    if labels.pixels.shape != images.pixels.shape:
        raise EmsegError(f"{labels.spec}: shape {labels.pixels.shape} does not match {images.spec} shape {images.pixels.shape}")
    if images.pixel_size and labels.pixel_size and not images.pixel_size.agrees_with(labels.pixel_size):
        raise EmsegError(f"{labels.spec}: pixel size {labels.pixel_size} disagrees with {images.spec}'s {images.pixel_size}")
    return labels


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


@dataclass(frozen=True)
class LabelledSlices:
    """Training slices with their labels in emseg's convention, as [`load_labelled`][emseg.preprocessing.labels.load_labelled] returns them.

    Attributes:
        images: One 2-D `uint8` or `uint16` array per slice.
        labels: One 2-D `uint8` array per slice: 0 membrane, 255 cell, 128 unlabelled.
        pixel_size: The voxel size in nm: the one given, else the files', else None.
        pixel_size_from: Where it came from: `given`, `files` or None.
        membrane_value: The label value read as membrane (chosen or given); None for instance labels.
    """

    images: list[np.ndarray]
    labels: list[np.ndarray]
    pixel_size: VoxelSize | None
    pixel_size_from: str | None
    membrane_value: int | None

    def fractions(self) -> dict[str, float]:
        """The share of the label pixels that are membrane, cell and unlabelled."""
        total = sum(label.size for label in self.labels)
        return {
            name: sum(int(np.count_nonzero(label == value)) for label in self.labels) / total
            for name, value in (("membrane", 0), ("cell", CELL_VALUE), ("unlabelled", UNLABELLED_VALUE))
        }

    def summary(self, with_pixel_size: bool = True) -> str:
        """One line: slice count and shape, the label fractions, the membrane value and (`with_pixel_size`) the pixel size."""
        shares = ", ".join(f"{name} {share:.1%}" for name, share in self.fractions().items())
        membrane = f"membrane value {self.membrane_value}" if self.membrane_value is not None else "membranes from the instances' borders"
        size = f"pixel size {self.pixel_size} ({self.pixel_size_from})" if self.pixel_size else "pixel size unknown"
        height, width = self.images[0].shape
        return f"{len(self.images)} labelled slices of {height}x{width}: {shares}; {membrane}" + (f"; {size}" if with_pixel_size else "")


def labelled_from_stacks(
    images: Stack,
    labels: Stack,
    kind: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
    pixel_size: VoxelSize | Sequence[float] | None = None,
) -> LabelledSlices:
    """[`load_labelled`][emseg.preprocessing.labels.load_labelled] on stacks already read (fetch reads them itself)."""
    check_image_type(images)
    labels = match_slices(images, labels)
    canonical, chosen = _canonical(labels.pixels, labels.spec, kind, membrane_value, unlabelled)
    if pixel_size is not None:
        size, source = VoxelSize.of(pixel_size), "given"
    else:
        size = images.pixel_size or labels.pixel_size
        source = "files" if size else None
    return LabelledSlices(list(images.pixels), list(canonical), size, source, chosen)


def load_labelled(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    kind: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
    pixel_size: VoxelSize | Sequence[float] | None = None,
) -> LabelledSlices:
    """Read labelled training slices from any layout, check them and put the labels in emseg's convention.

    Args:
        images: The images: a multi-page TIFF, a TIFF/PNG slice, a folder of slices, an
            OME-Zarr image or an HDF5 dataset `file.h5:/dataset` ([`load_stack`][emseg.io.stacks.load_stack]).
        labels: Their labels, in any of the same layouts (a folder's names must match the images folder's).
        kind: `membrane` (a two-valued mask) or `instances` (one integer per cell).
        membrane_value: For masks, the membrane's value or `auto` (the rarer of the two).
        unlabelled: The label value of pixels nobody labelled (sparse labels), or None.
        pixel_size: The voxel size to use, `[z, y, x]` or `[y, x]` in nm or a
            [`VoxelSize`][emseg.io.stacks.VoxelSize]; None: the files' (the images', else the labels'), if any.

    Returns:
        The [`LabelledSlices`][emseg.preprocessing.labels.LabelledSlices].

    Raises:
        EmsegError: One line naming the file: unreadable stacks, images that are not 8- or
            16-bit integers, labels that do not match the images (names, shape, pixel size), or
            labels that [`canonical_labels`][emseg.preprocessing.labels.canonical_labels] refuses.
    """
    return labelled_from_stacks(load_stack(images), load_stack(labels), kind, membrane_value, unlabelled, pixel_size)
