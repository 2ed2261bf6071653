"""The model in the box: the best profile's recipe trained on every labelled ISBI 2012 slice, shipped as package data.

`emseg predict` without `--model` uses `models/model.pt` when the pipeline has made
one, else this model, and says which ([`default_model`][emseg.sharing.bundled.default_model]);
`emseg models` lists it with its cross-validated scores and the command that made it. It is
final/dvc.yaml's model: no slice was held out of its training, so what it is expected to
score is the cross-validation's figure of its recipe, and its training step, cell step and
threshold were chosen by the folds' validation blocks. The weights are stored in fp16 (half
the size; their predictions are checked against the fp32 weights' when the bundle is made).
Its figures are on the [cross-validation](../../../results/cross-validation.md#best-profile)
results page.

Made with (in a clone whose params.yaml carries `emseg profile best`'s settings, after its
cross-validation):

```bash
dvc repro final/dvc.yaml
python -m emseg.sharing.bundled --final final
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
from emseg.networks.model_file import CELLS_ELSEWHERE_KEY
from emseg.io.atomic import atomic_output, write_json

#: the bundled model's folder inside the package
BUNDLE = Path(__file__).resolve().parents[1] / "data" / "isbi2012"
BUNDLED_MODEL = BUNDLE / "model.pt"
BUNDLED_INFO = BUNDLE / "info.json"
#: unlabelled test-volume slices on which the fp16 weights are checked against the fp32 ones
FP16_CHECK_SLICES = 5
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


def _half(path: Path, info: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if info:
        payload["config"]["info"] = {**payload["config"].get("info", {}), **info}
    payload["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    return payload


def _weights_check(model_path: Path, half_path: Path, png: Path, slices: int = FP16_CHECK_SLICES) -> dict[str, float]:
    """How far the fp16 weights' probability maps are from the fp32 weights' on the first unlabelled test-volume slices.

    A model trained on every labelled slice has no held-out slice left to score, so the check is
    the agreement of the two weights' predictions (8x TTA) on slices without labels: the largest
    difference of a pixel's probability, and the share of pixels that change side at the model's
    validated threshold.
    """
    from emseg.inference.predictor import Predictor
    from emseg.io.dataset import read_unlabelled
    from emseg.networks.model_file import load_model

    (fp32_model, config), (fp16_model, _) = load_model(model_path), load_model(half_path)  # one config: the weights alone differ
    images = read_unlabelled(png, config.context)[:slices]
    fp32, fp16 = (Predictor(model, config, tta=True).cell_stack(images) for model in (fp32_model, fp16_model))
    threshold = config.threshold()[0]
    return {
        "slices": len(fp32),
        "max_abs_difference": float(np.abs(fp32 - fp16).max()),
        "pixels_changing_side": float(np.mean((fp32 >= threshold) != (fp16 >= threshold))),
        "threshold": float(threshold),
    }


def cells_for_other_stacks(study_path: Path) -> dict[str, Any]:
    """The cell step a cell-transfer study chose over two labs' stacks with the cross-validation's ISBI side (`--isbi-cv`).

    Raises:
        EmsegError: The file is missing, or is not such a study (one line naming it).
    """
    from emseg.io.atomic import read_json

    study = read_json(study_path)
    if not isinstance(study, dict) or "isbi_cv_val" not in study.get("table", {}) or "vnc_rescaled" not in study:
        raise EmsegError(f"{study_path}: not a cell-transfer study over the cross-validation's folds (benchmarks/cell_transfer.py --isbi-cv)")
    method, settings = study["vnc_rescaled"]["default"]["chosen"]
    return {
        "method": method,
        "settings": settings,
        "chosen_on": "the cross-validation folds' validation blocks and the VNC stack's 10 sections (rescaled to the model's "
        f"pixel size), the two stacks weighing the same ({study_path.name})",
    }


def make_bundle(final: Path, png: Path, out: Path = BUNDLE, transfer_study: Path | None = None) -> dict[str, Any]:
    """Write the fp16 bundle of the final model (final/dvc.yaml) into `out` with its info, checked against the fp32 weights.

    Args:
        final: The final model's folder: its `model.pt` (trained on every labelled slice, with the
            step, cell step and threshold the cross-validation chose) and `metrics.json` (those
            choices and the cross-validated figures).
        png: The converted data set's folder, for the unlabelled slices of the weights check.
        out: The bundle's folder inside the package.
        transfer_study: A cell-transfer study of this model (`benchmarks/cell_transfer.py --isbi-cv`):
            its choice over two labs' stacks goes into the model file as the step for other stacks
            (`CELLS_ELSEWHERE_KEY`, what `emseg models` advises for another lab's stack); None: none.

    Returns:
        The info written beside the model (`info.json`).

    Raises:
        EmsegError: The final model or its metrics are missing or lack the cross-validated figures, or
            the study is not one.
    """
    from emseg.io.atomic import read_json
    from emseg.networks.architectures import count_parameters
    from emseg.networks.model_file import load_model
    from emseg.runtime.machine import cpu_description

    model_path, metrics_path = final / "model.pt", final / "metrics.json"
    metrics = read_json(metrics_path)
    if not isinstance(metrics, dict) or "cross_validated" not in metrics or "step" not in metrics:
        raise EmsegError(f"{metrics_path}: no cross-validated figures or chosen step (the final/dvc.yaml model stage writes them)")
    network, config = load_model(model_path)
    trained_on = len(read_json(final / "split.json")["train"])
    elsewhere = cells_for_other_stacks(transfer_study) if transfer_study is not None else None
    with atomic_output(out / "model.pt") as tmp:  # the bundle changes only once its check has run
        torch.save(_half(model_path, {CELLS_ELSEWHERE_KEY: elsewhere} if elsewhere else {}), tmp)
        check = _weights_check(model_path, tmp, png)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    info = {
        "name": f"ISBI 2012 best profile ({config.arch}{' with auto-context' if config.auto_context else ''}, "
        f"{count_parameters(network) / 1e6:.1f} M parameters)",
        "made_by": "dvc repro final/dvc.yaml (params.yaml with emseg profile best's settings), then python -m emseg.sharing.bundled --final final"
        + (f" --cells-for-other-stacks {transfer_study.name} (benchmarks/cell_transfer.py --isbi-cv cv/folds)" if transfer_study else ""),
        "commit": commit,
        "cpu": cpu_description(),
        "trained_on": f"all {trained_on} ISBI 2012 training slices, {config.info['step']} of {config.info['steps']} steps",
        "chosen": {"step": metrics["step"], "cell_step": metrics["cell_step"], "val_threshold": metrics["val_threshold"]},
        "cross_validated": metrics["cross_validated"],
        "cells_for_other_stacks": elsewhere,
        "fp16_check": check,
    }
    write_json(out / "info.json", info)
    return info


def main(argv: list[str] | None = None) -> int:
    """`python -m emseg.sharing.bundled`: make the bundle from the pipeline's outputs; the exit status."""
    parser = argparse.ArgumentParser(prog="python -m emseg.sharing.bundled", description=__doc__.splitlines()[0])
    parser.add_argument("--final", type=Path, default=Path("final"), help="the final model's folder (final/dvc.yaml; default: %(default)s)")
    parser.add_argument("--png", type=Path, default=Path("data") / "png", help="the converted data set (default: %(default)s)")
    parser.add_argument("--cells-for-other-stacks", type=Path, metavar="STUDY",
                        help="a cell-transfer study of this model (benchmarks/cell_transfer.py --isbi-cv): its step for other stacks")
    args = parser.parse_args(argv)

    def run() -> int:
        info = make_bundle(args.final, args.png, transfer_study=args.cells_for_other_stacks)
        check, cells = info["fp16_check"], info["cross_validated"]["cells"]["v_rand"]
        print(f"bundled {args.final / 'model.pt'} -> {BUNDLE}: cross-validated cells V_rand {cells['mean']:.4f}; fp16 against fp32 weights on "
              f"{check['slices']} unlabelled slices: largest difference {check['max_abs_difference']:.2g}, "
              f"{check['pixels_changing_side']:.2e} of the pixels change side")
        return 0

    return run_with_clean_errors(run, debug=False, prog="python -m emseg.sharing.bundled")


if __name__ == "__main__":
    sys.exit(main())
