"""Read a stack of slices and its voxel size from any layout a lab keeps it in.

[`load_stack`][emseg.io.stacks.load_stack] takes a multi-page TIFF, a single TIFF/PNG slice,
a folder of slices (one slice per file, in name order), an OME-Zarr image or an HDF5 dataset
(`file.h5:/dataset`), and returns its pixels as `(slices, height, width)` with the voxel size
the files carry, as a [`VoxelSize`][emseg.io.stacks.VoxelSize] in nm, or None. Unlike
[`read_stack`][emseg.io.images.read_stack] it reads the whole stack into memory: it is meant
for training data, not for volumes bigger than memory (those go through
`emseg.inference.volume.sources`, a layer above this one, which this module cannot import).

The voxel size is read here, in nm, rather than as the `PixelSize` of
`emseg.segmentation.measurements` (a layer above `io`): the training data's size is what
`params.yaml: data.pixel_size` and the model file hold, `[z, y, x]` in nm. This module is the
one reader of pixel sizes in files: `emseg.segmentation.measurements` (TIFF pixel sizes) and
`emseg.inference.volume.sources` (lazy OME-Zarr, HDF5 and TIFF volumes) call
[`tiff_voxel_size`][emseg.io.stacks.tiff_voxel_size],
[`open_hdf5`][emseg.io.stacks.open_hdf5], [`open_zarr`][emseg.io.stacks.open_zarr], [`hdf5_dataset`][emseg.io.stacks.hdf5_dataset],
[`hdf5_scale`][emseg.io.stacks.hdf5_scale] and [`ome_zarr_level`][emseg.io.stacks.ome_zarr_level] rather than parse the metadata again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from emseg.errors import EmsegError
from emseg.io.images import IMAGE_SUFFIXES, TIFF_SUFFIXES, _tifffile_warnings, list_images, read_image, read_tiff

#: OME-NGFF spatial unit names, in nm
OME_UNITS_NM = {"angstrom": 0.1, "picometer": 1e-3, "nanometer": 1.0, "micrometer": 1e3, "millimeter": 1e6, "centimeter": 1e7,
                "decimeter": 1e8, "meter": 1e9}
#: unit spellings met in OME, ImageJ and HDF5 metadata -> their OME-NGFF names
UNIT_NAMES = {
    "a": "angstrom", "å": "angstrom", "angstrom": "angstrom", "nm": "nanometer", "nanometer": "nanometer", "nanometre": "nanometer",
    "um": "micrometer", "µm": "micrometer", "μm": "micrometer", "micron": "micrometer", "microns": "micrometer",
    "micrometer": "micrometer", "micrometre": "micrometer", "mm": "millimeter", "millimeter": "millimeter", "millimetre": "millimeter",
    "cm": "centimeter", "centimeter": "centimeter", "m": "meter", "meter": "meter",
}
#: length units met in OME, ImageJ and HDF5 metadata (spellings and OME-NGFF names), in nm
UNITS_NM = {**OME_UNITS_NM, **{spelling: OME_UNITS_NM[name] for spelling, name in UNIT_NAMES.items()}}
#: emseg's pixel-size units (`--pixel-size 4nm`, the measurement columns) and the OME-NGFF names they stand for
OME_UNITS = {"nm": "nanometer", "um": "micrometer", "mm": "millimeter"}
#: TIFF ResolutionUnit 2 (inch) and 3 (centimetre), in nm
_TIFF_UNITS_NM = {2: 25.4e6, 3: 1e7}
#: pixels per unit that screen and print defaults write: they say nothing about the sample
_DEFAULT_RESOLUTIONS = (1.0, 72.0, 96.0, 300.0)
_H5_SPEC = re.compile(r"^(.*?\.(?:h5|hdf5|hdf))(?::(.*))?$", re.IGNORECASE | re.DOTALL)
#: what marks a folder as a zarr store rather than a folder of slices
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
#: two sizes closer than this (relative) are one size: metadata round-trips through text and inches
_SAME_SIZE = 1e-3


@dataclass(frozen=True)
class VoxelSize:
    """The size of a voxel in nm: `y` and `x` the pixel's sides, `z` the section thickness (None when unknown)."""

    y: float
    x: float
    z: float | None = None

    @classmethod
    def of(cls, value: VoxelSize | Sequence[float]) -> VoxelSize:
        """A voxel size from `[z, y, x]` or `[y, x]` in nm (as `params.yaml: data.pixel_size` holds it), or itself.

        Raises:
            EmsegError: Not two or three positive numbers.
        """
        if isinstance(value, VoxelSize):
            return value
        numbers = [float(v) for v in value]
        if len(numbers) not in (2, 3) or not all(math.isfinite(n) and n > 0 for n in numbers):
            raise EmsegError(f"pixel size {list(value)}: give [z, y, x] or [y, x], positive numbers in nm")
        return cls(numbers[-2], numbers[-1], numbers[0] if len(numbers) == 3 else None)

    def as_list(self) -> list[float]:
        """`[z, y, x]` in nm (the model file's `pixel_size`), or `[y, x]` when the section thickness is unknown."""
        return [self.y, self.x] if self.z is None else [self.z, self.y, self.x]

    def agrees_with(self, other: VoxelSize) -> bool:
        """Whether two sizes are the same (to 0.1 %); a thickness only one of them knows is no disagreement."""
        pairs = [(self.y, other.y), (self.x, other.x)] + ([(self.z, other.z)] if self.z is not None and other.z is not None else [])
        return all(math.isclose(a, b, rel_tol=_SAME_SIZE) for a, b in pairs)

    def __str__(self) -> str:
        side = f"{self.y:g} nm" if self.y == self.x else f"{self.y:g} x {self.x:g} nm"
        return side + (f", sections {self.z:g} nm" if self.z is not None else "")


@dataclass(frozen=True)
class Stack:
    """A stack read by [`load_stack`][emseg.io.stacks.load_stack].

    Attributes:
        spec: The stack as it was named (a file, a folder, `file.h5:/dataset`), for messages.
        pixels: `(slices, height, width)`, in the files' pixel type (bool for 1-bit images).
        pixel_size: The voxel size the files carry, or None.
        slice_files: A folder's file names, one per slice in order; None for one file or store.
    """

    spec: str
    pixels: np.ndarray
    pixel_size: VoxelSize | None = None
    slice_files: tuple[str, ...] | None = None


def split_hdf5_spec(spec: str) -> tuple[str, str | None] | None:
    """`(file, dataset)` of an HDF5 spec (`a.h5:/raw` -> `("a.h5", "/raw")`, `a.h5` -> `("a.h5", None)`); None for other specs."""
    match = _H5_SPEC.match(str(spec))
    if match is None:
        return None
    return match.group(1), (match.group(2) or None)


def spec_file(spec: str) -> str:
    """The file or folder a spec names: the spec itself, or an HDF5 spec's file."""
    h5 = split_hdf5_spec(spec)
    return h5[0] if h5 else str(spec)


def is_zarr(path: str | Path) -> bool:
    """Whether `path` names a zarr store (`*.zarr`, or a folder holding zarr metadata) rather than a folder of slices."""
    path = Path(path)
    return path.name.lower().endswith(".zarr") or (path.is_dir() and any((path / marker).is_file() for marker in ZARR_MARKERS))


def load_stack(spec: str | Path) -> Stack:
    """Read a stack of grey slices, and its voxel size, from any of the layouts a lab keeps.

    Args:
        spec: A multi-page or single-page TIFF; a PNG (or JPEG) slice; a folder of TIFF/PNG
            slices, one slice per file, sorted by name, all of one shape and pixel type; an
            OME-Zarr image (its full-resolution level) or a plain zarr array; an HDF5 dataset
            `file.h5:/dataset` (the dataset may be left out when the file holds one).

    Returns:
        The [`Stack`][emseg.io.stacks.Stack]: pixels `(slices, height, width)`, and the voxel
        size from OME-TIFF, ImageJ or TIFF resolution tags, OME-Zarr scales, or HDF5
        `element_size_um` / `resolution` + `unit`; None where the files say nothing (PNGs never do).

    Raises:
        EmsegError: One line naming the file: missing, unreadable, not one grey slice per file
            in a folder, a folder file of another shape or pixel type than the first, a zarr or
            HDF5 array with channels or more than three axes.
    """
    spec = str(spec)
    if h5 := split_hdf5_spec(spec):
        return _load_hdf5(spec, *h5)
    path = Path(spec)
    if is_zarr(path):
        return _load_zarr(spec, path)
    if path.is_dir():
        return _load_folder(spec, path)
    if not path.exists():
        raise EmsegError(f"{spec}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return Stack(spec, read_tiff(path), tiff_voxel_size(path))
    if suffix in IMAGE_SUFFIXES:
        return Stack(spec, read_image(path))
    raise EmsegError(f"{spec}: unsupported file type '{path.suffix}' (a TIFF, PNG, a folder of them, OME-Zarr or HDF5 'file.h5:/dataset')")


def _load_folder(spec: str, folder: Path) -> Stack:
    files = list_images(folder)
    if not files:
        raise EmsegError(f"{spec}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    first = _one_slice(files[0])
    pixels = np.empty((len(files), *first.shape), first.dtype)
    pixels[0] = first
    for index, file in enumerate(files[1:], start=1):
        image = _one_slice(file)
        if image.shape != first.shape or image.dtype != first.dtype:
            raise EmsegError(
                f"{file}: slice {image.shape[0]}x{image.shape[1]} {image.dtype} differs from the folder's first, {files[0].name}, "
                f"{first.shape[0]}x{first.shape[1]} {first.dtype} (a folder's slices must share one shape and pixel type)"
            )
        pixels[index] = image
    size = tiff_voxel_size(files[0]) if files[0].suffix.lower() in TIFF_SUFFIXES else None
    return Stack(spec, pixels, size, tuple(f.name for f in files))


def _one_slice(file: Path) -> np.ndarray:
    stack = read_tiff(file) if file.suffix.lower() in TIFF_SUFFIXES else read_image(file)
    if len(stack) != 1:
        raise EmsegError(f"{file}: holds {len(stack)} slices; a folder of slices holds one slice per file")
    return stack[0]


# --- TIFF voxel size -----------------------------------------------------------------------------


def tiff_voxel_size(path: str | Path) -> VoxelSize | None:
    """The voxel size a TIFF says it has, in nm, or None.

    OME metadata first (`PhysicalSizeX/Y/Z`), then ImageJ's `unit` with the resolution tags
    (and `spacing` for z), then the resolution tags with a centimetre or inch unit; screen and
    print defaults (72 dpi and the like) say nothing and give None, as does an unreadable tag.
    """
    import tifffile

    try:
        with _tifffile_warnings(), tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata and (size := _ome_tiff_size(tif.ome_metadata)):
                return size
            page = tif.pages[0]
            per_x, per_y = (_per_unit(page.tags.get(name)) for name in ("XResolution", "YResolution"))
            if per_x is None:
                return None
            per_y = per_y or per_x
            imagej = tif.imagej_metadata or {}
            unit_nm = UNITS_NM.get(str(imagej.get("unit", "")).strip().lower())
            if unit_nm is not None:
                spacing = imagej.get("spacing")
                z = float(spacing) * unit_nm if spacing and float(spacing) > 0 else None
                return VoxelSize(tidy(unit_nm / per_y), tidy(unit_nm / per_x), z and tidy(z))
            tiff_unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
            if tiff_unit in _TIFF_UNITS_NM and per_x not in _DEFAULT_RESOLUTIONS:
                return VoxelSize(tidy(_TIFF_UNITS_NM[tiff_unit] / per_y), tidy(_TIFF_UNITS_NM[tiff_unit] / per_x))
    except Exception:  # noqa: BLE001 -- a voxel size is metadata: an unreadable tag says nothing, it does not fail the read
        return None
    return None


def _per_unit(tag: Any) -> float | None:
    if tag is None:
        return None
    numerator, denominator = tag.value
    return numerator / denominator if numerator and denominator else None


def _ome_tiff_size(xml: str) -> VoxelSize | None:
    try:
        pixels = next(e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("Pixels"))
    except (ElementTree.ParseError, StopIteration):
        return None

    def side(axis: str) -> float | None:
        value, unit = pixels.get(f"PhysicalSize{axis}"), UNITS_NM.get(pixels.get(f"PhysicalSize{axis}Unit", "µm").lower())
        return tidy(float(value) * unit) if value and unit and float(value) > 0 else None

    x, y, z = side("X"), side("Y"), side("Z")
    return VoxelSize(y or x, x, z) if x else None


def tidy(value: float) -> float:
    """`value` to 12 significant digits: unit conversions must not read (or print as) 4.000000000000001 nm."""
    return float(f"{value:.12g}")


# --- OME-Zarr ------------------------------------------------------------------------------------


def open_zarr(spec: str, path: Path) -> Any:
    """The zarr store at `path` (of the input `spec`) open for reading: a `zarr.Array` or a `zarr.Group`.

    Raises:
        EmsegError: No such file or folder, or not a readable zarr store.
    """
    import zarr

    if not path.exists():
        raise EmsegError(f"{spec}: no such file or folder")
    try:
        return zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 -- zarr raises several kinds for a broken store (FileNotFoundError, ValueError, its own)
        raise EmsegError(f"{spec}: not a readable zarr store ({type(exc).__name__}: {exc})") from None


def _load_zarr(spec: str, path: Path) -> Stack:
    import zarr

    root = open_zarr(spec, path)
    if isinstance(root, zarr.Array):  # a plain array: no axes, no scale
        return Stack(spec, _grey_zyx(spec, np.asarray(root[...]), ["z", "y", "x"][-root.ndim:] if root.ndim <= 3 else []))
    try:
        level = ome_zarr_level(root)
        if level is None:
            raise KeyError("multiscales")
    except (KeyError, IndexError, TypeError) as exc:
        raise EmsegError(f"{spec}: a zarr group without readable OME-Zarr multiscales metadata ({type(exc).__name__}: {exc})") from None
    pixels = _grey_zyx(spec, np.asarray(level.array[...]), level.names)
    nm = {name: s * UNITS_NM[str(u).lower()] for name, s, u in zip(level.names, level.scale, level.units) if u and str(u).lower() in UNITS_NM}
    size = VoxelSize(tidy(nm.get("y", nm["x"])), tidy(nm["x"]), tidy(nm["z"]) if "z" in nm else None) if "x" in nm else None
    return Stack(spec, pixels, size)


@dataclass(frozen=True)
class OmeZarrLevel:
    """The full-resolution level of an OME-Zarr image, as [`ome_zarr_level`][emseg.io.stacks.ome_zarr_level] reads it.

    Attributes:
        path: The level's array path inside the group.
        array: The level's array (a zarr array: nothing read yet).
        names: One lower-case axis name per array axis (OME's t, c, z, y, x).
        units: Each axis's unit as the metadata writes it (an OME-NGFF name), or None.
        scale: Each axis's scale, the image's and the level's scale transformations multiplied.
    """

    path: str
    array: Any
    names: list[str]
    units: list[str | None]
    scale: list[float]


def ome_zarr_level(root: Any) -> OmeZarrLevel | None:
    """The full-resolution level of the OME-Zarr image in the zarr group `root`; None when it has no `multiscales` metadata.

    Reads OME-Zarr 0.1 to 0.5 (0.5 nests the metadata under `ome`; 0.1-0.2 have no axes: always tczyx).

    Raises:
        KeyError: Broken multiscales metadata (also IndexError, TypeError): the caller names the store.
    """
    attrs = dict(root.attrs)
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs  # OME-Zarr 0.5 nests under "ome", 0.4 does not
    multiscales = ome.get("multiscales") or attrs.get("multiscales")
    if not multiscales:
        return None
    image = multiscales[0]
    level = image["datasets"][0]
    path = str(level["path"])
    array = root[path]
    axes = image.get("axes") or [{"name": n} for n in "tczyx"[-array.ndim:]]  # 0.1-0.2: always tczyx
    names = [a if isinstance(a, str) else str(a.get("name", "")) for a in axes]
    units = [None if isinstance(a, str) else a.get("unit") for a in axes]
    scale = np.ones(len(names))
    for transforms in (image.get("coordinateTransformations"), level.get("coordinateTransformations")):
        for transform in transforms or []:
            if transform.get("type") == "scale" and len(transform.get("scale", [])) == len(names):
                scale = scale * np.asarray(transform["scale"], float)
    return OmeZarrLevel(path, array, [name.lower() for name in names], units, [float(s) for s in scale])


# --- HDF5 ----------------------------------------------------------------------------------------


def _load_hdf5(spec: str, file: str, dataset: str | None) -> Stack:
    with open_hdf5(spec, file) as handle:
        dataset, obj = hdf5_dataset(handle, file, dataset)
        if obj.dtype.kind not in "biuf":
            raise EmsegError(f"{file}:{dataset}: pixel type {obj.dtype} is not a grey image type (bool, integer or float)")
        names = ["z", "y", "x"][-obj.ndim:] if obj.ndim <= 3 else ["."] * (obj.ndim - 3) + ["z", "y", "x"]
        pixels = _grey_zyx(f"{file}:{dataset}", obj[()], names)
        size = _h5_voxel_size(dict(obj.attrs))
    return Stack(spec, pixels, size)


def open_hdf5(spec: str, file: str) -> Any:
    """The HDF5 file `file` (of the input `spec`) open for reading, as an `h5py.File`.

    Raises:
        EmsegError: No such file, not a file, or not a readable HDF5 file.
    """
    import h5py

    path = Path(file)
    if not path.exists():
        raise EmsegError(f"{spec}: no such file {file}")
    if not path.is_file():
        raise EmsegError(f"{spec}: {file} is not a file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EmsegError(f"{spec}: not a readable HDF5 file ({exc})") from None


def hdf5_dataset(handle: Any, file: str, dataset: str | None) -> tuple[str, Any]:
    """The dataset `dataset` of the open HDF5 file `handle` (of `file`), as `(/name, h5py.Dataset)`; the only one when None.

    Raises:
        EmsegError: No dataset of that name, or `dataset` left out of a file that holds none or several.
    """
    import h5py

    found: list[str] = []
    handle.visititems(lambda name, obj: found.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    listed = ", ".join(found) or "none"
    if dataset is None or not dataset.strip("/"):
        if len(found) != 1:
            raise EmsegError(f"{file}: holds {len(found)} datasets ({listed}); name one, e.g. '{file}:{found[0] if found else '/raw'}'")
        dataset = found[0]
    dataset = "/" + dataset.strip("/")
    obj = handle.get(dataset)
    if not isinstance(obj, h5py.Dataset):
        raise EmsegError(f"{file}: no dataset {dataset} (datasets: {listed})")
    return dataset, obj


def hdf5_scale(attrs: dict[str, Any]) -> tuple[list[float], str | None] | None:
    """The voxel size an HDF5 dataset's attributes give, in their own unit; None where they give none.

    From `element_size_um` (Fiji, ilastik: z, y, x in micrometres) or `resolution` with a
    `unit`. `resolution` without a (known) `unit` keeps its numbers, whose ratios still say how
    anisotropic the volume is, with the unit None: emseg does not guess nm.

    Returns:
        `([z, y, x] or [y, x], unit)`: positive numbers (one number stands for all three axes)
        and the OME-NGFF name of their unit (`micrometer`), or None for an unknown unit.
    """

    def numbers(value: Any) -> list[float] | None:
        try:
            values = [float(v) for v in np.atleast_1d(np.asarray(value, dtype=float))]
        except (TypeError, ValueError):
            return None
        values = values * 3 if len(values) == 1 else values
        return values if len(values) in (2, 3) and all(v > 0 for v in values) else None

    if "element_size_um" in attrs and (values := numbers(attrs["element_size_um"])):
        return values, "micrometer"
    if "resolution" in attrs and (values := numbers(attrs["resolution"])):
        unit = attrs.get("unit")
        if isinstance(unit, bytes):
            unit = unit.decode(errors="replace")
        if isinstance(unit, np.ndarray):
            unit = str(unit.ravel()[0]) if unit.size else None
        return values, UNIT_NAMES.get(str(unit).strip().lower()) if unit is not None else None
    return None


def _h5_voxel_size(attrs: dict[str, Any]) -> VoxelSize | None:
    """The [`hdf5_scale`][emseg.io.stacks.hdf5_scale] in nm; None without a known unit."""
    found = hdf5_scale(attrs)
    if found is None or found[1] is None:
        return None
    zyx = [tidy(v * OME_UNITS_NM[found[1]]) for v in found[0]]
    return VoxelSize(zyx[-2], zyx[-1], zyx[0] if len(zyx) == 3 else None)


def _grey_zyx(spec: str, array: np.ndarray, names: list[str]) -> np.ndarray:
    """`array` as `(slices, height, width)`: leading size-1 axes (OME's t and c) dropped, anything wider refused."""
    if len(names) != array.ndim or names[-2:] != ["y", "x"]:
        raise EmsegError(f"{spec}: an array of shape {array.shape} (axes {''.join(names) or '?'}); a stack has axes z, y, x or y, x")
    lead = [(name, size) for name, size in zip(names[:-2], array.shape[:-2]) if name != "z"]
    wide = [f"{name}={size}" for name, size in lead if size != 1]
    if wide or names.count("z") > 1:
        raise EmsegError(f"{spec}: axes {''.join(names)} of shape {array.shape}: {', '.join(wide) or 'two z axes'}; give one grey channel")
    grey = array.reshape([size for name, size in zip(names, array.shape) if name in ("z", "y", "x")])
    return grey if grey.ndim == 3 else grey[np.newaxis]
