"""emseg.segmentation.measurements: per-cell rows whose numbers are known, pixel sizes from flags and TIFF tags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from emseg.errors import EmsegError
from emseg.segmentation.measurements import (
    PixelSize,
    cell_columns,
    cell_confidence,
    cell_rows,
    cell_uncertainty,
    parse_pixel_size,
    summary_row,
    tiff_pixel_size,
)

LABELS = np.zeros((10, 12), np.uint32)
LABELS[1:4, 1:5] = 1  # a 3 x 4 rectangle
LABELS[6:9, 6:11] = 2  # a 3 x 5 rectangle
IMAGE = np.arange(120, dtype=np.uint8).reshape(10, 12)


def test_each_cell_is_one_row_and_the_areas_sum_to_the_cell_pixels() -> None:
    columns = cell_columns(None)
    rows = [dict(zip(columns, row)) for row in cell_rows(LABELS, IMAGE, slice_index=3, pixel_size=None)]
    assert [r["label"] for r in rows] == [1, 2] and all(r["slice"] == 3 for r in rows)
    assert sum(r["area_px"] for r in rows) == (LABELS > 0).sum()
    first = rows[0]
    assert (first["bbox_min_y_px"], first["bbox_min_x_px"], first["bbox_max_y_px"], first["bbox_max_x_px"]) == (1, 1, 4, 5)
    assert (first["centroid_y_px"], first["centroid_x_px"]) == (2.0, 2.5)
    assert first["mean_intensity"] == pytest.approx(IMAGE[1:4, 1:5].mean())
    assert cell_rows(np.zeros((4, 4), np.uint32), np.zeros((4, 4)), 0, None) == []


def test_physical_columns_carry_their_unit() -> None:
    size = PixelSize(4.0, "nm")
    columns = cell_columns(size)
    assert "area_nm2" in columns and "perimeter_nm" in columns and "equivalent_diameter_nm" in columns
    row = dict(zip(columns, cell_rows(LABELS, IMAGE, 0, size)[0]))
    assert row["area_nm2"] == 12 * 16.0 and row["centroid_x_nm"] == pytest.approx(2.5 * 4)
    assert summary_row(LABELS, 0, size) == [0, 2, 13.5, 13.5 * 16.0]


@pytest.mark.parametrize(("text", "expected"), [("4nm", PixelSize(4.0, "nm")), ("0.004 um", PixelSize(0.004, "um")), ("4 nanometer", PixelSize(4.0, "nm")), ("2µm", PixelSize(2.0, "um"))])
def test_pixel_size_takes_a_number_and_a_unit(text: str, expected: PixelSize) -> None:
    assert parse_pixel_size(text) == expected


def test_a_pixel_size_in_nanometres() -> None:
    assert PixelSize(4.0, "nm").nm == 4.0 and PixelSize(0.0073, "um").nm == pytest.approx(7.3) and PixelSize(2e-6, "mm").nm == pytest.approx(2.0)


@pytest.mark.parametrize(("text", "message"), [("4", "give a number and a unit"), ("4 parsecs", "give a number and a unit"), ("0nm", "must be positive")])
def test_a_pixel_size_without_a_unit_or_not_positive_is_one_error(text: str, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_pixel_size(text)


def test_tiff_resolution_tags_give_the_pixel_size(tmp_path: Path) -> None:
    stack = np.zeros((2, 8, 8), np.uint8)
    tifffile.imwrite(tmp_path / "imagej.tif", stack, imagej=True, resolution=(250, 250), metadata={"unit": "um", "axes": "ZYX"})
    tifffile.imwrite(tmp_path / "cm.tif", stack[0], resolution=(2.5e6, 2.5e6), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "ome.ome.tif", stack, metadata={"axes": "ZYX", "PhysicalSizeX": 0.005, "PhysicalSizeXUnit": "µm"})
    tifffile.imwrite(tmp_path / "plain.tif", stack[0])
    assert tiff_pixel_size(tmp_path / "imagej.tif") == PixelSize(4.0, "nm")
    assert tiff_pixel_size(tmp_path / "cm.tif") == PixelSize(4.0, "nm")
    assert tiff_pixel_size(tmp_path / "ome.ome.tif") == PixelSize(5.0, "nm")
    assert tiff_pixel_size(tmp_path / "plain.tif") is None


def test_a_size_in_nm_takes_the_unit_that_keeps_the_number_readable() -> None:
    assert PixelSize.in_nm(4.6) == PixelSize(4.6, "nm") and PixelSize.in_nm(4600.0) == PixelSize(4.6, "um")
    assert PixelSize.in_nm(2.5e6) == PixelSize(2.5, "mm") and PixelSize.in_nm(4.6).nm == pytest.approx(4.6)


def test_a_cell_with_an_unsure_border_gets_the_lower_confidence() -> None:
    variance = np.zeros(LABELS.shape, np.float32)
    variance[5, 5:12] = 0.2  # unsure pixels on the outline just above cell 2, none near cell 1
    uncertainty = cell_uncertainty(LABELS, variance)
    assert uncertainty.shape == (3,) and uncertainty[1] == 0.0 and uncertainty[2] > 0.0
    assert cell_uncertainty(LABELS, variance, rim=0)[2] == 0.0  # the border counts only through the rim
    confidence = cell_confidence(uncertainty)
    assert confidence[1] == 1.0 and 0.0 <= confidence[2] < 1.0 and cell_confidence(np.array([0.25]))[0] == 0.0
    columns = cell_columns(PixelSize(4.0, "nm"), confidence=True)
    rows = [dict(zip(columns, row)) for row in cell_rows(LABELS, IMAGE, 0, PixelSize(4.0, "nm"), variance)]
    assert [r["confidence"] for r in rows] == pytest.approx(list(confidence[1:]))
    assert columns.index("confidence") < columns.index("area_nm2") and "confidence" not in cell_columns(None)
