"""How to draw cells for an input of another pixel size than the model's: measured on ISBI validation slices.

Each validation slice (22-24 of the ISBI 2012 training volume, 4 nm/px; never the test
slices 25-29) and its label are resampled to simulate a microscope at 3, 6 and 8 nm/px
(``--sizes``): the raw slice with cubic interpolation and a Gaussian anti-aliasing filter
where it shrinks, the label as 4-connected GT cells resampled by nearest neighbour with a
one-pixel border redrawn where two cells touch. Each simulated slice is then segmented
with the bundled model and its chosen cells (GASP, the model file's ``cells``) in
four ways, scored by V_rand against the resampled label as the evaluate stage scores cells
(``score(label, cell_map(cells), [0.5])``):

* without rescaling: the model applied to the slice's own grid (what ``--no-rescale`` does);
* (a): resampled to the model's 4 nm grid, predicted and segmented there, the cells
  resized back by nearest neighbour (``emseg.inference.rescale.labels_to_input_grid``);
* (b): resampled to the model's grid and predicted there, the membrane map and affinities
  interpolated back to the slice's grid (affinity offsets scaled with it) and segmented
  there, the method's pixel-unit settings (``sigma_seeds``, ``min_size``) converted to the
  slice's pixels; (b, model settings) keeps them as they are;
* native: the original 4 nm slice, for reference.

    python benchmarks/rescale_choice.py --json benchmarks/results/rescale_choice.json
    python benchmarks/rescale_choice.py --quick      # one slice, 6 nm only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from run_all import command_line, write_result

from emseg.evaluation.metrics import score
from emseg.inference.predictor import Predictor
from emseg.inference.rescale import labels_to_input_grid, prediction_to_input_grid, settings_on_input_grid, to_model_grid
from emseg.io.atomic import read_json
from emseg.io.images import read_tiff
from emseg.networks.model_file import load_model
from emseg.runtime.machine import machine_info, machine_line
from emseg.segmentation.methods import cell_map, segment

REPO_ROOT = Path(__file__).resolve().parents[1]
ISBI = REPO_ROOT.parent / "shared" / "isbi2012"
MODEL = REPO_ROOT / "emseg" / "data" / "isbi2012" / "model.pt"
#: the ISBI 2012 training volume's in-plane pixel size, nm (the bundled model's file predates recording it)
ISBI_NM = 4.0
#: validation slices of the bundled model's split; 25-29 are its test slices and are never used here
VALIDATION = (22, 23, 24)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi", type=Path, default=ISBI, help="folder of train-volume.tif and train-labels.tif")
    parser.add_argument("--sizes", default="3,6,8", help="simulated pixel sizes, nm, comma-separated (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="one slice, 6 nm only")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


def simulate(raw: np.ndarray, label: np.ndarray, size_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """A 4 nm/px slice and its label as a microscope at `size_nm` would see them."""
    from skimage.measure import label as components
    from skimage.transform import resize

    zoom = ISBI_NM / size_nm
    shape = (round(raw.shape[0] * zoom), round(raw.shape[1] * zoom))
    image = resize(raw.astype(np.float32), shape, order=3, mode="edge", anti_aliasing=zoom < 1, preserve_range=True)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    cells = labels_to_input_grid(components(label > 0, connectivity=1), shape)
    return image, (cell_map(cells) > 0).astype(np.uint8) * np.uint8(255)


def v_rand(label: np.ndarray, cells: np.ndarray) -> float:
    """V_rand of cells against a label, as the evaluate stage scores cells."""
    return float(score(label, cell_map(cells), [0.5], workers=1).v_rand)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def measure(predictor: Predictor, method: str, settings: dict, raw: np.ndarray, label: np.ndarray, size_nm: float) -> dict:
    """One slice at one simulated pixel size: the V_rand and seconds of each way."""
    image, truth = simulate(raw, label, size_nm)
    zoom = size_nm / ISBI_NM  # how much the input is enlarged to the model's grid
    shape = image.shape
    row: dict = {"shape": list(shape)}
    plain, seconds = timed(predictor.predict, image)
    cells, cell_s = timed(segment, method, plain, settings)
    row["without"] = {"v_rand": v_rand(truth, cells), "predict_s": seconds, "cells_s": cell_s}
    model_image, resample_s = timed(to_model_grid, image, (zoom, zoom))
    model_pred, seconds = timed(predictor.predict, model_image)
    seconds += resample_s
    cells_a, cell_s = timed(lambda: labels_to_input_grid(segment(method, model_pred, settings), shape))
    row["a"] = {"v_rand": v_rand(truth, cells_a), "predict_s": seconds, "cells_s": cell_s}
    back, back_s = timed(prediction_to_input_grid, model_pred, shape, (zoom, zoom))
    cells_b, cell_s = timed(segment, method, back, settings_on_input_grid(settings, (zoom, zoom)))
    row["b"] = {"v_rand": v_rand(truth, cells_b), "predict_s": seconds + back_s, "cells_s": cell_s}
    cells_b0, cell_s = timed(segment, method, back, settings)
    row["b_model_settings"] = {"v_rand": v_rand(truth, cells_b0), "predict_s": seconds + back_s, "cells_s": cell_s}
    return row


def main(argv: list[str] | None = None) -> int:
    """Measure every way at every size on every validation slice; printed, and written as JSON with ``--json``."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    slices = VALIDATION[:1] if args.quick else VALIDATION
    sizes = [6.0] if args.quick else [float(s) for s in args.sizes.split(",")]
    raw_stack = read_tiff(args.isbi / "train-volume.tif")
    label_stack = read_tiff(args.isbi / "train-labels.tif")
    model, config = load_model(MODEL)
    step = config.cell_step()
    if step is None:  # a model file of format 1-2: the evaluate stage's choice beside it
        chosen = read_json(MODEL.with_name("segment.json"))
        step = chosen["method"], chosen["settings"]
    method, settings = step
    if config.pixel_size_yx() not in (None, (ISBI_NM, ISBI_NM)):
        raise SystemExit(f"{MODEL}: trained at {config.pixel_size_yx()} nm, this benchmark simulates from {ISBI_NM} nm")
    predictor = Predictor(model, config)
    info = machine_info()
    print(f"rescaling choice: ISBI validation slices {', '.join(map(str, slices))} at {', '.join(f'{s:g}' for s in sizes)} nm/px; "
          f"{method} {settings}")
    print(f"machine: {machine_line(info)}")
    native = []
    for index in slices:
        prediction, seconds = timed(predictor.predict, raw_stack[index])
        cells, cell_s = timed(segment, method, prediction, settings)
        native.append({"slice": index, "v_rand": v_rand(label_stack[index], cells), "predict_s": seconds, "cells_s": cell_s})
    results: dict = {"native": {"per_slice": native, "v_rand": statistics.mean(r["v_rand"] for r in native)}}
    print(f"  native 4 nm: V_rand {results['native']['v_rand']:.4f}")
    ways = ("without", "a", "b", "b_model_settings")
    for size in sizes:
        rows = [{"slice": index, **measure(predictor, method, settings, raw_stack[index], label_stack[index], size)} for index in slices]
        summary = {way: {key: statistics.mean(r[way][key] for r in rows) for key in ("v_rand", "predict_s", "cells_s")} for way in ways}
        results[f"{size:g}"] = {"per_slice": rows, "mean": summary}
        print(f"  {size:g} nm: " + "; ".join(f"{way} {summary[way]['v_rand']:.4f}" for way in ways))
    if args.json:
        write_result(args.json, {
            "benchmark": "rescale_choice",
            "command": command_line("rescale_choice.py", argv),
            "machine": info,
            "config": {"slices": list(slices), "sizes_nm": sizes, "model": str(MODEL.relative_to(REPO_ROOT)), "model_nm": ISBI_NM,
                       "method": method, "settings": settings, "tta": False},
            "results": results,
            "figures": {f"rescale {size:g} nm: {way}": {"value": results[f"{size:g}"]["mean"][way]["v_rand"], "unit": "V_rand"}
                        for size in sizes for way in ways},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
