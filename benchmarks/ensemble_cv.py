"""What an ensemble of independently trained models buys, under cross-validation, without training anything.

Two (or more) cross-validation runs of the same folds (e.g. one recipe at two seeds) leave a
model per fold each. Each fold's models are averaged (the mean of their probabilities, after
TTA as evaluate runs them), the cell step is chosen again on the fold's validation slices
and the test slices scored, exactly as the evaluate stage does for one model
(`emseg.evaluation.evaluate.evaluate`); the scores "at the validated threshold" use the first
run's model's threshold (an ensemble has none of its own), so compare the cells. The folds' outputs land in the layout of a
cross-validation (`OUT/folds/<k>/`), so `emseg compare` pairs the ensemble with either run:

    python benchmarks/ensemble_cv.py --runs /work/cv-relu /work/cv-relu43 --out benchmarks/results/levers/ensemble_relu2
    emseg compare benchmarks/results/levers/relu/folds benchmarks/results/levers/ensemble_relu2/folds

Each run is a cross-validation clone: `RUN/cv/folds/<k>/model.pt` and `split.json`, the
slices in `RUN/data/png`, the evaluate and segment params of `RUN/params.yaml` (the
first run's; every run must hold the same splits). An ensemble costs its models' training
and inference FLOPs together: a cost the docs' lever table states beside its figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

import torch
from run_all import command_line, write_result
from torch import nn

from emseg.config.params import Params, load_params
from emseg.errors import EmsegError, run_with_clean_errors
from emseg.evaluation.evaluate import SegmentJob, evaluate
from emseg.inference.predictor import Predictor
from emseg.io.atomic import read_json
from emseg.io.dataset import read_labelled
from emseg.networks.model_file import ModelConfig, load_model
from emseg.runtime.machine import machine_info
from emseg.segmentation.methods import check_segment_params

#: probabilities are clamped this far from 0 and 1 before their mean goes back to a logit (the predictor applies the sigmoid)
EPS = 1e-6


class ProbabilityMean(nn.Module):
    """Networks of the same outputs, their sigmoid probabilities averaged, returned as the logit of the mean."""

    def __init__(self, networks: list[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logit of the networks' mean probability."""
        mean = torch.stack([torch.sigmoid(net(x).float()) for net in self.networks]).mean(0)
        return torch.logit(mean.clamp(EPS, 1 - EPS))


def fold_ensemble(runs: list[Path], fold: int) -> tuple[nn.Module, ModelConfig]:
    """The fold's models of every run, averaged, with the first one's config (the runs must hold the same split)."""
    splits = [read_json(run / "cv" / "folds" / str(fold) / "split.json") for run in runs]
    if any(split != splits[0] for split in splits):
        raise EmsegError(f"fold {fold}: the runs' splits differ ({', '.join(str(r) for r in runs)})")
    loaded = [load_model(run / "cv" / "folds" / str(fold) / "model.pt") for run in runs]
    configs = [config for _, config in loaded]
    if any((c.target, c.offsets, c.context, c.normalization) != (configs[0].target, configs[0].offsets, configs[0].context, configs[0].normalization)
           for c in configs):
        raise EmsegError(f"fold {fold}: the runs' models predict different outputs or read different inputs")
    return ProbabilityMean([net for net, _ in loaded]).eval(), configs[0]


def run_fold(runs: list[Path], fold: int, out: Path) -> dict:
    """Evaluate fold `fold`'s ensemble into `out/folds/<fold>/`; its metrics."""
    params = load_params(runs[0] / "params.yaml", (check_segment_params,))
    network, config = fold_ensemble(runs, fold)
    return evaluate_fold(network, config, params, runs[0], fold, out)


def evaluate_fold(
    network: nn.Module, config: ModelConfig, params: Params, run: Path, fold: int, out: Path, tile: int | None = None,
) -> dict:
    """Evaluate `network` on fold `fold` of the cross-validation clone `run` as its evaluate stage does, into `out/folds/<fold>/`.

    The fold's test slices are predicted (with `params.evaluate`'s TTA; windows of `tile` px, None:
    the training patch) and scored, the cell step of `params.segment` chosen on its validation
    slices; returns the metrics (`evaluate.json`).
    """
    png = run / "data" / "png"
    split = read_json(run / "cv" / "folds" / str(fold) / "split.json")
    folder = out / "folds" / str(fold)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "cv" / "folds" / str(fold) / "split.json", folder / "split.json")
    images, labels = read_labelled(png, split["test"], config.context)
    predictor = dataclasses.replace(Predictor.from_params(network, config, params.evaluate, torch.device("cpu")), tile=tile)
    job = SegmentJob(params.segment, *read_labelled(png, split["val"], config.context), folder / "segment.json")
    started = time.perf_counter()
    metrics = evaluate(predictor, images, labels, split["test"], None, folder / "evaluate.json", folder / "plots", folder / "eval",
                       params.evaluate, job)
    shutil.rmtree(folder / "eval", ignore_errors=True)  # the probability maps: large, and not what is compared
    print(f"fold {fold}: cells V_rand {metrics['segment_v_rand']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Evaluate every fold's ensemble; write OUT/ensemble.json with the command, the runs and the machine."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True, help="cross-validation clones whose fold models are averaged")
    parser.add_argument("--out", type=Path, required=True, help="where the folds' results go (OUT/folds/<k>/)")
    parser.add_argument("--folds", default="0,1,2,3,4", help="the folds (default: %(default)s)")
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        raise EmsegError("--runs: an ensemble needs at least two runs")
    folds = [int(k) for k in args.folds.split(",")]
    results = {fold: run_fold(args.runs, fold, args.out) for fold in folds}
    write_result(args.out / "ensemble.json", {
        "benchmark": "ensemble_cv",
        "command": command_line("ensemble_cv.py", argv),
        "runs": [str(run) for run in args.runs],
        "machine": machine_info(),
        "cells_v_rand": {str(fold): metrics["segment_v_rand"] for fold, metrics in results.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(run_with_clean_errors(main, debug=False, prog="ensemble_cv.py"))
