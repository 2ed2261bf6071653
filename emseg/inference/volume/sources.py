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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import EmsegError
from emseg.segmentation.measurements import PixelSize

__all__ = ["OME_UNITS", "VolumeSource", "emseg_unit", "is_volume_spec", "ome_unit", "open_volume"]

#: emseg's pixel-size units and the OME-NGFF unit names they stand for
OME_UNITS = {"nm": "nanometer", "um": "micrometer", "mm": "millimeter"}
_EMSEG_UNITS = {ome: short for short, ome in OME_UNITS.items()}
#: OME-NGFF (and common) spatial unit names, in micrometres, for converting between them
_MICRONS = {"angstrom": 1e-4, "picometer": 1e-6, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3,
            "centimeter": 1e4, "decimeter": 1e5, "meter": 1e6}
#: unit spellings met in HDF5 attributes and ImageJ metadata -> OME-NGFF names
_UNIT_ALIASES = {"a": "angstrom", "å": "angstrom", "angstrom": "angstrom", "nm": "nanometer", "nanometer": "nanometer",
                 "nanometre": "nanometer", "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer",
                 "microns": "micrometer", "micrometer": "micrometer", "micrometre": "micrometer", "mm": "millimeter",
                 "millimeter": "millimeter", "millimetre": "millimeter", "cm": "centimeter", "m": "meter", "meter": "meter"}

_H5_SPEC = re.compile(r"^(.*?\.(?:h5|hdf5|hdf))(?::(.*))?$", re.IGNORECASE | re.DOTALL)
_STEM_SUFFIXES = (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".hdf5", ".hdf", ".h5")

#: open arrays, per process: (pid, kind, file, inner path) -> array-like (zarr.Array, h5py.Dataset)
_HANDLES: dict[tuple[int, str, str, str], Any] = {}


def ome_unit(unit: str | None) -> str | None:
    """The OME-NGFF name of an emseg unit (`nm` -> `nanometer`); OME names and None pass through."""
    if unit is None:
        return None
    return OME_UNITS.get(unit, _UNIT_ALIASES.get(unit.lower(), unit))


def emseg_unit(unit: str | None) -> str | None:
    """The emseg unit (nm, um, mm) of an OME-NGFF unit name, or None where emseg has no such unit."""
    return _EMSEG_UNITS.get(unit) if unit else None


def _tidy(value: float) -> float:
    """`value` to 12 significant digits: unit conversions must not print as 4.000000000000001 nm."""
    return float(f"{value:.12g}")


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
        if self.unit is None or self.unit not in _MICRONS or not self.scale[1] > 0:
            return None
        size = PixelSize.in_microns(self.scale[1] * _MICRONS[self.unit])
        return PixelSize(_tidy(size.value), size.unit)


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
    return _H5_SPEC.match(text) is not None


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
    if text.lower().endswith(".zarr") or (Path(text).is_dir() and not _H5_SPEC.match(text)):
        source = _open_zarr(spec, text)
    elif match := _H5_SPEC.match(text):
        source = _open_hdf5(spec, match.group(1), match.group(2))
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
    if not path.exists():
        raise EmsegError(f"{spec}: no such file or folder")
    if not path.is_dir():
        raise EmsegError(f"{spec}: not a zarr store (a zarr store is a folder)")
    if not any((path / marker).is_file() for marker in ("zarr.json", ".zgroup", ".zarray")):
        raise EmsegError(f"{spec}: not a zarr store (no zarr.json, .zgroup or .zarray in the folder)")
    try:
        root = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds (FileNotFoundError, ValueError, its own errors)
        raise EmsegError(f"{spec}: not a readable zarr store ({type(exc).__name__}: {exc})") from None
    _forget("ome-zarr", str(path))
    if isinstance(root, zarr.Array):  # a plain array, no OME metadata
        names = ["z", "y", "x"][-root.ndim:] if root.ndim in (2, 3) else []
        if not names:
            raise EmsegError(f"{spec}: a zarr array of {root.ndim} dimensions {root.shape}; emseg predicts grey (z, y, x) volumes")
        layout, shape = _layout(spec, names, root.shape, "plain zarr array")
        return VolumeSource(spec, "ome-zarr", shape, str(root.dtype), file=str(path), inner="", layout=layout)
    attrs = dict(root.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs  # v0.5 nests under "ome", v0.4 does not
    multiscales = ome.get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        raise EmsegError(f"{spec}: a zarr group without OME-Zarr 'multiscales' metadata (not an OME-Zarr image)")
    try:
        image = multiscales[0]
        level0 = image["datasets"][0]
        inner = str(level0["path"])
        array = root[inner]
    except (KeyError, IndexError, TypeError) as exc:
        raise EmsegError(f"{spec}: broken OME-Zarr multiscales metadata ({type(exc).__name__}: {exc})") from None
    axes = image.get("axes") or [{"name": n} for n in "tczyx"[-array.ndim:]]  # v0.1/0.2: always 5-D tczyx
    names = [a if isinstance(a, str) else str(a.get("name", "")) for a in axes]
    units = [None if isinstance(a, str) else a.get("unit") for a in axes]
    layout, shape = _layout(spec, names, array.shape, f"level {inner}")
    factors = np.ones(len(names))
    for transforms in (image.get("coordinateTransformations"), level0.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == len(names):
                factors = factors * np.asarray(transform["scale"], float)
    keep = [i for i, axis in enumerate(layout) if axis != "."]
    scale = [float(factors[i]) for i in keep]
    unit_of = {layout[i]: units[i] for i in keep}
    scale3, unit = _common_unit(scale if len(scale) == 3 else [1.0, *scale], unit_of)
    return VolumeSource(spec, "ome-zarr", shape, str(array.dtype), scale3, unit, file=str(path), inner=inner, layout=layout)


def _common_unit(scale: list[float], unit_of: dict[str, str | None]) -> tuple[tuple[float, float, float], str | None]:
    """The (z, y, x) scale in one unit, the y axis's: OME lets each axis have its own, emseg's `scale` has one."""
    unit = unit_of.get("y") or unit_of.get("x")
    if unit is None:
        return (scale[0], scale[1], scale[2]), None
    out = list(scale)
    for i, axis in enumerate("zyx"):
        other = unit_of.get(axis)
        if other and other != unit and other in _MICRONS and unit in _MICRONS:
            out[i] = _tidy(scale[i] * _MICRONS[other] / _MICRONS[unit])
    return (out[0], out[1], out[2]), unit


# --- HDF5 ---------------------------------------------------------------------------------------


def _open_hdf5(spec: str, file: str, dataset: str | None) -> VolumeSource:
    import h5py

    path = Path(file)
    if not path.exists():
        raise EmsegError(f"{spec}: no such file {file}")
    if not path.is_file():
        raise EmsegError(f"{spec}: {file} is not a file")
    _forget("hdf5", str(path))
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise EmsegError(f"{spec}: not a readable HDF5 file ({exc})") from None
    with handle:
        found: list[str] = []
        handle.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
        listed = ", ".join(found) or "none"
        if dataset is None or dataset.strip("/") == "":
            if len(found) != 1:
                raise EmsegError(f"{file}: holds {len(found)} datasets ({listed}); name one, e.g. '{file}:{found[0] if found else '/raw'}'")
            dataset = found[0]
        dataset = "/" + dataset.strip("/")
        obj = handle.get(dataset)
        if not isinstance(obj, h5py.Dataset):
            raise EmsegError(f"{file}: no dataset {dataset} (datasets: {listed})")
        shape = tuple(int(d) for d in obj.shape)
        ndim = len(shape)
        if ndim < 2 or ndim > 3 and any(d != 1 for d in shape[: ndim - 3]):
            raise EmsegError(f"{file}:{dataset}: shape {shape}; emseg predicts grey (z, y, x) volumes (2-D or 3-D datasets)")
        names = ["."] * max(ndim - 3, 0) + ["z", "y", "x"][-min(ndim, 3):]
        layout = "".join(names)
        dims = shape[max(ndim - 3, 0):]
        zyx = dims if len(dims) == 3 else (1, *dims)
        scale, unit = _h5_voxel_size(dict(obj.attrs))
        dtype = obj.dtype
    if dtype.kind in "OSUV":  # strings, objects, compound records: no grey values
        raise EmsegError(f"{spec}: dtype {dtype} is not a grey image type (bool, integer or float)")
    return VolumeSource(spec, "hdf5", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, scale, unit,
                        file=str(path), inner=dataset, layout=layout)


def _h5_voxel_size(attrs: dict[str, Any]) -> tuple[tuple[float, float, float], str | None]:
    """Voxel size from `element_size_um` (Fiji/ilastik: zyx in micrometres) or `resolution` (+ `unit`).

    `resolution` without a `unit` keeps its numbers (the ratios still say how
    anisotropic the volume is) but the unit stays unknown: emseg does not guess nm.
    """

    def zyx(value: Any) -> tuple[float, float, float] | None:
        try:
            numbers = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=float))]
        except (TypeError, ValueError):
            return None
        if len(numbers) == 1:
            numbers = numbers * 3
        if len(numbers) == 2:
            numbers = [1.0, *numbers]
        if len(numbers) != 3 or not all(n > 0 for n in numbers):
            return None
        return (numbers[0], numbers[1], numbers[2])

    if "element_size_um" in attrs and (size := zyx(attrs["element_size_um"])):
        return size, "micrometer"
    if "resolution" in attrs and (size := zyx(attrs["resolution"])):
        unit = attrs.get("unit")
        if isinstance(unit, bytes):
            unit = unit.decode(errors="replace")
        if isinstance(unit, np.ndarray):
            unit = str(unit.ravel()[0]) if unit.size else None
        name = _UNIT_ALIASES.get(str(unit).strip().lower()) if unit is not None else None
        return size, name
    return (1.0, 1.0, 1.0), None


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

    from emseg.segmentation.measurements import UNITS, tiff_pixel_size

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
            imagej = tif.imagej_metadata or {}
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
    size = tiff_pixel_size(path)
    if size is None:
        return VolumeSource(spec, "tiff", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, file=str(path), layout=layout)
    z = 1.0
    spacing, imagej_unit = imagej.get("spacing"), _UNIT_ALIASES.get(str(imagej.get("unit", "")).strip().lower())
    if spacing and imagej_unit in ("nanometer", "micrometer", "millimeter") and float(spacing) > 0:
        z = _tidy(float(spacing) * _MICRONS[imagej_unit] / UNITS[size.unit])  # ImageJ's spacing is in its unit
    return VolumeSource(spec, "tiff", (int(zyx[0]), int(zyx[1]), int(zyx[2])), dtype.name, (z, size.value, size.value),
                        OME_UNITS[size.unit], file=str(path), layout=layout)
