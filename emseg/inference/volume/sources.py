"""Lazy readers for grey EM volumes bigger than memory: OME-Zarr, HDF5 and big TIFF behind one interface.

`emseg predict` on a stack of thousands of 8k-30k px slices cannot load the stack; the
block-wise prediction asks a [`VolumeSource`][emseg.inference.volume.sources.VolumeSource] for
one region at a time instead. [`open_volume`][emseg.inference.volume.sources.open_volume] reads
only metadata (shape, pixel type, voxel size), so that a wrong input fails at once with one
[`EmsegError`][emseg.errors.EmsegError] line naming the path, before any model is loaded.

A `VolumeSource` holds no open file: it is a frozen record of where the data is, so that
it pickles to Dask or multiprocessing workers, and each process opens the file on its
first [`read`][emseg.inference.volume.sources.VolumeSource.read] (handles are cached per
process id, because h5py and tifffile handles must not cross a `fork`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import EmsegError
from emseg.io.stacks import (
    OME_UNITS,
    OME_UNITS_NM,
    UNIT_NAMES,
    ZARR_MARKERS,
    hdf5_dataset,
    hdf5_scale,
    ome_zarr_level,
    open_hdf5,
    open_zarr,
    split_hdf5_spec,
    tidy,
    tiff_voxel_size,
)
from emseg.segmentation.measurements import PixelSize

__all__ = ["OME_UNITS", "VolumeSource", "emseg_unit", "is_volume_spec", "ome_unit", "open_volume"]

_EMSEG_UNITS = {ome: short for short, ome in OME_UNITS.items()}
_STEM_SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".hdf5", ".hdf", ".h5")

#: open arrays, per process: (pid, kind, file, inner path) -> array-like (zarr.Array, h5py.Dataset)
_HANDLES: dict[tuple[int, str, str, str], Any] = {}


def ome_unit(unit: str | None) -> str | None:
    """The OME-NGFF name of an emseg unit (`nm` -> `nanometer`); OME names and None pass through."""
    if unit is None:
        return None
    return OME_UNITS.get(unit, UNIT_NAMES.get(unit.lower(), unit))


def emseg_unit(unit: str | None) -> str | None:
    """The emseg unit (nm, um, mm) of an OME-NGFF unit name, or None where emseg has no such unit."""
    return _EMSEG_UNITS.get(unit) if unit else None


@dataclass(frozen=True)
class VolumeSource:
    """A grey volume (Z, Y, X) read lazily, a region at a time; picklable (it re-opens its file in each process).

    `spec` is the input as given, `kind` its reader (`ome-zarr`, `hdf5` or `tiff`), `scale`
    the voxel size (z, y, x) in `unit` (an OME-NGFF unit name, None when unknown). `file`,
    `inner` and `layout` say where the pixels are: the file or store, the array inside it
    (zarr level path, HDF5 dataset), and one letter per axis of that array (`z`, `y`, `x`, or
    `.` for a size-1 axis that is dropped, such as OME's t and c).
    """

    spec: str
    kind: str
    shape: tuple[int, int, int]
    dtype: str
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    unit: str | None = None
    file: str = field(default="", repr=False)
    inner: str = field(default="", repr=False)
    layout: str = field(default="zyx", repr=False)

    @property
    def stem(self) -> str:
        """The file name without its image suffix, for naming outputs (`a.h5:/raw` -> `a`)."""
        name = Path(self.file or self.spec).name
        lower = name.lower()
        for suffix in _STEM_SUFFIXES:
            if lower.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return Path(name).stem

    def read(self, z: int | slice, rows: slice, cols: slice) -> np.ndarray:
        """The region `[z, rows, cols]` in the source's pixel type.

        Returns:
            A 2-D array for an integer `z` (negative counts from the end), a 3-D one for a slice of z.

        Raises:
            IndexError: `z` lies outside the volume.
        """
        array = _open_array(self.kind, self.file, self.inner)
        if "z" not in self.layout:  # a 2-D source is Z = 1: index z against a length-1 axis
            if isinstance(z, slice):
                region = np.asarray(array[_index(self.layout, 0, rows, cols)])[None]
                return region if len(range(1)[z]) else region[:0]
            range(1)[z]  # IndexError for a z other than 0 / -1
            z = 0
        elif not isinstance(z, slice):
            z = range(self.shape[0])[z]  # IndexError out of range; negative z counted from the end
        return np.asarray(array[_index(self.layout, z, rows, cols)])

    def pixel_size(self) -> PixelSize | None:
        """The (y) pixel side as emseg's [`PixelSize`][emseg.segmentation.measurements.PixelSize], None when the unit is unknown.

        In the unit that keeps the number between 1 and 1000 (4 nm, not 0.004 um), as
        [`tiff_pixel_size`][emseg.segmentation.measurements.tiff_pixel_size] gives it, so that the
        measurement columns do not depend on the format the volume came in.
        """
        if self.unit is None or self.unit not in OME_UNITS_NM or not self.scale[1] > 0:
            return None
        return PixelSize.in_nm(self.scale[1] * OME_UNITS_NM[self.unit])


def _index(layout: str, z: int | slice, rows: slice, cols: slice) -> tuple[int | slice, ...]:
    picks = {"z": z, "y": rows, "x": cols, ".": 0}
    return tuple(picks[axis] for axis in layout)


def _open_array(kind: str, file: str, inner: str) -> Any:
    """The array-like behind a source, opened once per process (never pickled, never shared across a fork)."""
    key = (os.getpid(), kind, file, inner)
    array = _HANDLES.get(key)
    if array is None:
        if kind == "hdf5":
            import h5py

            array = h5py.File(file, "r")[inner]
        elif kind == "tiff":
            array = _tiff_zarr(file)
        else:
            import zarr

            root = zarr.open(file, mode="r")
            array = root[inner] if inner else root
        _HANDLES[key] = array
    return array


def _forget(kind: str, file: str) -> None:
    """Drop this process's cached handles on `file`: [`open_volume`][emseg.inference.volume.sources.open_volume] must see the file as it is."""
    for key in [k for k in _HANDLES if k[1] == kind and k[2] == file]:
        handle = _HANDLES.pop(key)
        if kind == "hdf5":
            try:
                handle.file.close()
            except Exception:  # already closed or invalid: nothing to release
                pass


def is_volume_spec(text: str) -> bool:
    """Whether [`open_volume`][emseg.inference.volume.sources.open_volume] reads `text` without `tiff=True`.

    That is `*.zarr` and `*.ome.zarr` stores, HDF5 files and `file.h5:/dataset`. Decided by the
    name, so that a mistyped store still reaches `open_volume` and gets its "no such file"
    error rather than being taken for a TIFF.
    """
    text = str(text).rstrip("/\\")
    if text.lower().endswith(".zarr"):
        return True
    return split_hdf5_spec(text) is not None


def open_volume(spec: str, *, tiff: bool = False) -> VolumeSource:
    """The [`VolumeSource`][emseg.inference.volume.sources.VolumeSource] of `spec`, checked: metadata read, no pixels.

    Args:
        spec: An OME-Zarr folder (`*.zarr`), a plain zarr array, an HDF5 file with its dataset
            (`file.h5:/raw`; the dataset may be left out when the file holds one), or a TIFF.
        tiff: Also open TIFFs lazily (otherwise a TIFF is refused).

    Raises:
        EmsegError: One line naming the path: a missing file, an unreadable store, a colour or
            multi-channel volume, or a pixel type that is not bool, integer or float.
    """
    spec = str(spec)
    text = spec.rstrip("/\\") or spec
    if text.lower().endswith(".zarr") or (Path(text).is_dir() and not split_hdf5_spec(text)):
        source = _open_zarr(spec, text)
    elif h5 := split_hdf5_spec(text):
        source = _open_hdf5(spec, *h5)
    elif text.lower().endswith((".tif", ".tiff")):
        if not tiff:
            raise EmsegError(f"{spec}: a TIFF is read as a volume only when asked to (tiff=True)")
        source = _open_tiff(spec, text)
    else:
        raise EmsegError(f"{spec}: not a volume (give an OME-Zarr folder *.zarr, an HDF5 file 'file.h5:/dataset' or a TIFF)")
    _check_dtype(spec, source.dtype)
    return source


def _check_dtype(spec: str, dtype: str) -> None:
    if np.dtype(dtype).kind not in "biuf":
        raise EmsegError(f"{spec}: dtype {dtype} is not a grey image type (bool, integer or float)")


def _layout(spec: str, names: list[str], shape: tuple[int, ...], where: str) -> tuple[str, tuple[int, int, int]]:
    """One letter per axis (z, y, x, or '.' for a dropped size-1 axis) and the (Z, Y, X) shape; refuse anything else.

    `names` are the axis names (OME `t, c, z, y, x`); a leading axis of size 1 is dropped,
    one of size > 1 other than z means channels or time points, which a grey volume has not.
    """
    names = [n.lower() for n in names]
    if len(names) != len(shape):
        raise EmsegError(f"{spec}: {len(names)} axes {''.join(names)} for an array of {len(shape)} dimensions {shape}")
    spatial = names[-3:] if names[-3:] == ["z", "y", "x"] else names[-2:]
    if spatial not in (["z", "y", "x"], ["y", "x"]) or len(set(names)) != len(names):
        raise EmsegError(f"{spec}: axes {''.join(names)} ({where}); emseg predicts grey (z, y, x) volumes, whose last axes are z, y, x or y, x")
    lead = names[: len(names) - len(spatial)]
    wide = [f"{name}={size}" for name, size in zip(lead, shape) if size != 1]
    if wide:
        raise EmsegError(f"{spec}: axes {''.join(names)} with shape {tuple(shape)} ({where}): {', '.join(wide)}; "
                         "emseg predicts grey (z, y, x) volumes, give one channel / time point")
    layout = "." * len(lead) + "".join(spatial)
    dims = shape[len(lead):]
    return layout, (tuple(int(d) for d in dims) if len(dims) == 3 else (1, int(dims[0]), int(dims[1])))


# --- OME-Zarr and plain zarr -------------------------------------------------------------------


def _open_zarr(spec: str, text: str) -> VolumeSource:
    import zarr

    path = Path(text)
    if path.exists() and not path.is_dir():
        raise EmsegError(f"{spec}: not a zarr store (a zarr store is a folder)")
    if path.is_dir() and not any((path / marker).is_file() for marker in ZARR_MARKERS):
        raise EmsegError(f"{spec}: not a zarr store (no zarr.json, .zgroup or .zarray in the folder)")
    root = open_zarr(spec, path)
    _forget("ome-zarr", str(path))
    if isinstance(root, zarr.Array):  # a plain array, no OME metadata
        names = ["z", "y", "x"][-root.ndim:] if root.ndim in (2, 3) else []
        if not names:
            raise EmsegError(f"{spec}: a zarr array of {root.ndim} dimensions {root.shape}; emseg predicts grey (z, y, x) volumes")
        layout, shape = _layout(spec, names, root.shape, "plain zarr array")
        return VolumeSource(spec, "ome-zarr", shape, str(root.dtype), file=str(path), inner="", layout=layout)
    try:
        level = ome_zarr_level(root)
    except (KeyError, IndexError, TypeError) as exc:
        raise EmsegError(f"{spec}: broken OME-Zarr multiscales metadata ({type(exc).__name__}: {exc})") from None
    if level is None:
        raise EmsegError(f"{spec}: a zarr group without OME-Zarr 'multiscales' metadata (not an OME-Zarr image)")
    layout, shape = _layout(spec, level.names, level.array.shape, f"level {level.path}")
    keep = [i for i, axis in enumerate(layout) if axis != "."]
    scale = [level.scale[i] for i in keep]
    unit_of = {layout[i]: level.units[i] for i in keep}
    scale3, unit = _common_unit(scale if len(scale) == 3 else [1.0, *scale], unit_of)
    return VolumeSource(spec, "ome-zarr", shape, str(level.array.dtype), scale3, unit, file=str(path), inner=level.path, layout=layout)


def _common_unit(scale: list[float], unit_of: dict[str, str | None]) -> tuple[tuple[float, float, float], str | None]:
    """The (z, y, x) scale in one unit, the y axis's: OME lets each axis have its own, emseg's `scale` has one."""
    unit = unit_of.get("y") or unit_of.get("x")
    if unit is None:
        return (scale[0], scale[1], scale[2]), None
    out = list(scale)
    for i, axis in enumerate("zyx"):
        other = unit_of.get(axis)
        if other and other != unit and other in OME_UNITS_NM and unit in OME_UNITS_NM:
            out[i] = tidy(scale[i] * OME_UNITS_NM[other] / OME_UNITS_NM[unit])
    return (out[0], out[1], out[2]), unit


# --- HDF5 ---------------------------------------------------------------------------------------


def _open_hdf5(spec: str, file: str, dataset: str | None) -> VolumeSource:
    path = Path(file)
    _forget("hdf5", str(path))
    with open_hdf5(spec, file) as handle:
        dataset, obj = hdf5_dataset(handle, file, dataset)
        shape = tuple(int(d) for d in obj.shape)
        ndim = len(shape)
        if ndim < 2 or ndim > 3 and any(d != 1 for d in shape[: ndim - 3]):
            raise EmsegError(f"{file}:{dataset}: shape {shape}; emseg predicts grey (z, y, x) volumes (2-D or 3-D datasets)")
        names = ["."] * max(ndim - 3, 0) + ["z", "y", "x"][-min(ndim, 3):]
        layout = "".join(names)
        dims = shape[max(ndim - 3, 0):]
        zyx = dims if len(dims) == 3 else (1, *dims)
        scale, unit = _h5_scale(dict(obj.attrs))
        dtype = obj.dtype
    if dtype.kind in "OSUV":  # strings, objects, compound records: no grey values
        raise EmsegError(f"{spec}: dtype {dtype} is not a grey image type (bool, integer or float)")
    return VolumeSource(spec, "hdf5", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, scale, unit,
                        file=str(path), inner=dataset, layout=layout)


def _h5_scale(attrs: dict[str, Any]) -> tuple[tuple[float, float, float], str | None]:
    """The (z, y, x) scale and OME-NGFF unit of [`hdf5_scale`][emseg.io.stacks.hdf5_scale]: z = 1 for two numbers, 1, 1, 1 for none."""
    found = hdf5_scale(attrs)
    if found is None:
        return (1.0, 1.0, 1.0), None
    numbers, unit = found
    z, y, x = numbers if len(numbers) == 3 else [1.0, *numbers]
    return (z, y, x), unit


# --- TIFF ---------------------------------------------------------------------------------------


def _tiff_zarr(file: str) -> Any:
    """Level 0 of series 0 of a TIFF as a read-only zarr array, through tifffile's zarr store (no pixels read)."""
    import tifffile
    import zarr

    store = tifffile.imread(file, aszarr=True, series=0)
    opened = zarr.open(store, mode="r")
    return opened if isinstance(opened, zarr.Array) else opened["0"]  # a pyramidal TIFF opens as a group of levels


def _open_tiff(spec: str, text: str) -> VolumeSource:
    import tifffile

    path = Path(text)
    if not path.is_file():
        raise EmsegError(f"{spec}: no such file")
    _forget("tiff", str(path))
    from emseg.io.images import _tifffile_warnings

    try:
        with _tifffile_warnings(), tifffile.TiffFile(path) as tif:  # a broken file: this error line, not tifffile's log
            series = tif.series[0]
            axes, shape = series.axes.upper(), tuple(int(d) for d in series.shape)
            photometric = tif.pages[0].photometric
            dtype = np.dtype(series.dtype)
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct errors on broken files
        raise EmsegError(f"{spec}: not a readable TIFF ({type(exc).__name__}: {exc})") from None
    if "S" in axes and shape[axes.index("S")] > 1 or photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.PALETTE):
        raise EmsegError(f"{spec}: a colour TIFF (axes {axes}, shape {shape}); the volume path takes grey images, convert it first")
    names = []
    for axis, size in zip(axes, shape):
        names.append(axis.lower() if axis in "YX" else ("z" if size > 1 else "."))
    if names.count("z") > 1:
        raise EmsegError(f"{spec}: axes {axes} with shape {shape}; emseg predicts grey (z, y, x) volumes, with one axis besides y, x")
    layout = "".join(names)
    if not layout.replace(".", "").endswith("yx"):
        raise EmsegError(f"{spec}: axes {axes}; emseg predicts grey (z, y, x) volumes")
    dims = [size for axis, size in zip(layout, shape) if axis != "."]
    zyx = (1, *dims) if len(dims) == 2 else tuple(dims)
    voxel = tiff_voxel_size(path)
    if voxel is None:
        return VolumeSource(spec, "tiff", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, file=str(path), layout=layout)
    size = PixelSize.in_nm(voxel.x)  # the unit the measurement columns of this TIFF get, as the in-memory path gives them
    unit_nm = OME_UNITS_NM[OME_UNITS[size.unit]]
    z = tidy(voxel.z / unit_nm) if voxel.z else 1.0
    return VolumeSource(spec, "tiff", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, (z, size.value, size.value),
                        OME_UNITS[size.unit], file=str(path), layout=layout)
