"""The model in the box: a CPU-profile model trained by this pipeline, shipped as package data.

`emseg predict` without `--model` uses `models/model.pt` when the pipeline has made
one, else this model, and says which ([`default_model`][emseg.sharing.bundled.default_model]);
`emseg models` lists it with its held-out scores and the command that made it. The weights
are stored in fp16 (half the size; the scores they give are checked against the fp32
weights when the bundle is made). Its scores are on the [CPU profile](../../../results/profile.md)
results page.

Made with (after `dvc repro` of the CPU profile):

```bash
python -m emseg.sharing.bundled --model models/model.pt --metrics metrics/evaluate.json
```
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emseg.errors import EmsegError, run_with_clean_errors
from emseg.io.atomic import atomic_output, write_json

#: the bundled model's folder inside the package
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "isbi2012"
BUNDLED_MODEL = BUNDLE / "model.pt"
BUNDLED_INFO = BUNDLE / "info.json"
#: where the pipeline writes its model, relative to the folder emseg predict runs in
PIPELINE_MODEL = Path("models") / "model.pt"


def default_model(given: Path | None) -> tuple[Path, str]:
    """The model `emseg predict` uses, and how it was picked.

    `given` when given; else the pipeline's `models/model.pt` in the current folder; else the
    bundled model.

    Raises:
        EmsegError: None given, none made by the pipeline and none bundled.
    """
    if given is not None:
        return given, "given"
    if PIPELINE_MODEL.is_file():
        return PIPELINE_MODEL, "the pipeline's"
    if BUNDLED_MODEL.is_file():
        return BUNDLED_MODEL, "the bundled ISBI 2012 model (emseg models)"
    raise EmsegError(f"{PIPELINE_MODEL}: model file not found, and this installation has no bundled model; give --model")


def init_model(init_from: str) -> Path | None:
    """The model file `train.init_from` names: None for `none`, the bundled model for `bundled`, else the path given.

    Raises:
        EmsegError: `bundled` in an installation without one, or a path with no file
            (one line naming the key).
    """
    if init_from == "none":
        return None
    path = BUNDLED_MODEL if init_from == "bundled" else Path(init_from)
    if not path.is_file():
        raise EmsegError(f"train.init_from: {path}: model file not found")
    return path


def bundled_info() -> dict[str, Any] | None:
    """What the bundled model is (its scores, the command and commit that made it, the machine), or None without one."""
    return json.loads(BUNDLED_INFO.read_text()) if BUNDLED_INFO.is_file() else None


def _half(path: Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    return payload


def _test_scores(model_path: Path, png: Path, split: Path) -> dict[str, float]:
    """The challenge's and the validated-threshold V_rand of a model on the split's test slices (8x TTA)."""
    from emseg.evaluation.metrics import score
    from emseg.inference.predictor import Predictor
    from emseg.io.dataset import read_labelled
    from emseg.networks.model_file import load_model
    from emseg.preprocessing.split import read_split

    model, config = load_model(model_path)
    images, labels = read_labelled(png, read_split(str(split))["test"], config.context)
    cell = Predictor(model, config, tta=True).cell_stack(images)
    return {"v_rand": score(np.stack(labels), cell).v_rand, "v_rand_at_val_threshold": score(np.stack(labels), cell, [config.threshold()[0]]).v_rand}


def make_bundle(model: Path, metrics: Path, png: Path, split: Path, out: Path = BUNDLE) -> dict[str, Any]:
    """Write the fp16 bundle of `model` into `out` with its info, checking its scores against the fp32 weights.

    Args:
        model: The pipeline's model file (the evaluate stage's: it carries its pixel size and cell step).
        metrics: The evaluate stage's metrics of that model.
        png: The converted data set's folder, for the test slices.
        split: The split file naming the test slices.
        out: The bundle's folder inside the package.

    Returns:
        The info written beside the model (`info.json`).
    """
    out.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "model.pt") as tmp:
        torch.save(_half(model), tmp)
    fp32, fp16 = _test_scores(model, png, split), _test_scores(out / "model.pt", png, split)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    from emseg.runtime.machine import cpu_description

    info = {
        "name": "ISBI 2012 CPU profile (unet, 1.6 M parameters)",
        "made_by": "dvc repro (params.yaml as committed), then python -m emseg.sharing.bundled --model models/model.pt --metrics metrics/evaluate.json",
        "commit": commit,
        "cpu": cpu_description(),
        "trained_on": "ISBI 2012 training slices 0-21 (validation 22-24); test slices 25-29 held out",
        "test_scores": json.loads(metrics.read_text()),
        "fp16_check": {"fp32_weights": fp32, "fp16_weights": fp16},
    }
    write_json(out / "info.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    """`python -m emseg.sharing.bundled`: make the bundle from the pipeline's outputs; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m emseg.sharing.bundled", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=PIPELINE_MODEL)
    parser.add_argument("--metrics", type=Path, default=Path("metrics") / "evaluate.json")
    parser.add_argument("--png", type=Path, default=Path("data") / "png")
    parser.add_argument("--split", type=Path, default=Path("data") / "split.json")
    args = parser.parse_args(argv)

    def run() -> int:
        info = make_bundle(args.model, args.metrics, args.png, args.split)
        check = info["fp16_check"]
        print(f"bundled {args.model} -> {BUNDLE}: test V_rand fp32 {check['fp32_weights']['v_rand']:.6f}, fp16 {check['fp16_weights']['v_rand']:.6f}")
        return 0

    return run_with_clean_errors(run, debug=False, prog="python -m emseg.sharing.bundled")


if __name__ == "__main__":
    sys.exit(main())
