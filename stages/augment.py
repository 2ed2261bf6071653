"""Stage augment: materialise seeded augmented copies of the training slices, plus a preview grid."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.io.atomic import staged_directory
from emseg.io.dataset import read_labelled
from emseg.preprocessing.augment import augment_slices, write_augmented, write_preview
from emseg.preprocessing.split import read_split

parser = stage_parser("augment", __doc__, "png", "split", "preview", out="folder for the augmented slices")


def body(args, params):
    train_ids = read_split(args.split)["train"]
    images, labels = read_labelled(args.png, train_ids, params.model.context)
    samples = augment_slices(images, labels, params.augment, params.base.seed)
    with staged_directory(args.out) as staging:
        names = write_augmented(samples, train_ids, staging)
    shown = samples[:: max(1, params.augment.copies)][: params.augment.preview_samples]
    if not shown:  # copies: 0 still gets a preview of the originals
        shown = [(i, images[i], labels[i]) for i in range(min(len(images), params.augment.preview_samples))]
    write_preview([(images[i], labels[i]) for i, _, _ in shown], [(im, lb) for _, im, lb in shown], args.preview)
    print(f"wrote {len(names)} augmented slices from {len(train_ids)} training slices to {args.out}")


if __name__ == "__main__":
    run_stage(parser, body)
