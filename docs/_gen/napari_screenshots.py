"""Regenerate the napari plugin's screenshots in docs/assets/napari/ from a real run, headless.

A shown viewer (under Xvfb: a hidden one renders its canvas black) opens the ISBI 2012
sample slice, and the plugin's widgets run on it as a user would: the segment widget with
the bundled model (segment.png), the measurements table with a row chosen and the cells
coloured by area (measure.png), and a fine-tune of the bundled model on the slice marked as
checked, caught in progress and then cancelled (finetune.png). Full-window screenshots.

    EMSEG_SAMPLE_DATA=../shared/isbi2012 xvfb-run -a -s "-screen 0 1600x1000x24" python docs/_gen/napari_screenshots.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "assets" / "napari"


def wait(app, condition, timeout: float = 1800.0) -> None:
    """Process GUI events until `condition()` holds."""
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the run did not finish in time")
        app.processEvents()
        time.sleep(0.02)


def settle(app, viewer, seconds: float = 1.0) -> None:
    """Let the viewer draw, without the notification toasts over the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        app.processEvents()
        time.sleep(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs (default: %(default)s)")
    parser.add_argument("--finetune-steps", type=int, default=25, help="steps done when the fine-tune screenshot is taken")
    args = parser.parse_args(argv)
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    from emseg.napari_plugin.finetune import FinetuneWidget
    from emseg.napari_plugin.measure import MeasureWidget
    from emseg.napari_plugin.sample_data import isbi_slice
    from emseg.napari_plugin.segment import SegmentWidget

    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="emseg in napari")
    viewer.window.resize(1500, 950)
    app = QApplication.instance()
    data, kwargs, _ = isbi_slice()[0]
    image = viewer.add_image(data, **kwargs)

    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment, name="emseg: Segment", area="right")
    segment.native.setMaximumWidth(560)  # the image, not the panel, should fill the picture
    segment.run(image)
    wait(app, lambda: not segment.panel.running)
    viewer.layers[f"{image.name} membranes"].visible = False
    settle(app, viewer)
    viewer.screenshot(str(args.out / "segment.png"), canvas_only=False)

    measure = MeasureWidget(viewer)
    viewer.window.add_dock_widget(measure, name="emseg: Measurements", area="right", tabify=True)
    measure.native.setMaximumWidth(560)
    measure.cells.value = viewer.layers[f"{image.name} cells"]
    measure.run()
    wait(app, lambda: not measure.panel.running)
    measure.colour_by.value = "area_px"
    measure.colour()
    measure.view.sortByColumn(measure.table.columns.index("area_px"), Qt.DescendingOrder)
    measure.view.selectRow(0)  # the largest cell
    settle(app, viewer)
    viewer.screenshot(str(args.out / "measure.png"), canvas_only=False)
    viewer.layers.remove(f"{image.name} cells by area_px")

    finetune = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(finetune, name="emseg: Correct and fine-tune", area="right", tabify=True)
    finetune.native.setMaximumWidth(560)
    finetune.cells.value = viewer.layers[f"{image.name} cells"]
    finetune.mark_slice_checked()
    finetune.out.value = Path.cwd() / "screenshot-finetune.pt"
    finetune.run()
    wait(app, lambda: finetune.panel.progress is not None and finetune.panel.progress.done >= args.finetune_steps)
    settle(app, viewer, 0.5)
    viewer.screenshot(str(args.out / "finetune.png"), canvas_only=False)
    finetune.panel.cancel()
    wait(app, lambda: not finetune.panel.running)
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('*.png')))} to {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
