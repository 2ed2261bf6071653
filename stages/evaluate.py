"""Stage evaluate: score the held-out test slices the ISBI way; plots; test-volume probabilities."""

from emseg.dataset import TEST_IMAGES, read_labelled, read_slices
from emseg.device import select_device
from emseg.evaluation.evaluate import Predictor, evaluate
from emseg.io import list_images
from emseg.model_file import load_model
from emseg.preprocessing.split import read_split
from emseg.stage import run_stage, stage_parser

parser = stage_parser("evaluate", __doc__)
parser.add_argument("--png", required=True, help="folder of the converted PNG slices")
parser.add_argument("--split", required=True, help="split JSON")
parser.add_argument("--model", required=True, help="trained model file")
parser.add_argument("--metrics", required=True, help="metrics JSON to write")
parser.add_argument("--plots", required=True, help="folder for plot data and overlay images")
parser.add_argument("--eval", required=True, help="folder for the scored and predicted stacks")


def body(args, params):
    device = select_device(params.train.device)
    model, config = load_model(args.model, device)
    test_ids = read_split(args.split)["test"]
    images, labels = read_labelled(args.png, test_ids)
    unlabelled_folder = f"{args.png}/{TEST_IMAGES}"
    unlabelled = read_slices(unlabelled_folder, [p.name for p in list_images(unlabelled_folder)])
    metrics = evaluate(Predictor(model, config, params.evaluate, device), images, labels, test_ids, unlabelled, args.metrics, args.plots, args.eval)
    print("  ".join(f"{key} {metrics[key]:.4f}" for key in ("v_rand", "v_info", "pixel_error", "dice", "iou", "threshold")))


if __name__ == "__main__":
    run_stage(parser, body)
