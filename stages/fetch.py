"""Stage fetch: fill data/raw/ with the stacks named in params data (TIFFs, folders of slices, OME-Zarr or HDF5), as TIFF stacks."""

from emseg.cli.stage import run_stage, stage_parser
from emseg.io.stacks import VoxelSize
from emseg.preprocessing.fetch import fetch

parser = stage_parser("fetch", __doc__, out="folder for the raw stacks")


def body(args, params):
    data = params.data
    given = VoxelSize.of(data.pixel_size)
    for stack in fetch(data.source, args.out, data.source_names(), data.sha256, data.labels, data.membrane_value, data.unlabelled).values():
        print(f"fetched {stack.name}: {stack.shape} {stack.dtype}")
        if stack.pixel_size is not None and not stack.pixel_size.agrees_with(given):
            print(f"note: {stack.origin} says its pixel size is {stack.pixel_size}; params data.pixel_size {list(data.pixel_size)} is what training records")


if __name__ == "__main__":
    run_stage(parser, body)
