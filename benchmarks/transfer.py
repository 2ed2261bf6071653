"""Transfer to another lab's stack and to other pixel sizes: the bundled model as is, rescaled, fine-tuned, or trained anew.

Every score is the cell V_rand (the ISBI scorer on the cells the model's own cell step draws;
no test-time augmentation, as `emseg predict` runs by default) of sections that no choice saw:

* ``no-training``: the bundled model on the VNC stack's 10 sections (4.6 nm/px), predicted on
  their own grid and rescaled to the model's 4 nm; and on the ISBI slices it was not trained on
  (22-29) resampled to 2, 3, 6 and 8 nm/px (and changed in contrast, noise and blur at 4 nm),
  without and with the pixel size given;
* ``train --fold F --kind KIND``: a model made on VNC sections outside fold F's held-out pair
  (and outside a guard section beside it), scored on the pair: ``finetune`` from the bundled
  model on ``--k`` sections, ``scratch`` on the same sections and the same budget (steps),
  ``scratch_full`` on the CPU profile's full schedule, ``all`` fine-tuned on every section of
  the pool, ``sparse`` fine-tuned on ``--k`` sections with a quarter of each labelled;
* ``report``: the table of docs/results/transfer.md, with block-bootstrap intervals (blocks:
  each fold's pair of sections) and paired differences.

    python benchmarks/transfer.py no-training
    python benchmarks/transfer.py train --fold 0 --kind finetune --k 2
    python benchmarks/transfer.py report

Each run writes one JSON into benchmarks/results/transfer/ (with the command and the CPU), or into
``--results DIR``; ``--base MODEL`` starts from and scores another model than the bundled one
(e.g. a previous bundle from the repository's history).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from run_all import command_line

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
SHARED = REPO_ROOT.parent / "shared"
RESULTS = HERE / "results" / "transfer"
VNC_NM = 4.6
#: the VNC stack's folds: each holds out a pair of neighbouring sections
FOLDS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
#: ISBI slices the bundled model never trained on (22-24 validated it, 25-29 are the test slices)
ISBI_HELD_OUT = tuple(range(22, 30))
ISBI_SIZES_NM = (2.0, 3.0, 6.0, 8.0)


def _cpu() -> str:
    from emseg.runtime.machine import machine_info, machine_line

    return machine_line(machine_info())


def cell_v_rand(label: np.ndarray, cells: np.ndarray) -> float:
    """The ISBI V_rand of `cells` against one canonical label slice (unlabelled pixels ignored)."""
    from emseg.config.layout import UNLABELLED_VALUE
    from emseg.evaluation.metrics import score
    from emseg.segmentation.methods import cell_map

    return float(score(label[None], cell_map(cells)[None], [0.5], unlabelled=UNLABELLED_VALUE).v_rand)


def cells_of(model: Any, config: Any, image: np.ndarray, input_nm: float | None, rescale: bool) -> np.ndarray:
    """The model's cells of one slice (its own cell step), predicted at the model's scale when `rescale` and the sizes differ."""
    from emseg.inference.predictor import Predictor
    from emseg.inference.rescale import plan_rescaling, prediction_to_input_grid, settings_on_input_grid, to_model_grid
    from emseg.segmentation.measurements import PixelSize
    from emseg.segmentation.methods import segment

    predictor = Predictor(model, config)
    method, settings = config.cell_step()
    plan = plan_rescaling(None if input_nm is None else PixelSize(input_nm, "nm"), config.pixel_size_yx(), rescale)
    if plan.active:
        prediction = prediction_to_input_grid(predictor.predict(to_model_grid(image, plan.factors)), image.shape, plan.factors)
        settings = settings_on_input_grid(settings, plan.factors)
    else:
        prediction = predictor.predict(image)
    return segment(method, prediction, settings)


def vnc() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The VNC stack's sections and their canonical labels."""
    from emseg.preprocessing.labels import load_labelled

    data = load_labelled(SHARED / "vnc-stack1" / "raw", SHARED / "vnc-stack1" / "membranes")
    return data.images, data.labels


def resampled_isbi(size_nm: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ISBI slices 22-29 as a microscope of `size_nm` nm/px would see them: image anti-aliased, cells resized as instances."""
    from scipy import ndimage
    from skimage.transform import resize

    from emseg.io.images import read_tiff
    from emseg.preprocessing.labels import canonical_labels

    images = read_tiff(SHARED / "isbi2012" / "train-volume.tif")
    labels = read_tiff(SHARED / "isbi2012" / "train-labels.tif")
    zoom = 4.0 / size_nm
    out_images, out_labels = [], []
    for index in ISBI_HELD_OUT:
        image, label = images[index], labels[index]
        shape = (round(image.shape[0] * zoom), round(image.shape[1] * zoom))
        if zoom == 1.0:
            out_images.append(image)
            out_labels.append(label)
            continue
        scaled = resize(image.astype(np.float32), shape, order=1, anti_aliasing=zoom < 1, preserve_range=True)
        out_images.append(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
        instances, _ = ndimage.label(label > 0, structure=ndimage.generate_binary_structure(2, 1))
        resized = resize(instances, shape, order=0, anti_aliasing=False, preserve_range=True).astype(np.int64)
        out_labels.append(canonical_labels(resized[None], f"ISBI slice {index}", "instances")[0])
    return out_images, out_labels


def changed(images: list[np.ndarray], change: str, seed: int = 0) -> list[np.ndarray]:
    """ISBI slices with another contrast (gamma 1.6), noise (std 12 grey levels) or blur (sigma 1.5 px)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        x = image.astype(np.float32)
        if change == "contrast":
            x = 255.0 * (x / 255.0) ** 1.6
        elif change == "noise":
            x = x + rng.normal(0.0, 12.0, x.shape)
        elif change == "blur":
            x = ndimage.gaussian_filter(x, 1.5)
        out.append(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    return out


def no_training(args: argparse.Namespace) -> dict[str, Any]:
    """The bundled model without training: VNC sections and resampled or changed ISBI slices, without and with rescaling."""
    from emseg.networks.model_file import load_model
    model, config = load_model(args.base)
    rows: list[dict[str, Any]] = []

    def run(stack: str, size: float, change: str, images: list, labels: list, ids: list[int]) -> None:
        for rescale in (False, True):
            started = time.perf_counter()
            scores = [cell_v_rand(label, cells_of(model, config, image, size, rescale)) for image, label in zip(images, labels)]
            rows.append({"stack": stack, "pixel_nm": size, "change": change, "rescale": rescale, "sections": ids, "v_rand": scores,
                         "seconds": time.perf_counter() - started})
            print(f"{stack} {size:g} nm {change or ''} rescale={rescale}: {np.mean(scores):.4f}", flush=True)

    images, labels = vnc()
    run("vnc", VNC_NM, "", images, labels, list(range(len(images))))
    for size in (4.0, *ISBI_SIZES_NM):
        images, labels = resampled_isbi(size)
        run("isbi", size, "", images, labels, list(ISBI_HELD_OUT))
        if size == 4.0:
            for change in ("contrast", "noise", "blur"):
                run("isbi", size, change, changed(images, change), labels, list(ISBI_HELD_OUT))
    return {"kind": "no-training", "rows": rows}


def pool(fold: int, n: int = 10) -> list[int]:
    """The sections fold `fold` may train on: all but its held-out pair and the guard section beside the pair."""
    held = FOLDS[fold]
    guard = {held[0] - 1, held[1] + 1}
    return [s for s in range(n) if s not in held and s not in guard]


def train_run(args: argparse.Namespace) -> dict[str, Any]:
    """One model made on VNC sections outside fold `args.fold`'s pair, scored on the pair."""
    from emseg.config.layout import UNLABELLED_VALUE
    from emseg.config.params import parse_params
    from emseg.networks.model_file import load_model
    from emseg.training.fit import fit

    images, labels = vnc()
    sections = pool(args.fold) if args.kind == "all" else pool(args.fold)[: args.k]
    train_labels = [labels[s].copy() for s in sections]
    if args.kind == "sparse":  # a quarter of each section labelled: its top-left quadrant
        for label in train_labels:
            height, width = label.shape
            keep = np.zeros_like(label, bool)
            keep[: height // 2, : width // 2] = True
            label[~keep] = UNLABELLED_VALUE
    params = parse_params({})
    init = None if args.kind.startswith("scratch") else args.base
    if args.kind == "scratch":  # the fine-tuning budget, from random weights
        params = params.model_copy(update={"train": params.train.model_copy(update={"steps": params.train.finetune.steps, "val_every": params.train.finetune.val_every})})
    out = Path(args.models) / f"fold{args.fold}_{args.kind}_k{len(sections)}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = fit([images[s] for s in sections], train_labels, out, params, init, [50.0, VNC_NM, VNC_NM])
    minutes = (time.perf_counter() - started) / 60
    model, config = load_model(out)
    held = list(FOLDS[args.fold])
    scores = [cell_v_rand(labels[s], cells_of(model, config, images[s], VNC_NM, True)) for s in held]
    # the same network with the bundled model's cell step: what the cell step chosen here adds or costs
    config.cells = load_model(args.base)[1].cells
    with_bundled_cells = [cell_v_rand(labels[s], cells_of(model, config, images[s], VNC_NM, True)) for s in held]
    print(f"fold {args.fold} {args.kind} on {sections}: {np.mean(scores):.4f} in {minutes:.1f} min", flush=True)
    return {"kind": args.kind, "fold": args.fold, "train_sections": sections, "sections": held, "v_rand": scores,
            "v_rand_bundled_cells": with_bundled_cells, "minutes": minutes,
            "steps": config.info.get("steps"), "best_step": result.best_step, "cells": result.cells}


KIND_NAMES = {
    "finetune": "fine-tuned from the bundled model",
    "sparse": "fine-tuned from the bundled model, a quarter of each section labelled",
    "all": "fine-tuned from the bundled model on the whole pool",
    "scratch": "from random weights, the fine-tuning budget",
    "scratch_full": "from random weights, the CPU profile's full schedule",
}


def _interval(values: list[float], ids: list[int], block: int) -> str:
    from emseg.evaluation.statistics import mean_interval

    i = mean_interval(values, ids, block=block)
    return f"{i.mean:.4f} [{i.low:.4f}, {i.high:.4f}]" if i.blocks > 1 else f"{i.mean:.4f} (one fold: no interval)"


def _difference(base: dict[int, float], other: dict[int, float], block: int) -> str:
    from emseg.evaluation.statistics import paired_difference

    ids = sorted(set(base) & set(other))
    d = paired_difference([base[i] for i in ids], [other[i] for i in ids], ids, block=block)
    return f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]" if d.blocks > 1 else f"{d.mean:+.4f} (one fold)"


def report(folder: Path) -> str:
    """The markdown tables of the runs in `folder`: VNC held-out sections, then resampled and changed ISBI slices."""
    runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    base = next((r for r in runs if r["kind"] == "no-training"), None)
    lines = []
    if base is not None:
        vnc_rows = [r for r in base["rows"] if r["stack"] == "vnc"]
        rescaled = dict(zip(*(next(r for r in vnc_rows if r["rescale"])[k] for k in ("sections", "v_rand"))))
        lines += ["| model (VNC stack, 4.6 nm/px) | trained on | sections scored | cell V_rand [95% CI] | minus the bundled model rescaled [95% CI] | CPU minutes |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row in vnc_rows:
            name = "bundled, pixel size given (rescaled to 4 nm)" if row["rescale"] else "bundled, predicted on the input's grid"
            scores = dict(zip(row["sections"], row["v_rand"]))
            diff = "" if row["rescale"] else _difference(rescaled, scores, 2)
            lines.append(f"| {name} | - | {len(scores)} | {_interval(list(scores.values()), list(scores), 2)} | {diff} | 0 |")
        for kind, title in KIND_NAMES.items():
            for k in sorted({len(r["train_sections"]) for r in runs if r["kind"] == kind}):
                chosen = [r for r in runs if r["kind"] == kind and len(r["train_sections"]) == k]
                if not chosen:
                    continue
                scores = {s: v for r in chosen for s, v in zip(r["sections"], r["v_rand"])}
                minutes = np.mean([r["minutes"] for r in chosen])
                folds = ", ".join(str(r["fold"]) for r in sorted(chosen, key=lambda r: r["fold"]))
                lines.append(f"| {title} | {k} sections | {len(scores)} (folds {folds}) | {_interval(list(scores.values()), list(scores), 2)} | "
                             f"{_difference(rescaled, scores, 2)} | {minutes:.1f} |")
        lines += ["", "| ISBI slices 22-29 as | without the pixel size | with it (rescaled to 4 nm) | with it, minus native 4 nm [95% CI] |", "| --- | --- | --- | --- |"]
        isbi = [r for r in base["rows"] if r["stack"] == "isbi"]
        native = next(r for r in isbi if r["pixel_nm"] == 4.0 and not r["change"] and r["rescale"])
        native_scores = dict(zip(native["sections"], native["v_rand"]))
        for size in sorted({r["pixel_nm"] for r in isbi}):
            for change in ("", "contrast", "noise", "blur"):
                pair = [r for r in isbi if r["pixel_nm"] == size and r["change"] == change]
                if not pair:
                    continue
                plain, scaled = (next(r for r in pair if r["rescale"] is flag) for flag in (False, True))
                label = f"{size:g} nm/px" + (f", {change} changed" if change else "")
                lines.append(f"| {label} | {_interval(plain['v_rand'], plain['sections'], 3)} | {_interval(scaled['v_rand'], scaled['sections'], 3)} | "
                             f"{_difference(native_scores, dict(zip(scaled['sections'], scaled['v_rand'])), 3)} |")
        lines += ["", f"CPU: {base['cpu']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder of the runs' JSONs (default: %(default)s)")
    parser.add_argument("--base", type=Path, default=None, help="the model to start from and score (default: the bundled model)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("no-training")
    train = sub.add_parser("train")
    train.add_argument("--fold", type=int, required=True, choices=range(len(FOLDS)))
    train.add_argument("--kind", required=True, choices=("finetune", "scratch", "scratch_full", "all", "sparse"))
    train.add_argument("--k", type=int, default=2)
    train.add_argument("--models", default="/tmp/emseg-transfer-models", help="where the trained model files go (not committed)")
    sub.add_parser("report")
    args = parser.parse_args(argv)
    if args.base is None:
        from emseg.sharing.bundled import BUNDLED_MODEL

        args.base = BUNDLED_MODEL
    if args.command == "report":
        print(report(args.results))
        return 0
    result = no_training(args) if args.command == "no-training" else train_run(args)
    result.update({"command": command_line("transfer.py", argv), "cpu": _cpu()})
    args.results.mkdir(parents=True, exist_ok=True)
    name = "no_training" if args.command == "no-training" else f"fold{args.fold}_{args.kind}_k{args.k if args.kind != 'all' else 'all'}"
    (args.results / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
