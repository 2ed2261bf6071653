"""Numbers about the cells: one row per cell per slice, and a per-slice summary, in pixels and physical units.

`emseg predict` writes `<stem>_cells.csv` (the columns of
[`cell_columns`][emseg.segmentation.measurements.cell_columns], from
`skimage.measure.regionprops_table`: every cell with its bounding box) and
`<stem>_cells_summary.csv` (cell count and median area per slice) beside the cell labels.
Where the pixel size is known (`--pixel-size 4nm`, OME metadata, ImageJ or TIFF
resolution tags) the lengths and areas are given in that unit as well, the unit in the
column name (`area_um2`, `perimeter_um`, ...). A run with test-time augmentation adds each
cell's `uncertainty` and `confidence` ([`cell_confidence`][emseg.segmentation.measurements.cell_confidence]):
which cells a reviewer should look at first.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.errors import EmsegError
from emseg.io.stacks import OME_UNITS, UNIT_NAMES, tidy, tiff_voxel_size

#: units a pixel size may be given in, and their size in micrometres
UNITS = {"nm": 1e-3, "um": 1.0, "mm": 1e3}
#: the spellings of those units that `--pixel-size` takes (`4 nanometer`): the io layer's, for nm, um and mm
_UNIT_NAMES = {spelling: unit for spelling, name in UNIT_NAMES.items() for unit, ome in OME_UNITS.items() if name == ome}


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

    @classmethod
    def in_nm(cls, nm: float) -> PixelSize:
        """A size given in nm (as [`VoxelSize`][emseg.io.stacks.VoxelSize] holds it), in the unit of `in_microns`, to 12 digits."""
        size = cls.in_microns(nm * UNITS["nm"])
        return cls(tidy(size.value), size.unit)

    @property
    def nm(self) -> float:
        """The size in nanometres (the unit of a model file's pixel size)."""
        return self.value * UNITS[self.unit] / UNITS["nm"]


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


def tiff_pixel_size(path: str | os.PathLike[str]) -> PixelSize | None:
    """The pixel size (the x side) a TIFF says it has, or None.

    Read by [`tiff_voxel_size`][emseg.io.stacks.tiff_voxel_size]: OME metadata first, then
    ImageJ's unit, then the resolution tags (screen and print defaults such as 72 dpi say
    nothing and are ignored). An unreadable tag never fails a prediction: it gives None.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    size = tiff_voxel_size(path)
    return PixelSize.in_nm(size.x) if size else None


#: the per-cell columns, in pixels; the length/area ones also come in the physical unit
PIXEL_COLUMNS = ("label", "slice", "area_px", "perimeter_px", "centroid_y_px", "centroid_x_px", "bbox_min_y_px", "bbox_min_x_px",
                 "bbox_max_y_px", "bbox_max_x_px", "equivalent_diameter_px", "eccentricity", "solidity", "mean_intensity")
_LENGTHS = ("perimeter", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x", "equivalent_diameter")
_PROPERTIES = ("label", "area", "perimeter", "centroid", "bbox", "equivalent_diameter_area", "eccentricity", "solidity", "intensity_mean")


#: the per-cell columns of a run with test-time augmentation (after the pixel columns)
CONFIDENCE_COLUMNS = ("uncertainty", "confidence")
#: how far a cell's border reaches: the outline pixels within this distance go to the nearest cell (its side of them)
CONFIDENCE_RIM = 2


def cell_uncertainty(labels: np.ndarray, variance: np.ndarray, rim: int = CONFIDENCE_RIM) -> np.ndarray:
    """The mean uncertainty of every label `0..labels.max()` along its border.

    A cell goes wrong at its borders: a membrane missed inside it (a merge) shows as an unsure
    stretch where the agglomeration cut or did not, one drawn through it (a split) as an unsure
    border with a neighbour. The border is the cell's side of the outlines around it (each
    outline pixel within `rim` pixels goes to the nearest cell, `skimage.segmentation.expand_labels`)
    and the cell's own pixels along them. The mean over the border, not over the whole cell,
    was chosen on validation slices: on the 3 validation slices of a cross-validation fold it
    ranked the cells by their IoU with the truth twice as well as the mean over cell and rim
    (Spearman 0.31 against 0.15; docs: results/uncertainty.md, which statistic).

    Args:
        labels: One slice's cells (0 = outlines / no cell).
        variance: The slice's uncertainty ([`Prediction.uncertainty`][emseg.networks.prediction.Prediction]).
        rim: How far into the outlines a cell's border reaches, pixels.
    """
    from skimage.segmentation import expand_labels, find_boundaries

    grown = expand_labels(labels, rim) if rim else labels
    border = np.where(find_boundaries(grown, mode="inner") | (labels == 0), grown, 0)
    size = int(labels.max()) + 1
    sums = np.bincount(border.ravel(), weights=variance.ravel().astype(np.float64), minlength=size)[:size]
    counts = np.bincount(border.ravel(), minlength=size)[:size]
    return sums / np.maximum(counts, 1)


def cell_confidence(uncertainty: np.ndarray) -> np.ndarray:
    """Confidence 0..1 from a cell's mean variance: 1 - 2 x its root, the standard deviation of a probability being at most 0.5."""
    return 1.0 - 2.0 * np.sqrt(np.clip(uncertainty, 0.0, 0.25))


def cell_columns(pixel_size: PixelSize | None, confidence: bool = False) -> list[str]:
    """The CSV header: the pixel columns, with `confidence` the uncertainty and confidence, then, with a pixel size,
    `area_<unit>2` and each length in the unit."""
    columns = [*PIXEL_COLUMNS, *(CONFIDENCE_COLUMNS if confidence else ())]
    if pixel_size is None:
        return columns
    return [*columns, f"area_{pixel_size.unit}2", *(f"{name}_{pixel_size.unit}" for name in _LENGTHS)]


def cell_rows(
    labels: np.ndarray, image: np.ndarray, slice_index: int, pixel_size: PixelSize | None, variance: np.ndarray | None = None
) -> list[list[float]]:
    """One row per cell of one slice's labels (0 = no cell), in the order of [`cell_columns`][emseg.segmentation.measurements.cell_columns].

    `variance` (the slice's uncertainty map) adds each cell's `uncertainty` and `confidence`.
    """
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
    if variance is not None:
        uncertainty = cell_uncertainty(labels, variance)[table["label"]]
        columns += [uncertainty, cell_confidence(uncertainty)]
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
