"""The napari plugin on a big slice: does the viewer stay responsive, and is the peak memory the command line's?

A 4096^2 slice (the ISBI 2012 slice 0 tiled 8 x 8 where ../shared/isbi2012 is present, else a
synthetic EM-like slice) is segmented with the bundled model twice, each in a fresh process:

- ``cli``: `emseg predict`'s own path ([`predict_files`][emseg.inference.in_memory.predict_files]
  writing every output) in-process;
- ``gui``: a shown napari viewer (under Xvfb) whose segment widget runs the slice on its worker
  thread, while a 20 ms timer on the GUI thread records when it fires.

Each reports its resident memory after the imports and the model load, its peak
(``ru_maxrss``), the seconds, and (gui) the longest the GUI thread went without an event,
while the slice is segmented and while napari makes the three layers (on the GUI thread, one
per turn of its event loop).
The figure compared is the peak above the process's resident memory just before the run:
the viewer itself (Qt, OpenGL, napari) costs memory the command line never loads.

    xvfb-run -a python benchmarks/bench_napari.py --json benchmarks/results/napari_4096.json
    xvfb-run -a python benchmarks/bench_napari.py --size 1024      # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_all import command_line, rss_mib, write_result

ISBI = Path(__file__).resolve().parents[1].parent / "shared" / "isbi2012" / "train-volume.tif"


def big_slice(size: int):
    """A `size`^2 uint8 EM slice: ISBI slice 0 tiled, else synthetic; and where it came from."""
    import numpy as np
    import tifffile

    if ISBI.is_file():
        tile = tifffile.imread(ISBI)[0]
        reps = -(-size // tile.shape[0])
        return np.tile(tile, (reps, reps))[:size, :size].copy(), f"ISBI 2012 train slice 0 tiled to {size}^2"
    from emseg.io.synthetic import synthetic_slice

    return synthetic_slice(size, size, seed=0, cells=size * size // 4000)[0], f"synthetic EM-like {size}^2"


def run_cli(size: int) -> dict:
    """`emseg predict`'s path in this process: the peak above the resident memory before the run."""
    import torch

    from emseg.inference.cell_step import cell_method
    from emseg.inference.in_memory import PredictOptions, predict_files
    from emseg.inference.inputs import inspect_inputs
    from emseg.io.images import write_tiff
    from emseg.networks.model_file import load_model
    from emseg.sharing.bundled import BUNDLED_MODEL

    image, source = big_slice(size)
    with tempfile.TemporaryDirectory() as tmp:
        write_tiff(Path(tmp) / "slice.tif", image)
        del image
        model, config = load_model(BUNDLED_MODEL)
        method, settings, _ = cell_method(BUNDLED_MODEL, None, config)
        options = PredictOptions(threshold=config.threshold()[0], cells=method, cell_settings=settings, device=torch.device("cpu"))
        items = inspect_inputs([Path(tmp) / "slice.tif"])
        before = rss_mib()
        start = time.perf_counter()
        predict_files(model, config, items, Path(tmp) / "out", options)
        seconds = time.perf_counter() - start
    return {"source": source, "rss_before_mib": before, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds}


def run_gui(size: int) -> dict:
    """The segment widget in a shown viewer: the peak above the resident memory before pressing Segment, and the GUI's longest stall."""
    import napari
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from emseg.napari_plugin.segment import SegmentWidget

    image, source = big_slice(size)
    viewer = napari.Viewer(show=True)
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    layer = viewer.add_image(image, name="slice")
    del image
    widget.models.load(widget_model(widget))  # loaded before the baseline, as the command line's (the widget loads it on its worker)
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    before = rss_mib()
    timer.start(20)
    start = time.perf_counter()
    widget.run(layer)
    returned: list[float] = []  # when the worker's result reached the GUI thread: the layers are put in the viewer after
    widget.panel.worker.returned.connect(lambda _: returned.append(time.perf_counter()))
    while widget.panel.running:
        app.processEvents()
        time.sleep(0.005)
    seconds = time.perf_counter() - start
    end = time.perf_counter() + 0.5  # and the ticks after: putting the layers in the viewer runs on the GUI thread
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.005)
    timer.stop()
    times = np.array([start, *ticks])
    gaps, ends = np.diff(times), times[1:]
    during = gaps[ends <= returned[0]]
    return {"source": source, "rss_before_mib": before, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": seconds,
            "gui_longest_stall_s": float(gaps.max()), "gui_longest_stall_while_running_s": float(during.max()),
            "gui_longest_stall_adding_layers_s": float(gaps[ends > returned[0]].max()), "gui_ticks": len(ticks), "cells_layer": "slice cells" in viewer.layers}


def widget_model(widget) -> Path:
    from emseg.napari_plugin.segment import resolve_model

    return resolve_model(widget.model.value, widget.model_file.value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--mode", choices=("cli", "gui"), help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(run_cli(args.size) if args.mode == "cli" else run_gui(args.size)))
        return 0
    from emseg.runtime.machine import machine_info, machine_line

    results = {}
    for mode in ("cli", "gui"):
        done = subprocess.run([sys.executable, __file__, "--size", str(args.size), "--mode", mode], capture_output=True, text=True, check=True)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        result = results[mode]
        print(f"{mode}: {result['seconds']:.1f} s, peak {result['peak_mib']:.0f} MiB, {result['peak_mib'] - result['rss_before_mib']:.0f} MiB above "
              f"the {result['rss_before_mib']:.0f} MiB before the run" + (
                  f"; GUI thread's longest stall {result['gui_longest_stall_while_running_s']:.2f} s while segmenting, "
                  f"{result['gui_longest_stall_adding_layers_s']:.2f} s while napari makes the layers" if mode == "gui" else ""))
    info = machine_info()
    print(machine_line(info))
    if args.json:
        write_result(args.json, {"command": command_line("bench_napari.py", argv), "machine": info, "size": args.size, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
