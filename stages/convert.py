"""Stage convert: each raw stack -> one lossless PNG per slice, verified; labels in emseg's convention (data.labels)."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.preprocessing.convert import convert_labelled

parser = stage_parser("convert", __doc__, "raw", out="folder for the PNG slices")


def body(args, params):
    data = params.data
    counts, labelled = convert_labelled(args.raw, args.out, data.labels, data.membrane_value, data.unlabelled, bool(data.test_images))
    for folder, count in counts.items():
        print(f"wrote {count} slices to {args.out}/{folder}")
    print(f"labels: {labelled.summary(with_pixel_size=False)}")


if __name__ == "__main__":
    run_stage(parser, body)
