"""The measurements widget: `emseg predict`'s per-cell table for a cells layer, a row to find its cell, colours by a column, CSV.

The rows are [`cell_rows`][emseg.segmentation.measurements.cell_rows]'s, the columns
[`cell_columns`][emseg.segmentation.measurements.cell_columns]'s: the CSV it exports has the
columns and values of `emseg predict`'s `<stem>_cells.csv` for the same cells and image.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, PushButton, create_widget
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtWidgets import QAbstractItemView, QTableView

from emseg.errors import EmsegError
from emseg.napari_plugin.layers import cells_run, follow_layers, layer_pixel_size, segmented_image
from emseg.napari_plugin.workers import Progress, RunPanel

if TYPE_CHECKING:
    import napari

#: the name given to the layer that colours cells by a column: "<cells layer> by <column>"
COLOURED_SUFFIX = " by "


class CellTable:
    """The measurements of one cells layer: the header and one row per cell per slice.

    `rows` are [`cell_rows`][emseg.segmentation.measurements.cell_rows]'s as made (integer
    labels stay integers in the CSV), `values` the same as a float array for the view.
    """

    def __init__(self, columns: list[str], rows: list[list[float]]) -> None:
        self.columns, self.rows = columns, rows
        self.values = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(columns))

    def column(self, name: str) -> np.ndarray:
        """One column's values."""
        return self.values[:, self.columns.index(name)]

    def numeric_columns(self) -> list[str]:
        """The columns a cell can be coloured by (all but its label and slice)."""
        return [name for name in self.columns if name not in ("label", "slice")]

    def write_csv(self, path: Path) -> None:
        """Write the table as `emseg predict`'s `<stem>_cells.csv`, atomically (no half-written file)."""
        from emseg.io.atomic import atomic_output

        with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(self.rows)


def measure(cells: np.ndarray, image: np.ndarray, pixel_size: Any, progress: Progress | None = None) -> CellTable:
    """The per-cell table of a cells array (2-D or a stack) over its image, slice by slice.

    Raises:
        EmsegError: The image's shape differs from the cells'.
    """
    from emseg.segmentation.measurements import cell_columns, cell_rows

    if image.shape != cells.shape:
        raise EmsegError(f"the image's shape {image.shape} differs from the cells' {cells.shape}")
    pages = (cells[None], image[None]) if cells.ndim == 2 else (cells, image)
    rows: list[list[float]] = []
    for index, (labels, raw) in enumerate(zip(*pages, strict=True)):
        rows += cell_rows(np.asarray(labels), np.asarray(raw), index, pixel_size)
        if progress is not None:
            progress.set(index + 1, len(pages[0]))
    return CellTable(cell_columns(pixel_size), rows)


def coloured_by(cells: np.ndarray, table: CellTable, column: str) -> np.ndarray:
    """A float image where every cell's pixels hold its value in `column` (NaN on outlines, for a transparent background)."""
    out = np.full(cells.shape, np.nan, np.float32)
    slices, labels, values = table.column("slice").astype(np.int64), table.column("label").astype(np.int64), table.column(column)
    pages = out[None] if cells.ndim == 2 else out
    cell_pages = cells[None] if cells.ndim == 2 else cells
    for index in np.unique(slices):
        mine = slices == index
        lookup = np.full(int(cell_pages[index].max()) + 1, np.nan, np.float32)
        lookup[labels[mine]] = values[mine]
        pages[index] = lookup[cell_pages[index]]
    return out


class _TableModel(QAbstractTableModel):
    """A read-only Qt model over the table's array: fast for tens of thousands of cells (no item per cell)."""

    def __init__(self, table: CellTable) -> None:
        super().__init__()
        self.table = table

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.table.rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.table.columns)

    def data(self, index: QModelIndex, role: int = Qt.DisplayRole) -> Any:
        value = self.table.values[index.row(), index.column()]
        if role == Qt.DisplayRole:
            return f"{value:.6g}"
        if role == Qt.UserRole:  # what the sort compares: numbers, not their text
            return float(value)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.DisplayRole) -> Any:
        if role != Qt.DisplayRole:
            return None
        return self.table.columns[section] if orientation == Qt.Horizontal else str(section + 1)


class MeasureWidget(Container):
    """Measure the cells of a labels layer; pick a row to select and centre its cell; colour cells by a column; export CSV.

    Args:
        viewer: The napari viewer (npe2 passes it).
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.table: CellTable | None = None
        self.measured: Labels | None = None
        self.cells = create_widget(annotation=Labels, label="cells")
        self.image = create_widget(annotation=Image, label="image")
        self.panel = RunPanel("Measure", "measurements")
        # choices read from the table: napari resets every docked widget's choices when a layer comes or goes
        self.colour_by = ComboBox(choices=lambda _: self.table.numeric_columns() if self.table is not None else [], label="colour by", enabled=False)
        self.colour_button = PushButton(text="Colour cells", enabled=False)
        self.csv_path = FileEdit(mode="w", filter="*.csv", label="CSV")
        self.export_button = PushButton(text="Export CSV", enabled=False)
        super().__init__(widgets=[self.cells, self.image, self.panel, self.colour_by, self.colour_button, self.csv_path, self.export_button])
        self.view = QTableView()
        self.view.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SingleSelection)
        self.view.setSortingEnabled(True)
        self.native.layout().insertWidget(3, self.view)
        self.panel.run_button.changed.connect(self.run)
        self.colour_button.changed.connect(self.colour)
        self.export_button.changed.connect(self.export)
        self.cells.changed.connect(self._pick_image)
        follow_layers(viewer, self.cells, self.image)

    def _pick_image(self, cells: Labels | None) -> None:
        """Default the image to the one the cells were segmented from."""
        image = segmented_image(self.viewer, cells)
        if image is not None:
            self.image.value = image

    def run(self) -> Any:
        """Measure the chosen cells layer on a worker; returns the worker, or None when refused with a notification."""
        cells, image = self.cells.value, self.image.value
        if cells is None or cells not in self.viewer.layers:  # a removed layer can linger in the choice
            show_error("emseg measurements: no cells layer: segment an image first")
            return None
        if image is None or image not in self.viewer.layers:
            show_error("emseg measurements: no image layer for the intensities")
            return None
        labels, pixels = np.asarray(cells.data), np.asarray(image.data)
        run = cells_run(cells)
        from emseg.segmentation.measurements import PixelSize

        pixel_size = PixelSize.in_nm(run["pixel_size_nm"]) if run.get("pixel_size_nm") else layer_pixel_size(cells)

        def work(progress: Progress) -> CellTable:
            return measure(labels, pixels, pixel_size, progress)

        return self.panel.start(work, lambda table: self.show(cells, table))

    def show(self, cells: Labels, table: CellTable) -> None:
        """Put a table in the view (GUI thread)."""
        self.table, self.measured = table, cells
        proxy = QSortFilterProxyModel(self.view)
        proxy.setSourceModel(_TableModel(table))
        proxy.setSortRole(Qt.UserRole)
        self.view.setModel(proxy)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._row_chosen())
        self.colour_by.reset_choices()
        self.colour_by.value = "area_px"
        for widget in (self.colour_by, self.colour_button, self.export_button):
            widget.enabled = True
        self.panel.status.value = f"measurements: {len(table.rows)} cells"

    def _row_chosen(self) -> None:
        rows = self.view.selectionModel().selectedRows()
        if rows:
            self.select_row(self.view.model().mapToSource(rows[0]).row())

    def select_row(self, row: int) -> None:
        """Select the cell of a table row in its layer and centre the view on it (its slice too, in a stack)."""
        if self.table is None or self.measured is None:
            return
        values = dict(zip(self.table.columns, self.table.values[row], strict=True))
        layer = self.measured
        layer.selected_label = int(values["label"])
        point = (values["centroid_y_px"], values["centroid_x_px"])
        if layer.ndim == 3:
            point = (values["slice"], *point)
        world = layer.data_to_world(point)
        if layer.ndim == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, world[-3])
        self.viewer.scene.camera.center = tuple(world[-2:])

    def colour(self) -> None:
        """Add (or update) an image layer that shows each cell coloured by the chosen column."""
        if self.table is None or self.measured is None:
            return
        column = self.colour_by.value
        data = coloured_by(np.asarray(self.measured.data), self.table, column)
        name = f"{self.measured.name}{COLOURED_SUFFIX}{column}"
        finite = data[np.isfinite(data)]
        limits = (float(finite.min()), float(finite.max())) if finite.size and finite.min() < finite.max() else (0.0, 1.0)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            self.viewer.layers[name].contrast_limits = limits
        else:
            grid = {"scale": self.measured.scale, "translate": self.measured.translate, "units": self.measured.units}
            self.viewer.add_image(data, name=name, colormap="viridis", contrast_limits=limits, opacity=0.7, **grid)

    def export(self) -> Path | None:
        """Write the table to the chosen CSV file; the path, or None when refused with a notification."""
        if self.table is None:
            show_error("emseg measurements: nothing measured yet")
            return None
        path = Path(self.csv_path.value)
        if not str(self.csv_path.value).strip() or path.is_dir():
            show_error("emseg measurements: choose a CSV file to write")
            return None
        try:
            self.table.write_csv(path)
        except OSError as exc:
            show_error(f"emseg measurements: {path}: cannot write ({exc.strerror or exc})")
            return None
        show_info(f"emseg measurements: {len(self.table.rows)} cells -> {path}")
        return path
