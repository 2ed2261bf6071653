"""`emseg predict`: segment images, stacks and volumes with a trained model (the bundled one by default).

The command's `--help` text is this module's `HELP`; the
[command-line reference](../../cli.md) shows it for every subcommand.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from emseg.config.defaults import DEVICES, FALLBACK_THRESHOLD, OVERLAP, TILE_BATCH
from emseg.errors import EmsegError
from emseg.inference.outputs import OUTPUT_KINDS, default_outputs, parse_outputs

if TYPE_CHECKING:  # the model file's module imports torch, which building the parser must not
    from emseg.networks.model_file import ModelConfig

#: the `--help` text
HELP = """emseg predict INPUT... --out DIR [--model MODEL]: segment new images with a trained model
(default: models/model.pt when the pipeline has made one here, else the model bundled with emseg).

INPUT: TIFF stacks (multi- or single-page), PNG or JPEG files, or folders of them (each
file of a folder is predicted on its own); 8- or 16-bit, grey or RGB (made grey), any
size.  The model file brings its own patch size and intensity normalisation.

Outputs per input, named after it (<stem> = file name without suffix), in DIR
(--outputs picks a subset of the kinds):

  proba     <stem>_proba.tif     float32 cell-interior probability (0..1, high = cell), one page per slice
  membrane  <stem>_membrane.png  membrane mask, 255 = membrane (.tif for a stack)
  cells     <stem>_cells.tif     uint32 cell instance labels per slice (0 = 1-pixel outlines)
  overlay   <stem>_overlay.png   membranes (red) and cell outlines (yellow) over the image (middle slice of a stack)
  measurements  <stem>_cells.csv          one row per cell per slice: area, perimeter, centroid, bounding box, ...
  summary       <stem>_cells_summary.csv  cell count and median cell area per slice
  uncertainty   <stem>_uncertainty.tif    float32 variance across the 8 test-time augmentations (--tta only;
                                          in the default set with --tta): where to look first

With --tta the measurements gain two columns per cell: uncertainty (the mean variance along
the cell's border) and confidence (1 - 2 x its square root, 0..1): sort by confidence to
review the likeliest mistakes first.

Pixel size: the model file records the pixel size it was trained at. An input whose pixel
size is known (--pixel-size, or the TIFF's OME metadata, ImageJ unit or resolution tags; a
volume's scale) and differs from it by over 1% is resampled to the model's pixel size,
predicted there a slice (or a block) at a time, and every output is put back on the input's
own grid: same shape, pixel size and units as the input. One line says what was done, e.g.
"emseg predict: input 7.3 nm/px, model 4 nm/px: predicted at 1.82x"; an input of unknown
pixel size is predicted as if it had the model's (the line says so). --no-rescale predicts
every input on its own grid.

Lengths and areas are in pixels, and in physical units too (the unit in the column name)
where the pixel size is known.

Cells: --cells, else the cell step recorded in the model file, else segment.json beside the
model (older model files), else components of the membrane mask.

Nothing is written unless every input can be read and the model loads; each file appears
under its final name only once it is complete (also after Ctrl-C or kill -TERM).

Volumes bigger than memory: an OME-Zarr (v0.4 or v0.5), an HDF5 dataset (file.h5:/raw), or a
TIFF of over 1 GiB (or any TIFF when --workers/--scheduler is given) is read a block at a
time and predicted block by block (--block-size), into chunked OME-Zarr stores with a
multiscale pyramid that napari and neuroglancer open directly:

  proba     <stem>_proba.ome.zarr     float32 cell-interior probability
  membrane  <stem>_membrane.ome.zarr  uint8 membrane mask, 255 = membrane
  cells     <stem>_cells.ome.zarr     uint32 cells, numbered across the whole volume (any --cells but mws)

A volume's cells are drawn by the same method as a slice read whole, block by block with a
halo, and a cell cut by a block border keeps one number. The pixel size of the input (OME
metadata, HDF5 element_size_um, TIFF tags) goes into their metadata. Blocks run in this
process, on a local Dask cluster (--workers N), or on a running one (--scheduler tcp://HOST:8786; the model and the stores must be on a file
system its workers share). An interrupted volume run keeps its unfinished stores under
hidden staging names: the same command again skips the blocks already done.
"""


#: emseg.inference.volume.blockwise.BLOCK_SIZE, repeated here so that building the parser imports no zarr (tests check they agree)
VOLUME_BLOCK = 4096

# torch and MONAI are imported in run(), not here: every `emseg` command builds this
# parser, and `emseg score` / `emseg --help` should not pay their 2-3 s import.


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `emseg predict` parser to `subparsers` (its description is `HELP`)."""
    parser = subparsers.add_parser(
        "predict",
        help="segment images with a trained model (probability map, membrane mask, cell labels, overlay)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="TIFF/PNG/JPEG files or folders of them")
    parser.add_argument(
        "--model", type=Path, default=None,
        help="emseg model file (default: models/model.pt when the pipeline has made one, else the bundled ISBI 2012 model)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    parser.add_argument(
        "--outputs", metavar="LIST",
        help=f"comma-separated subset of {','.join(OUTPUT_KINDS)} (default: all, uncertainty only with --tta; "
        "for volumes all of proba,membrane,cells)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cell where probability > threshold, for membrane and cells (default: the model's best "
        f"V_rand threshold on its validation slices, {FALLBACK_THRESHOLD} for a model without one)",
    )
    parser.add_argument(
        "--cells",
        metavar="METHOD",
        help="how cells are drawn: components (the thresholded mask's), watershed, multicut, gasp or mws (affinity "
        "models); default: the cell step recorded in the model file, else segment.json beside the model, else components",
    )
    parser.add_argument("--pixel-size", metavar="SIZE", help="the side of a pixel with its unit, e.g. 4nm (default: what each TIFF says)")
    parser.add_argument(
        "--no-rescale", action="store_true",
        help="predict every input on its own grid, whatever its pixel size (default: resample to the model's pixel size)",
    )
    parser.add_argument("--tta", action="store_true", help="average the 8 flips/rotations of every tile (8x slower)")
    parser.add_argument("--overlap", type=float, default=OVERLAP, help="overlap of neighbouring tiles, in [0, 1) (default: %(default)s)")
    parser.add_argument(
        "--tile", type=int, metavar="PX",
        help="side of the sliding window (default: the model's training patch size); the network is fully convolutional, "
        "and larger windows or a smaller --overlap recompute fewer pixels (docs: explanation/performance.md, the sliding window's layout)",
    )
    parser.add_argument("--batch-size", type=int, default=TILE_BATCH, help="tiles per forward pass (default: %(default)s)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="(default: %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default 0: one per core; 1 when the cores are busy)"
    )
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA (AMP is on by default there)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    volumes = parser.add_argument_group("volumes bigger than memory (OME-Zarr, HDF5, large TIFF)")
    volumes.add_argument("--workers", type=int, metavar="N", help="run the blocks on a local Dask cluster of N processes")
    volumes.add_argument("--scheduler", metavar="ADDRESS", help="run the blocks on a running Dask cluster, e.g. tcp://HOST:8786")
    volumes.add_argument(
        "--block-size", type=int, default=VOLUME_BLOCK, metavar="PX",
        help="side of a block in pixels (default %(default)s: whole slices up to that size)",
    )
    volumes.add_argument("--ome-version", default="0.4", choices=("0.4", "0.5"), help="OME-Zarr version of the outputs (default %(default)s)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `emseg predict` with its parsed arguments; the exit status."""
    import torch
    from tqdm import tqdm

    from emseg.inference.cell_step import cell_method, settings_text
    from emseg.inference.in_memory import PredictOptions, check_output_names, context_note, plan_inputs, predict_files, total_tiles
    from emseg.inference.inputs import colour_note, discover_inputs, inspect_inputs
    from emseg.networks.model_file import load_model
    from emseg.runtime.device import select_device
    from emseg.segmentation.measurements import parse_pixel_size

    outputs = parse_outputs(args.outputs, args.tta) if args.outputs else default_outputs(args.tta)
    pixel_size = parse_pixel_size(args.pixel_size) if args.pixel_size is not None else None
    device = select_device(args.device)
    if args.threads < 0:
        raise EmsegError(f"--threads must be 0 (one per core) or more, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    # everything that can be refused is refused here, before the first output file exists
    given = FALLBACK_THRESHOLD if args.threshold is None else args.threshold
    options = PredictOptions(
        outputs, given, args.overlap, args.tta, args.batch_size, device, not args.no_amp, tile=args.tile, rescale=not args.no_rescale,
    )
    from emseg.sharing.bundled import default_model

    model_path, model_source = default_model(args.model)
    model, config = load_model(model_path, device)
    threshold, threshold_source = config.threshold(args.threshold)
    method, settings, cells_source = cell_method(model_path, args.cells, config)
    options = replace(options, threshold=threshold, cells=method, cell_settings=settings, pixel_size=pixel_size)
    show_bar = not args.quiet and sys.stderr.isatty()
    image_paths, volumes = split_volumes(args)
    if volumes:
        jobs = plan_volumes(volumes, model_path, config, options, volume_cell_step(method, settings, cells_source, args.cells), args)
    items = inspect_inputs(discover_inputs(image_paths)) if image_paths else []
    check_output_names(items, args.out, options.outputs)
    note = colour_note(items)
    if note:
        print(f"emseg predict: note: {note}", file=sys.stderr)
    if volumes:
        run_volumes(jobs, args, show_bar)
    if not items:
        return 0

    rescalings = plan_inputs(items, config, options)
    print_notes([(str(item.path), plan.note) for item, plan in zip(items, rescalings, strict=True)])
    print_notes([(str(item.path), context_note(item.shape[0], config.context)) for item in items])
    total = total_tiles(items, config.window(options.tile), options.overlap, rescalings)
    with tqdm(total=total, unit="tile", desc="predict", file=sys.stderr, disable=not show_bar, dynamic_ncols=True) as bar:
        summary = predict_files(
            model, config, items, args.out, options,
            progress=bar.update, on_file=lambda item: bar.set_postfix_str(item.path.name, refresh=False), rescalings=rescalings,
        )
    if not args.quiet:
        print(
            f"{summary.line()} -> {args.out} (model {model_path}: {model_source}; threshold {options.threshold:g}: "
            f"{threshold_source}; cells: {method}{settings_text(settings)}, {cells_source})"
        )
    return 0


def print_notes(notes: list[tuple[str, str]]) -> None:
    """Print each input's pixel-size line once (to stderr): naming the input where inputs differ, a repeated line once."""
    shown: set[str] = set()
    named = len({note for _, note in notes if note}) > 1
    for name, note in notes:
        if note and note not in shown:
            shown.add(note)
            print(f"emseg predict: {name}: {note}" if named else f"emseg predict: {note}", file=sys.stderr)


def split_volumes(args: argparse.Namespace) -> tuple[list[Path], list]:
    """The inputs read whole (images) and those predicted block by block (opened lazily: metadata only)."""
    from emseg.inference.volume.blockwise import tiff_is_volume
    from emseg.inference.volume.sources import is_volume_spec, open_volume

    cluster = args.workers is not None or bool(args.scheduler)
    images, volumes = [], []
    for given in args.inputs:
        text = str(given)
        is_tiff = given.suffix.lower() in (".tif", ".tiff") and given.is_file()
        if is_volume_spec(text):
            volumes.append(open_volume(text))
        elif is_tiff and (cluster or tiff_is_volume(given)):
            volumes.append(open_volume(text, tiff=True))
        else:
            images.append(given)
    if cluster and not volumes:
        raise EmsegError("--workers / --scheduler run volume inputs (OME-Zarr, HDF5, TIFF); none was given")
    return images, volumes


def volume_cell_step(method: str, settings: dict, source: str, asked: str | None) -> tuple[str, dict]:
    """The cell method and settings of the volume inputs: the images' own, but for one a volume run cannot draw.

    A method the evaluate stage chose (not asked for) that volumes cannot draw gives way to
    `gasp` with its defaults, in a note; asked for, the volume request refuses it.
    """
    from emseg.inference.volume.blockwise import VOLUME_CELL_METHODS

    if method in VOLUME_CELL_METHODS or asked is not None:
        return method, settings
    print(f"emseg predict: note: volume inputs are segmented block-wise with gasp (its defaults); {method} ({source}) "
          "draws the cells of the images read whole", file=sys.stderr)
    return "gasp", {}


def plan_volumes(volumes: list, model_path: Path, config: ModelConfig, options, cell_step: tuple[str, dict], args: argparse.Namespace) -> list:
    """Every volume input's job, checked before anything is written; each one's pixel-size line is printed."""
    from emseg.inference.rescale import plan_rescaling
    from emseg.inference.volume.blockwise import VOLUME_OUTPUTS, VolumeRequest, plan_volume

    request = VolumeRequest(
        tuple(options.outputs), options.threshold, options.overlap, options.tta, options.batch_size,
        str(options.device), options.amp, args.block_size, args.ome_version, options.tile, cells=cell_step[0], cell_settings=cell_step[1],
    )
    dropped = [kind for kind in options.outputs if kind not in VOLUME_OUTPUTS]
    if dropped and args.outputs and not args.quiet:  # asked for by name, so say why they are not written
        print(f"emseg predict: note: volume inputs get {', '.join(k for k in options.outputs if k in VOLUME_OUTPUTS)} "
              f"as OME-Zarr, not {', '.join(dropped)}", file=sys.stderr)
    if options.pixel_size is not None:  # --pixel-size is the side of a pixel: y and x; z stays what the input says
        from dataclasses import replace as changed

        from emseg.inference.volume.sources import ome_unit

        size = options.pixel_size
        volumes = [changed(v, scale=(v.scale[0] if v.unit else 1.0, size.value, size.value), unit=ome_unit(size.unit)) for v in volumes]
    rescalings = [plan_rescaling(v.pixel_size(), config.pixel_size_yx(), options.rescale) for v in volumes]
    print_notes([(v.spec, plan.note) for v, plan in zip(volumes, rescalings, strict=True)])
    jobs = [
        (plan_volume(source, model_path, replace(request, rescale=plan.factors), args.out), args.ome_version)
        for source, plan in zip(volumes, rescalings, strict=True)
    ]
    names = [path for (job, finals), _ in jobs for path in finals.values()]
    if len(set(names)) != len(names):
        raise EmsegError("two volume inputs would write the same output store; rename one or predict them separately")
    return jobs


def run_volumes(jobs: list, args: argparse.Namespace, show_bar: bool) -> None:
    """Predict the volume jobs, one after the other, on the engine `--workers` / `--scheduler` ask for."""
    from emseg.inference.volume.blockwise import run_volume
    from emseg.inference.volume.engine import make_engine

    engine = make_engine(args.workers, args.scheduler)
    try:
        for (job, finals), version in jobs:
            summary = run_volume(job, finals, engine, version, show_bar)
            if not args.quiet:
                resumed = f", {summary.skipped} of {summary.blocks} blocks done before" if summary.skipped else ""
                print(
                    f"predicted {job.source.spec}: {summary.slices} slice(s), {summary.megapixels:.1f} MPix in "
                    f"{summary.blocks} blocks on {engine.workers} worker(s){resumed}, {summary.seconds:.1f} s "
                    f"({summary.megapixels / max(summary.seconds, 1e-9):.3f} MPix/s), {summary.cells} cells -> "
                    f"{', '.join(str(p) for p in finals.values())}"
                )
    finally:
        engine.close()
