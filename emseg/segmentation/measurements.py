"""Numbers about the cells: one row per cell per slice, and a per-slice summary, in pixels and physical units.

`emseg predict` writes `<stem>_cells.csv` (the columns of
[`cell_columns`][emseg.segmentation.measurements.cell_columns], from
`skimage.measure.regionprops_table`: every cell with its bounding box) and
`<stem>_cells_summary.csv` (cell count and median area per slice) beside the cell labels.
Where the pixel size is known (`--pixel-size 4nm`, OME metadata, ImageJ or TIFF
resolution tags) the lengths and areas are given in that unit as well, the unit in the
column name (`area_um2`, `perimeter_um`, ...).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.errors import EmsegError

#: units a pixel size may be given in, and their size in micrometres
UNITS = {"nm": 1e-3, "um": 1.0, "mm": 1e3}
_UNIT_NAMES = {"nm": "nm", "nanometer": "nm", "nanometre": "nm", "um": "um", "µm": "um", "μm": "um", "micron": "um",
               "micrometer": "um", "micrometre": "um", "mm": "mm", "millimeter": "mm", "millimetre": "mm"}
#: TIFF ResolutionUnit: 2 inch, 3 centimetre, in micrometres
_TIFF_UNITS = {2: 25400.0, 3: 10000.0}


@dataclass(frozen=True)
class PixelSize:
    """The side of a pixel, in `unit` (nm, um or mm)."""

    value: float
    unit: str

    @classmethod
    def in_microns(cls, microns: float) -> PixelSize:
        """The size in the unit that keeps the number between 1 and 1000 where it can (4 nm, not 0.004 um)."""
        unit = "nm" if microns < 1 else ("um" if microns < 1000 else "mm")
        return cls(microns / UNITS[unit], unit)


def parse_pixel_size(text: str) -> PixelSize:
    """Parse `--pixel-size`: a positive number and a unit, e.g. `4nm`, `0.004 um`, `4 nanometer`.

    Raises:
        EmsegError: No number and known unit, or a number that is not positive.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9.]+)\s*", text)
    unit = _UNIT_NAMES.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise EmsegError(f"--pixel-size {text!r}: give a number and a unit ({', '.join(UNITS)}), e.g. 4nm")
    value = float(match.group(1))
    if not value > 0:
        raise EmsegError(f"--pixel-size {text!r}: must be positive")
    return PixelSize(value, unit)


def _ome_size(xml: str) -> PixelSize | None:
    try:
        pixels = next(e for e in ElementTree.fromstring(xml).iter() if e.tag.endswith("Pixels"))
    except (ElementTree.ParseError, StopIteration):
        return None
    size, unit = pixels.get("PhysicalSizeX"), _UNIT_NAMES.get(pixels.get("PhysicalSizeXUnit", "µm").lower())
    return PixelSize.in_microns(float(size) * UNITS[unit]) if size and unit and float(size) > 0 else None


def tiff_pixel_size(path: str | os.PathLike[str]) -> PixelSize | None:
    """The pixel size a TIFF says it has, or None.

    OME metadata first, then ImageJ's unit, then the resolution tags (screen and print defaults
    such as 72 dpi say nothing and are ignored). An unreadable tag never fails a prediction:
    it gives None.
    """
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                found = _ome_size(tif.ome_metadata)
                if found:
                    return found
            page = tif.pages[0]
            resolution = page.tags.get("XResolution")
            if resolution is None:
                return None
            numerator, denominator = resolution.value
            if not numerator or not denominator:
                return None
            per_unit = numerator / denominator  # pixels per unit
            imagej_unit = _UNIT_NAMES.get(str((tif.imagej_metadata or {}).get("unit", "")).lower())
            tiff_unit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
            if imagej_unit:
                return PixelSize.in_microns(UNITS[imagej_unit] / per_unit)
            if tiff_unit in _TIFF_UNITS and per_unit not in (72.0, 96.0, 300.0, 1.0):  # screen/print defaults say nothing
                return PixelSize.in_microns(_TIFF_UNITS[tiff_unit] / per_unit)
    except Exception:  # a pixel size is a nicety: an unreadable tag never fails a prediction
        return None
    return None


#: the per-cell columns, in pixels; the length/area ones also come in the physical unit
PIXEL_COLUMNS = ("label", "slice", "area_px", "perimeter_px", "centroid_y_px", "centroid_x_px", "bbox_min_y_px", "bbox_min_x_px",
                 "bbox_max_y_px", "bbox_max_x_px", "equivalent_diameter_px", "eccentricity", "solidity", "mean_intensity")
_LENGTHS = ("perimeter", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x", "equivalent_diameter")
_PROPERTIES = ("label", "area", "perimeter", "centroid", "bbox", "equivalent_diameter_area", "eccentricity", "solidity", "intensity_mean")


def cell_columns(pixel_size: PixelSize | None) -> list[str]:
    """The CSV header: the pixel columns, then, with a pixel size, `area_<unit>2` and each length in the unit."""
    if pixel_size is None:
        return list(PIXEL_COLUMNS)
    return [*PIXEL_COLUMNS, f"area_{pixel_size.unit}2", *(f"{name}_{pixel_size.unit}" for name in _LENGTHS)]


def cell_rows(labels: np.ndarray, image: np.ndarray, slice_index: int, pixel_size: PixelSize | None) -> list[list[float]]:
    """One row per cell of one slice's labels (0 = no cell), in the order of [`cell_columns`][emseg.segmentation.measurements.cell_columns]."""
    from skimage.measure import regionprops_table

    if not labels.any():
        return []
    table = regionprops_table(labels.astype(np.int64), intensity_image=image, properties=_PROPERTIES)
    pixel = {
        "label": table["label"], "slice": np.full(len(table["label"]), slice_index), "area_px": table["area"],
        "perimeter_px": table["perimeter"], "centroid_y_px": table["centroid-0"], "centroid_x_px": table["centroid-1"],
        "bbox_min_y_px": table["bbox-0"], "bbox_min_x_px": table["bbox-1"], "bbox_max_y_px": table["bbox-2"],
        "bbox_max_x_px": table["bbox-3"], "equivalent_diameter_px": table["equivalent_diameter_area"],
        "eccentricity": table["eccentricity"], "solidity": table["solidity"], "mean_intensity": table["intensity_mean"],
    }
    columns = [pixel[name] for name in PIXEL_COLUMNS]
    if pixel_size is not None:
        columns.append(table["area"] * pixel_size.value**2)
        columns += [pixel[f"{name}_px"] * pixel_size.value for name in _LENGTHS]
    return [list(row) for row in zip(*columns)]


def summary_columns(pixel_size: PixelSize | None) -> list[str]:
    """The header of the per-slice summary: slice, cell count, median area in pixels (and in the unit, with a pixel size)."""
    return ["slice", "cells", "median_area_px"] + ([f"median_area_{pixel_size.unit}2"] if pixel_size else [])


def summary_row(labels: np.ndarray, slice_index: int, pixel_size: PixelSize | None) -> list[float]:
    """The cell count and median cell area of one slice."""
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    median = float(np.median(areas)) if len(areas) else 0.0
    return [slice_index, int(len(areas)), median] + ([median * pixel_size.value**2] if pixel_size else [])
