"""Stage evaluate: choose the cell step on the validation slices, score the held-out test slices the ISBI way; plots;
test-volume probabilities; with --out, the model file: the trained network and the cell step chosen for it.
"""

from pathlib import Path

from emseg.cli.stage import run_stage, stage_parser
from emseg.evaluation.evaluate import SegmentJob, evaluate
from emseg.inference.predictor import Predictor
from emseg.io.atomic import read_json
from emseg.io.dataset import read_labelled, read_unlabelled
from emseg.networks.model_file import load_model, with_cell_step
from emseg.preprocessing.split import read_split
from emseg.runtime.device import select_device
from emseg.segmentation.methods import check_segment_params

parser = stage_parser("evaluate", __doc__, "png", "split", "model", "metrics", "plots", "eval", "segment")
parser.add_argument("--out", help="model file to write: the --model network with the cell step chosen on the validation slices")
parser.add_argument("--labelled-only", action="store_true", help="score the labelled test slices only, no test-volume map (cv/dvc.yaml)")


def body(args, params):
    settings = params.evaluate
    device = select_device(settings.device)
    model, config = load_model(args.model, device)
    split = read_split(args.split)
    # a model that reads neighbouring sections gets them from its own stack (the unlabelled volume's from that one)
    images, labels = read_labelled(args.png, split["test"], config.context)
    predictor = Predictor.from_params(model, config, settings, device)
    # a data set without unlabelled slices (data.test_images: '') has no test-volume map
    unlabelled = None if args.labelled_only else (read_unlabelled(args.png, config.context) or None)
    job = SegmentJob(params.segment, *read_labelled(args.png, split["val"], config.context), Path(args.segment))
    metrics = evaluate(predictor, images, labels, split["test"], unlabelled, args.metrics, args.plots, args.eval, settings, job)
    if args.out:
        chosen = read_json(args.segment)
        cells = {"method": chosen["method"], "settings": chosen["settings"], "chosen_on": f"validation slices {split['val']}", "v_rand": chosen["val_v_rand"]}
        with_cell_step(args.model, args.out, cells)
    shown = ("v_rand", "v_info", "threshold", "v_rand_at_val_threshold", "val_threshold", "segment_v_rand")
    print("  ".join(f"{key} {metrics[key]:.4f}" for key in shown))


if __name__ == "__main__":
    run_stage(parser, body, checks=(check_segment_params,))
