"""Which cell step carries over from ISBI 2012 to another lab's stack: settings chosen by cross-validation over both.

The bundled model's predictions (no test-time augmentation) of the ISBI slices it never
trained on (22-24 validated it; 25-29 are the test slices, scored here, never chosen on) and
of the VNC stack's 10 sections (on their own grid and rescaled from 4.6 to the model's
4 nm) are segmented with every setting of a grid (components thresholds; GASP's beta,
fragment threshold and minimum size; the Mutex Watershed's minimum size), each slice scored
by the cell V_rand. Then:

* **ISBI-only** (what the bundled model carries): the setting best on ISBI 22-24;
* **both stacks, cross-validated**: for each VNC fold (a pair of sections held out, a guard
  section beside it left out), the setting best on the mean of ISBI 22-24 and the fold's
  other VNC sections, scored on the held-out pair; and, for the default that ships, the
  setting best on ISBI 22-24 and all 10 VNC sections, scored on ISBI 25-29 (test, report only).

    python benchmarks/cell_transfer.py --json benchmarks/results/cell_transfer.json

A bundled model trained on every ISBI slice (final/dvc.yaml) leaves no ISBI slice it did not
train on; with ``--isbi-cv FOLDS`` (a cross-validation's `cv/folds` of the same recipe) the ISBI
side is each fold's model on its own slices instead: the mean over the folds' validation blocks
is what chooses, beside the VNC sections, and the folds' test blocks (all 30 slices, each by the
fold that held it out) are reported, never chosen on. With it the two stacks weigh the same in
a choice (the mean of their two means), not each slice:

    python benchmarks/cell_transfer.py --isbi-cv cv/folds --json benchmarks/results/cell_transfer_cv.json

Predictions are cached in --cache (a few hundred MB) so that a second run only segments.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from run_all import command_line
from transfer import FOLDS, ISBI_HELD_OUT, SHARED, VNC_NM, _cpu, cell_v_rand, pool, resampled_isbi, vnc

ISBI_CHOOSE = (22, 23, 24)
ISBI_TEST = (25, 26, 27, 28, 29)


def grid() -> list[tuple[str, dict[str, Any]]]:
    """The (method, settings) pairs tried."""
    from emseg.segmentation.methods import METHODS

    out: list[tuple[str, dict[str, Any]]] = [("components", {"threshold": t}) for t in (0.3, 0.4, 0.5, 0.6, 0.7)]
    gasp = METHODS["gasp"].defaults
    for beta, threshold, min_size in itertools.product((0.2, 0.3, 0.4, 0.5), (0.3, 0.5), (25, 100)):
        out.append(("gasp", {**gasp, "beta": beta, "threshold": threshold, "min_size": min_size}))
    out += [("mws", {"stride": 4, "min_size": m}) for m in (25, 100)]
    return out


def predictions(cache: Path) -> dict[str, list[Any]]:
    """The bundled model's predictions of each slice set, cached as npz (membrane, affinities) per slice."""
    from emseg.inference.predictor import Predictor
    from emseg.inference.rescale import plan_rescaling, prediction_to_input_grid, to_model_grid
    from emseg.networks.model_file import load_model
    from emseg.networks.prediction import Prediction
    from emseg.segmentation.measurements import PixelSize
    from emseg.sharing.bundled import BUNDLED_MODEL

    model, config = load_model(BUNDLED_MODEL)
    predictor, digest = Predictor(model, config), _digest(BUNDLED_MODEL)
    plan = plan_rescaling(PixelSize(VNC_NM, "nm"), config.pixel_size_yx())
    vnc_images, _ = vnc()
    isbi_images, _ = resampled_isbi(4.0)
    sets = {"isbi": (isbi_images, None), "vnc": (vnc_images, None), "vnc_rescaled": (vnc_images, plan.factors)}
    out: dict[str, list[Any]] = {}
    cache.mkdir(parents=True, exist_ok=True)
    for name, (images, factors) in sets.items():
        out[name] = []
        for index, image in enumerate(images):
            path = cache / f"{digest}_{name}_{index:02d}.npz"
            if not path.is_file():
                if factors is None:
                    prediction = predictor.predict(image)
                else:
                    prediction = prediction_to_input_grid(predictor.predict(to_model_grid(image, factors)), image.shape, factors)
                np.savez(path, membrane=prediction.membrane, affinities=prediction.affinities, offsets=np.array(prediction.offsets))
                print(f"predicted {name} {index}", flush=True)
            data = np.load(path)
            out[name].append(Prediction(data["membrane"], data["affinities"], tuple(map(tuple, data["offsets"].tolist()))))
    return out


def _digest(model: Path) -> str:
    # a cached prediction is named by the model that made it, so that another model never reads it
    return hashlib.sha256(model.read_bytes()).hexdigest()[:12]


def cv_predictions(folds: Path, cache: Path) -> tuple[dict[str, list[Any]], dict[str, list[np.ndarray]], dict[str, list[int]]]:
    """Each cross-validation fold's model on its own validation and test slices (no TTA), their labels and slice numbers."""
    from emseg.inference.predictor import Predictor
    from emseg.io.atomic import read_json
    from emseg.io.images import read_tiff
    from emseg.networks.model_file import load_model
    from emseg.networks.prediction import Prediction

    images = read_tiff(SHARED / "isbi2012" / "train-volume.tif")
    labels = read_tiff(SHARED / "isbi2012" / "train-labels.tif")
    preds: dict[str, list[Any]] = {"isbi_cv_val": [], "isbi_cv_test": []}
    truth: dict[str, list[np.ndarray]] = {name: [] for name in preds}
    slices: dict[str, list[int]] = {name: [] for name in preds}
    cache.mkdir(parents=True, exist_ok=True)
    for fold in sorted((p for p in folds.iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        model, config = load_model(fold / "model.pt")
        digest = _digest(fold / "model.pt")
        if config.context:
            raise SystemExit(f"{fold / 'model.pt'}: a model with context {config.context}; this study predicts single slices")
        split = read_json(fold / "split.json")
        for kind, name in (("val", "isbi_cv_val"), ("test", "isbi_cv_test")):
            for index in split[kind]:
                path = cache / f"{digest}_cv{fold.name}_{index:02d}.npz"
                if not path.is_file():
                    prediction = Predictor(model, config).predict(images[index])
                    np.savez(path, membrane=prediction.membrane, affinities=prediction.affinities, offsets=np.array(prediction.offsets))
                    print(f"predicted ISBI slice {index} with fold {fold.name}'s model", flush=True)
                data = np.load(path)
                preds[name].append(Prediction(data["membrane"], data["affinities"], tuple(map(tuple, data["offsets"].tolist()))))
                truth[name].append(labels[index])
                slices[name].append(index)
    return preds, truth, slices


def scores(preds: dict[str, list[Any]], extra_labels: dict[str, list[np.ndarray]] | None = None) -> dict[str, list[list[float]]]:
    """Per slice set, per setting of the grid, the cell V_rand of each slice."""
    from emseg.inference.rescale import settings_on_input_grid
    from emseg.segmentation.methods import segment

    _, vnc_labels = vnc()
    labels = {"vnc": vnc_labels, "vnc_rescaled": vnc_labels, **(extra_labels or {})}
    if "isbi" in preds:
        labels["isbi"] = resampled_isbi(4.0)[1]
    table: dict[str, list[list[float]]] = {}
    for name, items in preds.items():
        table[name] = []
        for method, settings in grid():
            used = settings_on_input_grid(settings, (VNC_NM / 4.0, VNC_NM / 4.0)) if name == "vnc_rescaled" else settings
            started = time.perf_counter()
            table[name].append([cell_v_rand(label, segment(method, p, used)) for p, label in zip(items, labels[name])])
            print(f"{name} {method} {settings}: {np.mean(table[name][-1]):.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return table


def choose(table: dict[str, list[list[float]]], vnc_set: str, vnc_sections: list[int]) -> int:
    """The setting with the best mean over ISBI 22-24 and the given VNC sections (each slice weighs the same).

    With the cross-validation's ISBI sets: the best mean of the folds' validation blocks' mean
    and the VNC sections' mean (each stack weighs the same); ISBI alone without VNC sections.
    """
    if "isbi_cv_val" in table:
        isbi = [np.mean(table["isbi_cv_val"][g]) for g in range(len(grid()))]
        if not vnc_sections:
            return int(np.argmax(isbi))
        return int(np.argmax([(isbi[g] + np.mean([table[vnc_set][g][s] for s in vnc_sections])) / 2 for g in range(len(grid()))]))
    isbi_rows = [ISBI_HELD_OUT.index(s) for s in ISBI_CHOOSE]
    means = [np.mean([table["isbi"][g][i] for i in isbi_rows] + [table[vnc_set][g][s] for s in vnc_sections]) for g in range(len(grid()))]
    return int(np.argmax(means))


def _isbi_test(table: dict[str, list[list[float]]], setting: int) -> list[float]:
    # the slices nobody chose on: ISBI 25-29 for a model that did not train on them, else the folds' test blocks
    if "isbi_cv_test" in table:
        return table["isbi_cv_test"][setting]
    return [table["isbi"][setting][ISBI_HELD_OUT.index(s)] for s in ISBI_TEST]


def study(table: dict[str, list[list[float]]]) -> dict[str, Any]:
    """The ISBI-only and the cross-validated both-stacks choices, and what they score where nobody chose."""
    settings = grid()
    result: dict[str, Any] = {"grid": [{"method": m, "settings": s} for m, s in settings], "table": table}
    isbi_only = choose(table, "vnc", [])
    for vnc_set in ("vnc", "vnc_rescaled"):
        per_fold = []
        held_scores: dict[str, dict[int, float]] = {"isbi_only": {}, "both": {}}
        for fold, pair in enumerate(FOLDS):
            best = choose(table, vnc_set, pool(fold))
            per_fold.append({"fold": fold, "chosen": settings[best]})
            for s in pair:
                held_scores["isbi_only"][s] = table[vnc_set][isbi_only][s]
                held_scores["both"][s] = table[vnc_set][best][s]
        final = choose(table, vnc_set, list(range(10)))
        result[vnc_set] = {
            "isbi_only": {"chosen": settings[isbi_only], "vnc_held_out": held_scores["isbi_only"]},
            "both_cv": {"per_fold": per_fold, "vnc_held_out": held_scores["both"]},
            "default": {"chosen": settings[final], "isbi_test": _isbi_test(table, final), "isbi_test_isbi_only": _isbi_test(table, isbi_only)},
        }
    return result


def markdown(result: dict[str, Any]) -> str:
    """The study's table: each setting's mean cell V_rand on the slices it is chosen on and on those it is not."""
    table = result["table"]
    chosen = result["vnc_rescaled"]["default"]["chosen"]
    cv = "isbi_cv_val" in table
    isbi_columns = ("ISBI, the folds' validation blocks", "ISBI, the folds' test blocks (all 30, never chosen on)") if cv else (
        "ISBI 22-24 (validation)", "ISBI 25-29 (test, never chosen on)")
    lines = [f"| cell step | {isbi_columns[0]} | VNC, 4.6 nm/px grid | VNC, rescaled to 4 nm | {isbi_columns[1]} |",
             "| --- | --- | --- | --- | --- |"]
    for index, entry in enumerate(result["grid"]):
        shown = {k: v for k, v in entry["settings"].items() if k in ("threshold", "beta", "min_size")}
        name = f"{entry['method']} " + ", ".join(f"{k} {v:g}" for k, v in shown.items())
        if [entry["method"], entry["settings"]] == list(chosen):
            name = f"**{name}** (chosen)"
        choosing = np.mean(table["isbi_cv_val"][index]) if cv else np.mean(table["isbi"][index][:3])
        lines.append(f"| {name} | {choosing:.4f} | {np.mean(table['vnc'][index]):.4f} | {np.mean(table['vnc_rescaled'][index]):.4f} | "
                     f"{np.mean(_isbi_test(table, index)):.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/emseg-cell-transfer"))
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--isbi-cv", type=Path, metavar="FOLDS", help="the ISBI side from this cross-validation's fold models (cv/folds)")
    parser.add_argument("--table", action="store_true", help="print the markdown table of a finished study's --json, computing nothing")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.json.read_text())))
        return 0
    preds = predictions(args.cache)
    labels: dict[str, list[np.ndarray]] = {}
    if args.isbi_cv:
        del preds["isbi"]  # slices the model trained on
        cv_preds, labels, slices = cv_predictions(args.isbi_cv, args.cache)
        preds.update(cv_preds)
    result = study(scores(preds, labels))
    if args.isbi_cv:
        result["isbi_cv_slices"] = slices
    result.update({"command": command_line("cell_transfer.py", argv), "cpu": _cpu()})
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    for vnc_set in ("vnc", "vnc_rescaled"):
        r = result[vnc_set]
        print(vnc_set, "ISBI-only", r["isbi_only"]["chosen"], np.mean(list(r["isbi_only"]["vnc_held_out"].values())))
        print(vnc_set, "both, CV", np.mean(list(r["both_cv"]["vnc_held_out"].values())), "default", r["default"]["chosen"],
              "ISBI test", np.mean(r["default"]["isbi_test"]), "vs", np.mean(r["default"]["isbi_test_isbi_only"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
