"""OME-Zarr outputs with a multiscale pyramid, written a block at a time.

Predictions of a volume bigger than memory cannot be assembled and then saved: the
block-wise prediction creates the store first
([`create_ome_zarr`][emseg.inference.volume.omezarr.create_ome_zarr]: every level's array,
empty, with its OME-NGFF metadata), then writes each block into level 0 and its
2x-downsampled copies ([`downsample_2x`][emseg.inference.volume.omezarr.downsample_2x]) into
the coarser levels ([`open_level`][emseg.inference.volume.omezarr.open_level]). The pyramid is
what lets napari, neuroglancer or webKnossos show a 30k px slice at once.

Chunks are one slice deep, `(1, chunk, chunk)`: EM stacks are read and written slice by
slice (and are anisotropic), so a chunk never spans sections.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from emseg.errors import EmsegError
from emseg.inference.volume.sources import ome_unit

__all__ = ["create_ome_zarr", "downsample_2x", "get_attrs", "level_count", "open_level", "pyramid_shapes", "set_attrs"]

#: the key of emseg's own attributes in the root group
EMSEG_KEY = "emseg"


def pyramid_shapes(shape: tuple[int, int, int], chunk: int) -> list[tuple[int, int, int]]:
    """The (Z, Y, X) shape of each level: level 0 is `shape`, each next one halves Y and X (rounding up), Z kept.

    Z is never halved because EM sections are 5-10x thicker than a pixel is wide. The
    pyramid stops at the first level that fits in one chunk in Y and X: coarser levels
    would only add files of one chunk each.

    Raises:
        ValueError: `chunk` is below 1.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, not {chunk}")
    z, y, x = (int(d) for d in shape)
    shapes = [(z, y, x)]
    while max(y, x) > chunk:
        y, x = math.ceil(y / 2), math.ceil(x / 2)
        shapes.append((z, y, x))
    return shapes


#: the OME-Zarr versions emseg writes (0.4: zarr format 2, read by every viewer; 0.5: zarr format 3)
VERSIONS = ("0.4", "0.5")


def _format(version: str) -> Any:
    from ome_zarr.format import FormatV04, FormatV05

    if version not in VERSIONS:
        raise EmsegError(f"OME-Zarr version {version!r}: emseg writes {' or '.join(VERSIONS)}")
    return {"0.4": FormatV04, "0.5": FormatV05}[version]()


def create_ome_zarr(path: Path, shape: tuple[int, int, int], dtype: Any, chunk: int, scale: tuple[float, float, float],
                    unit: str | None, *, labels: bool = False, version: str = "0.4", name: str = "") -> None:
    """Create a new, empty OME-Zarr image at `path`: the arrays of every pyramid level, and its metadata.

    The arrays are named `0`, `1`, ... and shaped as
    [`pyramid_shapes`][emseg.inference.volume.omezarr.pyramid_shapes] says. Every level is chunked
    `(1, chunk, chunk)` (clipped to the level), filled with 0 and compressed with zarr's default
    codec. An existing `path` is refused, never overwritten.

    Args:
        path: The store to create.
        shape: Level 0's (Z, Y, X) shape.
        dtype: The pixel type.
        chunk: The chunk side in Y and X.
        scale: Level 0's voxel size (z, y, x) in `unit`; level k has `(z, y * 2**k, x * 2**k)`.
        unit: emseg's `nm`/`um`/`mm` or an OME-NGFF unit name; None: unknown, no unit written.
        labels: Add the `image-label` metadata, so that napari (through ome-zarr) shows the
            store as a labels layer.
        version: `"0.4"` writes zarr format 2, `"0.5"` zarr format 3.
        name: The image's name in the metadata (default: the store's name without suffix).

    Raises:
        EmsegError: `path` exists, or `version` is not one emseg writes.
    """
    with warnings.catch_warnings():  # ome-zarr 0.18 warns at import of its own deprecated Scaler default
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import add_metadata, write_multiscales_metadata

    path = Path(path)
    fmt = _format(version)
    if path.exists():
        raise EmsegError(f"{path}: already exists (emseg does not overwrite an OME-Zarr store)")
    dtype = np.dtype(dtype)
    shapes = pyramid_shapes(shape, chunk)
    ome = ome_unit(unit)
    root = zarr.open_group(str(path), mode="w-", zarr_format=fmt.zarr_format)
    datasets = []
    for level, level_shape in enumerate(shapes):
        chunks = (1, max(1, min(chunk, level_shape[1])), max(1, min(chunk, level_shape[2])))
        extra: dict[str, Any] = {"dimension_names": ["z", "y", "x"]} if fmt.zarr_format == 3 else {}
        root.create_array(str(level), shape=level_shape, chunks=chunks, dtype=dtype, fill_value=0,
                          chunk_key_encoding=fmt.chunk_key_encoding, **extra)
        factor = float(2**level)
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [float(scale[0]), float(scale[1]) * factor, float(scale[2]) * factor]}]})
    axes = [{"name": axis, "type": "space", **({"unit": ome} if ome else {})} for axis in "zyx"]
    write_multiscales_metadata(root, datasets, fmt=fmt, axes=axes, name=name or _stem(path))
    if labels:
        add_metadata(root, {"image-label": {"version": fmt.version}}, fmt=fmt)


def _stem(path: Path) -> str:
    lower = path.name.lower()
    for suffix in (".ome.zarr", ".zarr"):
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _multiscale_paths(path: Path) -> tuple[zarr.Group, list[str]]:
    try:
        root = zarr.open_group(str(path), mode="r")
        attrs = dict(root.attrs)
        ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
        return root, [str(d["path"]) for d in ome["multiscales"][0]["datasets"]]
    except Exception as exc:  # no store, no group, no or broken metadata: all the same to the caller
        raise EmsegError(f"{path}: not an OME-Zarr image ({type(exc).__name__}: {exc})") from None


def level_count(path: Path) -> int:
    """How many pyramid levels the OME-Zarr image at `path` has (from its multiscales metadata)."""
    return len(_multiscale_paths(Path(path))[1])


def open_level(path: Path, level: int, mode: str = "r+") -> zarr.Array:
    """Level `level` (0: full resolution) of the OME-Zarr image at `path`, as a zarr array opened in `mode`.

    Raises:
        EmsegError: `path` is not an OME-Zarr image, or has no such level.
    """
    path = Path(path)
    _, paths = _multiscale_paths(path)
    if not 0 <= level < len(paths):
        raise EmsegError(f"{path}: no level {level} (levels 0-{len(paths) - 1})")
    return zarr.open_array(str(path / paths[level]), mode=mode)


def downsample_2x(block: np.ndarray, *, mean: bool) -> np.ndarray:
    """`block` (Z, Y, X) halved in Y and X (rounding up): the next pyramid level of this block.

    Works on the last two axes, so that a 2-D slice works as well.

    Args:
        block: The block of the level above.
        mean: True (grey images, probabilities): the mean of each 2x2, of the pixels present at
            an odd edge, as `float32`. False (labels, masks): every other pixel `[::2, ::2]`, in
            the block's type, because a mean of two label ids is a third cell that is not there.

    Raises:
        ValueError: `block` has fewer than two axes.
    """
    block = np.asarray(block)
    if block.ndim < 2:
        raise ValueError(f"downsample_2x needs (Z, Y, X) or (Y, X), not shape {block.shape}")
    if not mean:
        return np.ascontiguousarray(block[..., ::2, ::2])
    rows, cols = block.shape[-2:]
    if rows == 0 or cols == 0:
        return np.zeros((*block.shape[:-2], math.ceil(rows / 2), math.ceil(cols / 2)), np.float32)
    # sums of uint8/uint16 (and bool) 2x2s are exact in float32; wider types are summed in float64
    work = np.float32 if block.dtype.itemsize <= 2 and block.dtype.kind in "biu" else np.float64
    sums = np.add.reduceat(block.astype(work, copy=False), np.arange(0, rows, 2), axis=-2, dtype=work)
    sums = np.add.reduceat(sums, np.arange(0, cols, 2), axis=-1, dtype=work)
    counts_y = np.minimum(2, rows - np.arange(0, rows, 2))
    counts_x = np.minimum(2, cols - np.arange(0, cols, 2))
    return (sums / (counts_y[:, None] * counts_x[None, :]).astype(work)).astype(np.float32)


def set_attrs(path: Path, **values: Any) -> None:
    """Merge `values` (JSON-serialisable) into emseg's own attributes: the root group's `"emseg"` key.

    Kept apart from the OME metadata, so that OME readers ignore them and a later write of
    the OME metadata cannot drop them (model, threshold, source of a prediction).
    """
    root = zarr.open_group(str(path), mode="r+")
    current = dict(root.attrs.get(EMSEG_KEY) or {})
    current.update(values)
    root.attrs[EMSEG_KEY] = current


def get_attrs(path: Path) -> dict:
    """emseg's own attributes of the store at `path` (`{}` where none were set).

    Raises:
        EmsegError: `path` is not a zarr store.
    """
    try:
        root = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # a missing or broken store: one clear line
        raise EmsegError(f"{path}: not a zarr store ({type(exc).__name__}: {exc})") from None
    return dict(root.attrs.get(EMSEG_KEY) or {})
