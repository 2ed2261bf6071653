"""What `emseg predict` is given: input discovery and checks, before any output exists.

Every input is read once to prove it usable (readable, a supported pixel type, finite
values); the first ones are kept in memory for the prediction pass, up to a byte budget
(`CACHE_BYTES`), so that small inputs are decoded once while a folder of huge slices never
sits in memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emseg.errors import ColourImageError, EmsegError
from emseg.io.images import IMAGE_SUFFIXES, list_images, read_stack

#: inputs read during validation are kept for the prediction pass up to this many bytes
CACHE_BYTES = 256 * 2**20


@dataclass
class InputImage:
    """One checked input file; `array` is kept only while it fits the read cache."""

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    colour: bool
    array: np.ndarray | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        """The file name without its suffix, which names the outputs."""
        return self.path.stem

    @property
    def is_stack(self) -> bool:
        """Whether the input has more than one slice."""
        return self.shape[0] > 1

    @property
    def pixels(self) -> int:
        """The number of pixels of all slices."""
        return self.shape[0] * self.shape[1] * self.shape[2]

    def read(self) -> np.ndarray:
        """The input's `(slices, H, W)` array: the cached one, else read again."""
        if self.array is not None:
            return self.array
        return read_checked(self.path)[0]


def discover_inputs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders into their image files (sorted, not recursive); files are kept as given.

    A folder's files are predicted one by one, not as one stack, so that a folder of slices
    of different sizes works and every output is named after its own file.

    Raises:
        EmsegError: A folder holds no image files, or no input was given.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = list_images(path)
            if not files:
                raise EmsegError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            found.extend(files)
        else:
            found.append(path)
    if not found:
        raise EmsegError("no input images given")
    return found


def read_checked(path: Path) -> tuple[np.ndarray, bool]:
    """Read one file as `(slices, H, W)` grey; True when it had colour channels (made grey).

    Raises:
        EmsegError: A folder, an unreadable file, an unsupported pixel type, or NaN or
            infinite values.
    """
    if path.is_dir():  # read_stack would stack a folder's slices; predict takes its files one by one
        raise EmsegError(f"{path}: is a folder, expected an image file")
    try:
        array, colour = read_stack(path, allow_rgb=False), False
    except ColourImageError:
        array, colour = read_stack(path, allow_rgb=True), True
    if not (array.dtype == bool or np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise EmsegError(f"{path}: unsupported pixel type {array.dtype} (use 8- or 16-bit grey or RGB)")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise EmsegError(f"{path}: image contains NaN or infinite values")
    return array, colour


def inspect_inputs(paths: Sequence[Path], cache_bytes: int = CACHE_BYTES) -> list[InputImage]:
    """Read every input once to prove it usable; keep the first ones in memory, up to `cache_bytes`."""
    items = []
    cached = 0
    for path in paths:
        array, colour = read_checked(path)
        keep = cached + array.nbytes <= cache_bytes
        cached += array.nbytes if keep else 0
        items.append(InputImage(path, tuple(array.shape), array.dtype, colour, array if keep else None))  # type: ignore[arg-type]
    return items


def colour_note(items: Sequence[InputImage]) -> str | None:
    """One line naming the inputs that were made grey, or None."""
    colour = [str(item.path) for item in items if item.colour]
    if not colour:
        return None
    shown = ", ".join(colour[:3]) + (f" and {len(colour) - 3} more" if len(colour) > 3 else "")
    return f"colour converted to grey (0.299 R + 0.587 G + 0.114 B) for {shown}"
