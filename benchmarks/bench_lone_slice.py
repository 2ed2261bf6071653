"""What a model that reads neighbouring sections scores on a lone 2-D image: each test slice with its sections, and alone.

For each fold of ``cv/`` that has its ``model.pt`` (of ``model.context`` > 0), predict the fold's
test slices as the evaluate stage does (8x TTA) twice: with their sections from the labelled
stack (what the cross-validation scores), and each slice alone, given as its own neighbours
(what ``emseg predict`` does with a single image). The cells are the fold's own cell step
(``segment.json``, chosen on its validation slices). Prints the cells' V_rand of both over
every test slice and the paired difference (alone - with sections) with a 95% block-bootstrap
interval (``emseg.evaluation.statistics``).

    python benchmarks/bench_lone_slice.py --cv cv --png data/png [--folds 0,1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from emseg.config.params import EvaluateParams
from emseg.evaluation.metrics import score
from emseg.evaluation.statistics import paired_difference, verdict
from emseg.inference.predictor import Predictor
from emseg.io.dataset import read_labelled
from emseg.networks.model_file import load_model
from emseg.runtime.machine import machine_info, machine_line
from emseg.segmentation.methods import cell_map, segment


def fold_scores(cv: Path, png: Path, fold: int) -> tuple[list[int], list[float], list[float]]:
    """One fold's test slices and their cells' V_rand with their sections and alone."""
    folder = cv / "folds" / str(fold)
    model, config = load_model(folder / "model.pt", torch.device("cpu"))
    if not config.context:
        raise SystemExit(f"{folder / 'model.pt'}: a model of context 0 reads no sections: nothing to compare")
    split = json.loads((folder / "split.json").read_text())
    step = json.loads((folder / "segment.json").read_text())
    predictor = Predictor.from_params(model, config, EvaluateParams(), torch.device("cpu"))
    stacks, labels = read_labelled(png, split["test"], config.context)
    scores: dict[str, list[float]] = {"sections": [], "alone": []}
    for stack, label in zip(stacks, labels, strict=True):
        alone = np.stack([stack[config.context]] * len(stack))  # the slice as its own neighbours, as emseg predict gives a lone image
        for name, inputs in (("sections", stack), ("alone", alone)):
            cells = segment(step["method"], predictor.predict(inputs), step.get("settings", {}))
            scores[name].append(float(score(label[None], cell_map(cells)[None], [0.5], workers=1).v_rand))
    return list(split["test"]), scores["sections"], scores["alone"]


def main(argv: list[str] | None = None) -> int:
    """The comparison over the folds that have a model; printed, and written as JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cv", type=Path, default=Path("cv"))
    parser.add_argument("--png", type=Path, default=Path("data/png"))
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    ids, sections, alone = [], [], []
    for fold in [int(f) for f in args.folds.split(",")]:
        if not (args.cv / "folds" / str(fold) / "model.pt").is_file():
            print(f"fold {fold}: no model.pt, skipped")
            continue
        fold_ids, with_sections, by_itself = fold_scores(args.cv, args.png, fold)
        ids += fold_ids
        sections += with_sections
        alone += by_itself
        print(f"fold {fold}: with sections {np.mean(with_sections):.4f}, alone {np.mean(by_itself):.4f}", flush=True)
    if not ids:
        print("no fold has a model: nothing to compare")
        return 1
    difference = paired_difference(sections, alone, ids)
    report = {
        "command": "python benchmarks/bench_lone_slice.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_line(machine_info()), "slices": len(ids),
        "v_rand_with_sections": float(np.mean(sections)), "v_rand_alone": float(np.mean(alone)),
        "difference": difference.mean, "low": difference.low, "high": difference.high, "verdict": verdict("v_rand", difference),
        "per_slice": {"ids": ids, "with_sections": sections, "alone": alone},
    }
    print(f"cells V_rand over {len(ids)} slices: with sections {report['v_rand_with_sections']:.4f}, alone {report['v_rand_alone']:.4f}, "
          f"alone - with {difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}] ({report['verdict']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
