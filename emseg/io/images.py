"""Reading and writing images: TIFF stacks, PNG and JPEG slices, folders of them.

Every reader returns a 3-D array `(slices, height, width)` and raises
[`EmsegError`][emseg.errors.EmsegError] naming the file when it cannot.
Every writer goes through [`atomic_output`][emseg.io.atomic.atomic_output], so that a crash
never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from emseg.errors import ColourImageError, EmsegError
from emseg.io.atomic import atomic_output

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES + JPEG_SUFFIXES


def _to_grey(array: np.ndarray, path: Path, allow_rgb: bool) -> np.ndarray:
    """Turn an RGB(A) slice or stack (channels last) into grey, or refuse it."""
    if not allow_rgb:
        raise ColourImageError(f"{path}: has colour channels (shape {array.shape}); a grey image is required")
    rgb = array[..., :3].astype(np.float64)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(array.dtype, np.integer):
        grey = np.clip(np.rint(grey), 0, np.iinfo(array.dtype).max).astype(array.dtype)
    return grey.astype(array.dtype, copy=False)


def _is_colour(array: np.ndarray) -> bool:
    return array.ndim >= 3 and array.shape[-1] in (3, 4) and array.shape[-2] > 4


class _CollectWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # drop tifffile's "<tifffile.TiffPages @8> " object prefix
        self.messages.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))


@contextlib.contextmanager
def _tifffile_warnings() -> Iterator[list[str]]:
    """Collect what tifffile logs while reading, instead of letting it reach stderr."""
    logger = logging.getLogger("tifffile")
    handler = _CollectWarnings()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_tiff(path: str | os.PathLike[str], allow_rgb: bool = False) -> np.ndarray:
    """Read a single- or multi-page TIFF as `(slices, height, width)`.

    tifffile logs a warning, rather than raising, when it has to work around a damaged
    structure (a truncated page chain, bad offsets); it then returns what it could read,
    e.g. the first slice of a cut stack. Such a file is refused, not read short. Slices
    appended one write at a time (separate image series) are joined; reduced-resolution
    pages (thumbnails) are skipped.

    Args:
        path: The TIFF file.
        allow_rgb: Convert colour images to grey (0.299 R + 0.587 G + 0.114 B) instead of
            refusing them.

    Raises:
        EmsegError: The file is missing, empty, damaged or not a TIFF, or holds no 2-D image
            or 3-D stack; [`ColourImageError`][emseg.errors.ColourImageError] for a colour
            image without `allow_rgb`.
    """
    path = Path(path)
    if not path.is_file():
        raise EmsegError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise EmsegError(f"{path}: file is empty")
    with _tifffile_warnings() as warnings:
        try:
            with tifffile.TiffFile(path) as tif:
                # reduced-resolution pages (NewSubfileType bit 0: thumbnails, previews) are not slices
                parts = [series.asarray() for series in tif.series if not series.keyframe.is_reduced]
        except Exception as exc:  # tifffile raises many types for corrupt files
            raise EmsegError(f"{path}: not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if warnings:
        raise EmsegError(f"{path}: damaged or truncated TIFF ({warnings[0]})")
    if not parts:
        raise EmsegError(f"{path}: TIFF holds no full-resolution images")
    array = _join_series(parts, path)
    if _is_colour(array):
        array = _to_grey(array, path, allow_rgb)
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3:
        raise EmsegError(f"{path}: expected a 2-D image or 3-D stack, got shape {array.shape}")
    _check_not_empty(array, path)
    return array


def _join_series(parts: list[np.ndarray], path: Path) -> np.ndarray:
    """One array from a TIFF's image series.

    Slices appended one write at a time (`tifffile.imwrite(..., append=True)`, many
    acquisition tools) land in separate series; reading only the first would silently
    return one slice of the stack. Series of one slice shape are joined in file order;
    series of different slice shapes or types (mixed images) are refused.
    """
    if len(parts) == 1:
        return parts[0]
    stacked = [p[np.newaxis] if p.ndim == 2 or (p.ndim == 3 and _is_colour(p)) else p for p in parts]
    shapes = sorted({(p.shape[1:], str(p.dtype)) for p in stacked})
    if len(shapes) > 1:
        described = ", ".join(f"{'x'.join(map(str, shape))} {dtype}" for shape, dtype in shapes)
        raise EmsegError(
            f"{path}: TIFF holds {len(parts)} image series of different slice shapes or types "
            f"({described}); save the stack as one series of equal slices"
        )
    return np.concatenate(stacked, axis=0)


def read_image(path: str | os.PathLike[str], allow_rgb: bool = False) -> np.ndarray:
    """Read one PNG or JPEG file as `(1, height, width)`, 8- or 16-bit kept.

    A palette image is read as its colours and a grey image with alpha as its grey values; a
    colour image is made grey with `allow_rgb`, else refused with a
    [`ColourImageError`][emseg.errors.ColourImageError].
    """
    path = Path(path)
    if not path.is_file():
        raise EmsegError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            if img.mode == "I;16B":
                img = img.convert("I;16")
            array = np.asarray(img)
    except Exception as exc:
        raise EmsegError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    if img.mode == "I":  # Pillow opens 16-bit PNGs as 32-bit "I"; values fit in uint16
        array = array.astype(np.uint16)
    if img.mode == "LA":
        array = array[..., 0]
    if _is_colour(array):
        array = _to_grey(array, path, allow_rgb)
    if array.ndim != 2:
        raise EmsegError(f"{path}: expected a 2-D image, got shape {array.shape}")
    _check_not_empty(array, path)
    return array[np.newaxis]


def _check_not_empty(array: np.ndarray, path: Path) -> None:
    if array.size == 0:
        raise EmsegError(f"{path}: image has zero size (shape {array.shape})")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files (TIFF, PNG, JPEG) of a folder, sorted by name, not recursive."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmsegError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_stack(path: str | os.PathLike[str], allow_rgb: bool = False) -> np.ndarray:
    """Read a TIFF (stack), one PNG/JPEG file, or a folder of slices, as `(slices, H, W)`.

    A folder's image files, sorted by name, become the slices of one stack; they must all
    have one shape.
    """
    path = Path(path)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise EmsegError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        slices = [read_stack(f, allow_rgb) for f in files]
        shapes = {s.shape[1:] for s in slices}
        if len(shapes) > 1:
            raise EmsegError(f"{path}: slices differ in shape {sorted(shapes)}")
        return np.concatenate(slices, axis=0)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return read_tiff(path, allow_rgb)
    if suffix in PNG_SUFFIXES + JPEG_SUFFIXES:
        return read_image(path, allow_rgb)
    if not path.exists():
        raise EmsegError(f"{path}: file not found")
    raise EmsegError(f"{path}: unsupported file type '{path.suffix}' (use {', '.join(IMAGE_SUFFIXES)})")


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a 2-D `uint8` or `uint16` slice as a lossless PNG, atomically.

    Raises:
        EmsegError: The array is not a 2-D `uint8` or `uint16` slice.
    """
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise EmsegError(f"{path}: PNG slices must be 2-D uint8 or uint16, got {image.dtype} {image.shape}")
    with atomic_output(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def write_tiff(path: str | os.PathLike[str], stack: np.ndarray) -> None:
    """Write a 2-D image or a 3-D stack as an uncompressed TIFF that ImageJ/Fiji opens as a stack, atomically."""
    imagej = stack.dtype in (np.uint8, np.uint16, np.float32)
    # name the axes, or Fiji opens a stack as channels (and tifffile a 3-slice one as RGB)
    metadata = {"axes": "ZYX" if stack.ndim == 3 else "YX"} if imagej else None
    with atomic_output(path) as tmp:
        tifffile.imwrite(tmp, stack, imagej=imagej, photometric="minisblack", metadata=metadata)
