"""`emseg predict` for a volume: block-wise, restartable, into OME-Zarr stores, on any engine.

The passes, each a set of independent block tasks
([`emseg.inference.volume.engine`][emseg.inference.volume.engine] runs them):

1. `stats`: each slice's mean and standard deviation (the model's per-slice
   normalisation), band by band;
2. `predict`: each block's probability and membrane mask
   ([`predict_block`][emseg.inference.volume.blocks.predict_block]), written straight into
   level 0 of the output stores; a block is marked done in the store only after its pixels
   are written; a model that reads neighbouring sections (`context`) gets the same region of
   them, each normalised with its own slice's statistics, as the in-memory path gives it;
3. `label` / `joins` / `cells`: each block's cells drawn once with a halo by the run's cell
   method (`components` on the membrane mask; `watershed`, `multicut` or `gasp` on the
   membrane probability, as for a slice read whole) into a work array, with the bands along
   its borders; the cells of neighbouring blocks joined across each border
   ([`emseg.inference.volume.stitching`][emseg.inference.volume.stitching]); then each block
   written with its cells' volume-wide numbers;
4. `pyramid`: the lower-resolution levels, each from the one above.

The stores are built under staging names ([`partial_folder`][emseg.io.atomic.partial_folder])
and renamed onto their final names only when every pass has finished, so that a store under
its final name is always complete. An interrupted run (Ctrl-C, kill, a lost cluster) leaves
the staging stores with their done marks; the same command started again checks that they
come from the same run (same input, model and settings) and skips the blocks marked done.
Blocks are aligned to the output chunks, so that no two tasks ever write the same chunk.

A volume of another pixel size than the model's (`VolumeRequest.rescale`) is predicted at the
model's scale block by block ([`predict_rescaled_block`][emseg.inference.volume.blocks.predict_rescaled_block]):
each block and a halo of one model window is read on the input's grid, resampled, predicted,
put back and cropped; the block side `--block-size` is counted at the model's scale
([`input_block_size`][emseg.inference.volume.blockwise.input_block_size]). The stores keep the
input's grid and pixel size; the cells are the components of the membrane mask on that grid.
`emseg predict` calls [`plan_volume`][emseg.inference.volume.blockwise.plan_volume], then
[`run_volume`][emseg.inference.volume.blockwise.run_volume].
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from emseg.errors import EmsegError
from emseg.inference.volume import omezarr
from emseg.inference.volume.blocks import Block, SliceStats, Stats, block_grid, predict_block, predict_rescaled_block
from emseg.inference.volume.sources import VolumeSource
from emseg.inference.volume.stitching import FACING, LABEL_HALO, block_cells, border_joins, join_rule, neighbours, relabel_tables
from emseg.io.atomic import partial_folder
from emseg.io.sections import neighbour_indices

#: the kinds a volume run writes, and the pixel type of each (the TIFF path's kinds of the same name)
VOLUME_OUTPUTS = {"proba": np.float32, "membrane": np.uint8, "cells": np.uint32}
#: the default block side: a whole slice up to this size, else tiles of it (memory per worker stays well under 2 GiB)
BLOCK_SIZE = 4096
#: the largest chunk side of the output stores (viewers fetch chunks: ~1-4 MB each)
CHUNK = 1024
#: the done marks of each pass, an array of the first output store
DONE_GROUP = "emseg_done"
#: where the cells pass reads the mask from when no membrane store is asked for
WORK_MASK = "emseg_work_mask"
#: the membrane probability, for cell methods that draw on it rather than on the mask
WORK_MEMBRANE = "emseg_work_membrane"
#: each block's local cell labels, its bands and its cell count, between the label and the cells passes
WORK_CELLS = "emseg_work_cells"
WORK_BANDS = "emseg_work_bands"
WORK_COUNTS = "emseg_work_counts"
#: the cell methods a volume run draws (mws reads the affinities, which a volume run does not keep)
VOLUME_CELL_METHODS = ("components", "watershed", "multicut", "gasp")


@dataclass(frozen=True)
class VolumeRequest:
    """The volume-side settings of one `emseg predict` run, checked when made.

    `outputs` are the kinds asked for (those of `VOLUME_OUTPUTS` are written); `threshold`,
    `overlap`, `tta`, `batch_size`, `device` and `amp` are as for images, and so are `cells`
    and `cell_settings`, the cell method and its settings; `block_size` is the
    block side (at the model's scale), `version` the OME-Zarr version of the stores, `tile` the
    sliding window's side (None: the model's training patch size), `rescale` how much the input
    is enlarged to the model's pixel size ([`zoom_factors`][emseg.inference.rescale.zoom_factors];
    None: predicted on its own grid).

    Raises:
        EmsegError: A bad block size or OME-Zarr version, or none of the volume outputs asked for.
    """

    outputs: tuple[str, ...]
    threshold: float
    overlap: float
    tta: bool
    batch_size: int
    device: str
    amp: bool
    block_size: int = BLOCK_SIZE
    version: str = "0.4"
    #: the sliding window's side; None: the model's training patch size
    tile: int | None = None
    #: (y, x) zoom to the model's pixel size; None: the input's own grid
    rescale: tuple[float, float] | None = None
    #: how the cells are drawn: one of VOLUME_CELL_METHODS, and its settings
    cells: str = "components"
    cell_settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from emseg.segmentation.methods import check_settings

        check_block_size(self.block_size)
        if self.cells not in VOLUME_CELL_METHODS:
            raise EmsegError(
                f"--cells {self.cells}: volume inputs are segmented with {', '.join(VOLUME_CELL_METHODS)} "
                "(mws reads the affinities, which a volume run does not keep)"
            )
        try:
            check_settings(self.cells, self.cell_settings)
        except EmsegError as exc:
            raise EmsegError(f"--cells {self.cells}: {exc}") from None
        if self.rescale is not None and not all(f > 0 for f in self.rescale):
            raise EmsegError(f"volume rescaling factors must be positive, got {self.rescale}")
        if self.version not in omezarr.VERSIONS:
            raise EmsegError(f"--ome-version must be one of {', '.join(omezarr.VERSIONS)}, got {self.version!r}")
        if not any(kind in VOLUME_OUTPUTS for kind in self.outputs):
            raise EmsegError(f"--outputs: a volume input writes {', '.join(VOLUME_OUTPUTS)}; none of them was asked for")


@dataclass(frozen=True)
class VolumeJob:
    """One volume run, as every worker needs it (picklable: paths and numbers only)."""

    source: VolumeSource
    model_path: str
    model_sha256: str
    #: kind -> the staging store it is written into
    stores: dict[str, str]
    request: VolumeRequest
    chunk: int
    halo: int = LABEL_HALO
    #: the block side on the input's grid (the request's is at the model's scale); 0: the request's
    block_size: int = 0
    #: torch threads per task process (0: torch's default)
    threads: int = 0

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs the same run: a restart continues only a run with this fingerprint."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("stores", "threads", "model_path", "source", "request")}
        settings.update({k: v for k, v in asdict(self.request).items() if k not in ("device", "outputs")})
        settings["source"] = {"spec": self.source.spec, "shape": list(self.source.shape), "dtype": self.source.dtype}
        settings["outputs"] = sorted(self.stores)
        return settings

    @property
    def first_store(self) -> Path:
        """The first output store, which also holds the done marks (and the work mask)."""
        return Path(next(iter(self.stores.values())))

    @property
    def mask_store(self) -> tuple[Path, str]:
        """Where the membrane mask lives (store, array path): the membrane store's level 0, or a work array."""
        if "membrane" in self.stores:
            return Path(self.stores["membrane"]), "0"
        return self.first_store, WORK_MASK

    @property
    def keeps_membrane(self) -> bool:
        """Whether the predict pass keeps the membrane probability for the cells (a method that draws on it)."""
        return "cells" in self.stores and self.request.cells != "components"

    @property
    def stitch(self) -> tuple[str, int]:
        """How neighbouring blocks' cells are joined, and the band each block keeps ([`join_rule`][emseg.inference.volume.stitching.join_rule])."""
        return join_rule(self.request.cells)

    @property
    def side(self) -> int:
        """The block side on the input's grid."""
        return self.block_size or self.request.block_size


@dataclass
class VolumeSummary:
    """What a volume run did: blocks (and those skipped as done before), slices, megapixels, seconds, cells, stores written."""

    blocks: int
    skipped: int
    slices: int
    megapixels: float
    seconds: float
    cells: int
    written: list[Path] = field(default_factory=list)


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of a file (the model's, in the run's fingerprint)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- per-process model cache: each worker loads the model once --------------------------------

_LOADED: dict[tuple, Any] = {}


def _tiles(job: VolumeJob) -> tuple[Any, Any]:
    key = (job.model_path, job.model_sha256, job.request.device, job.request.tta, job.request.amp)
    if key not in _LOADED:
        import torch

        from emseg.inference.sliding_window import TilePredictor
        from emseg.networks.model_file import load_model
        from emseg.runtime.allocator import keep_freed_memory

        # a Dask nanny starts its workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's
        # adaptive mmap threshold: every tile buffer would be mapped, faulted in and unmapped again
        keep_freed_memory()
        if job.threads:
            torch.set_num_threads(job.threads)
        model, config = load_model(job.model_path, job.request.device)
        _LOADED.clear()
        _LOADED[key] = (TilePredictor(model, job.request.tta, job.request.amp, offsets=config.offset_tuples()), config)
    return _LOADED[key]


# -- the block tasks (module-level functions: Dask pickles them by name) -------------------------


def _reader(source: VolumeSource, z: int, context: int = 0) -> Callable[[slice, slice], np.ndarray]:
    """Reads a region of slice `z`; with `context`, the same region of its sections too, stacked as the model reads them."""
    if not context:
        return lambda rows, cols: source.read(z, rows, cols)
    sections = neighbour_indices(z, source.shape[0], context)
    return lambda rows, cols: np.stack([source.read(j, rows, cols) for j in sections])


def _check_finite(region: np.ndarray, source: VolumeSource, z: int) -> np.ndarray:
    if np.issubdtype(region.dtype, np.floating) and not np.isfinite(region).all():
        raise EmsegError(f"{source.spec}: slice {z} contains NaN or infinite values")
    return region


def stats_task(item: tuple[VolumeJob, int]) -> tuple[int, float, float]:
    """The `stats` pass's task: one slice's mean and standard deviation, for `(job, z)`."""
    job, z = item
    read = _reader(job.source, z)
    mean, std = SliceStats(lambda r, c: _check_finite(read(r, c), job.source, z), job.source.shape[1:]).mean_std()
    return z, mean, std


def _new_array(store: Path, path: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str) -> None:
    """An array inside an existing store, in the store's own zarr format."""
    import zarr

    group = zarr.open_group(store, mode="r+")
    parent, _, name = path.rpartition("/")
    if parent:
        group = group.require_group(parent)
    group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)


def _done(job: VolumeJob, stage: str, mode: str = "r") -> Any:
    return _open(job.first_store, f"{DONE_GROUP}/{stage}", mode)


def _mark_done(job: VolumeJob, stage: str, block: Block) -> None:
    # one chunk per block: concurrent marks never share a file
    _done(job, stage, "r+")[block.index] = 1


def predict_task(item: tuple[VolumeJob, Block, Stats]) -> int:
    """The `predict` pass's task: one block's probability and membrane mask, written into the stores; the block's index.

    `item` is `(job, block, stats)`: the statistics of the block's slice, or for a model that
    reads neighbouring sections one pair per section.
    """
    import torch

    job, block, stats = item
    tiles, config = _tiles(job)
    read = _reader(job.source, block.z, config.context)
    if job.request.rescale is not None:
        membrane = predict_rescaled_block(
            tiles, read, job.source.shape[1:], block, job.request.rescale, config.window(job.request.tile),
            job.request.overlap, job.request.batch_size, stats, config.normalization, torch.device(job.request.device),
        )
    else:
        membrane = predict_block(
            tiles, read, job.source.shape[1:], block, config.window(job.request.tile), job.request.overlap,
            job.request.batch_size, stats, config.normalization, torch.device(job.request.device),
        )
    if config.offset_tuples() is not None:  # an affinity model: its boundary map, as the in-memory path draws it
        from emseg.networks.affinities import boundary_from_affinities

        membrane = boundary_from_affinities(membrane)
    else:
        membrane = membrane[0]
    cell = (1 - membrane).astype(np.float32)
    where = (block.z, block.rows, block.cols)
    if job.keeps_membrane:
        _open(job.first_store, WORK_MEMBRANE)[where] = membrane.astype(np.float32)
    if "proba" in job.stores:
        omezarr.open_level(Path(job.stores["proba"]), 0)[where] = cell
    mask_store, mask_path = job.mask_store
    membrane_mask = (~(cell > np.float32(job.request.threshold))).view(np.uint8) * np.uint8(255)
    _open(mask_store, mask_path)[where] = membrane_mask
    _mark_done(job, "predict", block)
    return block.index


def _open(store: Path, path: str, mode: str = "r+") -> Any:
    import zarr

    return zarr.open_array(store, path=path, mode=mode)


def _cell_drawer(job: VolumeJob, z: int) -> Callable[[slice, slice], np.ndarray]:
    """Draws the cells of a region of slice `z` by the run's cell method, from what the predict pass wrote."""
    if job.request.cells == "components":
        from emseg.segmentation.thinning import instance_labels

        store, path = job.mask_store
        mask = _open(store, path)
        return lambda rows, cols: instance_labels(np.asarray(mask[z, rows, cols]) == 0)
    from emseg.networks.prediction import Prediction
    from emseg.segmentation.methods import segment

    membrane = _open(job.first_store, WORK_MEMBRANE)
    return lambda rows, cols: segment(job.request.cells, Prediction(np.asarray(membrane[z, rows, cols])), job.request.cell_settings)


def label_task(item: tuple[VolumeJob, Block]) -> int:
    """The `label` pass's task: one block's cells (local numbers) and bands into the work arrays; the block's index."""
    job, block = item
    _, band = job.stitch
    found = block_cells(_cell_drawer(job, block.z), job.source.shape[1:], block, job.side, job.halo, band)
    _open(job.first_store, WORK_CELLS)[block.z, block.rows, block.cols] = found.core
    _open(job.first_store, WORK_BANDS)[block.index] = found.bands
    _open(job.first_store, WORK_COUNTS)[block.index] = found.count
    _mark_done(job, "label", block)
    return block.index


def joins_task(item: tuple[VolumeJob, Block, Block, int]) -> tuple[int, np.ndarray, int, np.ndarray]:
    """The `joins` pass's task: the cells of two neighbouring blocks that are one, as `(block, labels, other, labels)`."""
    job, first, second, edge = item
    rule, _ = job.stitch
    bands = _open(job.first_store, WORK_BANDS, "r")
    mine, theirs = border_joins(bands[first.index, edge], bands[second.index, FACING[edge]], rule)
    return first.index, mine, second.index, theirs


def cells_task(item: tuple[VolumeJob, Block, np.ndarray]) -> int:
    """The `cells` pass's task: one block's cells, written with their volume-wide numbers; the block's index."""
    job, block, table = item
    local = np.asarray(_open(job.first_store, WORK_CELLS, "r")[block.z, block.rows, block.cols])
    omezarr.open_level(Path(job.stores["cells"]), 0)[block.z, block.rows, block.cols] = table[local]
    _mark_done(job, "cells", block)
    return block.index


def pyramid_task(item: tuple[str, str, int, int, int, int, int]) -> None:
    """The `pyramid` pass's task: one region of one level, downsampled from the level above."""
    store, kind, level, z, y0, x0, size = item
    upper = omezarr.open_level(Path(store), level - 1, mode="r")
    target = omezarr.open_level(Path(store), level)
    y1, x1 = min(y0 + size, target.shape[1]), min(x0 + size, target.shape[2])
    region = upper[z : z + 1, 2 * y0 : 2 * y1, 2 * x0 : 2 * x1]
    target[z : z + 1, y0:y1, x0:x1] = omezarr.downsample_2x(region, mean=kind == "proba").astype(target.dtype)


# -- the run ------------------------------------------------------------------------------------


def chunk_for(block_size: int) -> int:
    """The chunk side of the output stores: `CHUNK`, or the block side when blocks are smaller."""
    return min(CHUNK, block_size)


def check_block_size(block_size: int) -> None:
    """Check `--block-size`: at least 16 pixels, and a multiple of `CHUNK` above it (so that blocks never share a chunk).

    Raises:
        EmsegError: Naming `--block-size`.
    """
    if block_size < 16:
        raise EmsegError(f"--block-size must be at least 16 pixels, got {block_size}")
    if block_size > CHUNK and block_size % CHUNK:
        raise EmsegError(f"--block-size must be a multiple of {CHUNK} above {CHUNK} (so blocks never share a chunk), got {block_size}")


def store_names(stem: str, outputs: Sequence[str]) -> dict[str, str]:
    """The store name of each requested volume output kind, after the input's stem (`<stem>_<kind>.ome.zarr`)."""
    return {kind: f"{stem}_{kind}.ome.zarr" for kind in VOLUME_OUTPUTS if kind in outputs}


def _prepare_stores(job: VolumeJob, version: str, blocks: int) -> bool:
    """Create the staging stores, or check that existing ones belong to this run; True when resuming."""
    fingerprint = job.fingerprint()
    existing = [Path(p) for p in job.stores.values() if Path(p).exists()]
    if existing:
        for path in existing:
            try:
                found = omezarr.get_attrs(path).get("run")
            except Exception:
                found = None
            if found != json.loads(json.dumps(fingerprint)):
                raise EmsegError(
                    f"{path}: an unfinished run with other inputs or settings is there; remove it to start again"
                )
        if len(existing) == len(job.stores):
            return True
        for path in existing:  # some stores missing: nothing can be trusted, start over
            shutil.rmtree(path)
    source = job.source
    for kind, path in job.stores.items():
        omezarr.create_ome_zarr(
            Path(path), source.shape, VOLUME_OUTPUTS[kind], job.chunk, source.scale, source.unit,
            labels=kind == "cells", version=version, name=f"{source.stem} {kind}",
        )
        omezarr.set_attrs(Path(path), run=fingerprint, complete=False)
    planes = (1, job.chunk, job.chunk)
    if "membrane" not in job.stores:
        _new_array(job.first_store, WORK_MASK, source.shape, planes, "uint8")
    if job.keeps_membrane:
        _new_array(job.first_store, WORK_MEMBRANE, source.shape, planes, "float32")
    if "cells" in job.stores:
        _, band = job.stitch
        _new_array(job.first_store, WORK_CELLS, source.shape, planes, "uint32")
        _new_array(job.first_store, WORK_BANDS, (blocks, 4, 2 * band, job.side), (1, 4, 2 * band, job.side), "uint32")
        _new_array(job.first_store, WORK_COUNTS, (blocks,), (1,), "uint32")  # one chunk per block, as the done marks
    for stage in ("predict", "label", "cells"):
        _new_array(job.first_store, f"{DONE_GROUP}/{stage}", (blocks,), (1,), "uint8")
    return False


def _pending(job: VolumeJob, stage: str, blocks: list[Block]) -> list[Block]:
    done = np.asarray(_done(job, stage)[:])
    return [block for block in blocks if not done[block.index]]


def predict_volume(
    job: VolumeJob,
    finals: dict[str, Path],
    engine: Any,
    *,
    version: str = "0.4",
    progress: Callable[[str, int, int], object] | None = None,
) -> VolumeSummary:
    """Run every pass of `job` on `engine` and move its stores onto `finals`.

    Args:
        job: The volume run.
        finals: Each kind's final store path.
        engine: Runs the block tasks ([`emseg.inference.volume.engine`][emseg.inference.volume.engine]).
        version: The OME-Zarr version of new stores.
        progress: Called as `progress(pass_name, done, total)` after each block task.

    Returns:
        What the run did.

    Raises:
        EmsegError: The staging stores belong to another run (other inputs or settings), or
            the data is bad (NaN or infinite values).
    """
    start = time.perf_counter()
    source = job.source
    blocks = block_grid(source.shape, job.block_size or job.request.block_size)
    resumed = _prepare_stores(job, version, len(blocks))

    def run(name: str, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
        results = []
        for done, result in enumerate(engine.map(fn, items), start=1):
            results.append(result)
            if progress is not None:
                progress(name, done, len(items))
        return results

    to_predict = _pending(job, "predict", blocks)
    skipped = len(blocks) - len(to_predict)
    if to_predict:
        context = _tiles(job)[1].context  # a model that reads neighbouring sections needs their statistics too
        slices = sorted({j for block in to_predict for j in neighbour_indices(block.z, source.shape[0], context)})
        stats = {z: (mean, std) for z, mean, std in run("stats", stats_task, [(job, z) for z in slices])}

        def block_stats(z: int) -> Stats:
            return tuple(stats[j] for j in neighbour_indices(z, source.shape[0], context)) if context else stats[z]

        run("predict", predict_task, [(job, block, block_stats(block.z)) for block in to_predict])
    cells = 0
    if "cells" in job.stores:
        run("label", label_task, [(job, block) for block in _pending(job, "label", blocks)])
        counts = np.asarray(_open(job.first_store, WORK_COUNTS, "r")[:])
        joins = run("joins", joins_task, [(job, *pair) for pair in neighbours(blocks)])
        tables = relabel_tables({block.index: int(counts[block.index]) for block in blocks}, joins)
        cells = int(max((int(t.max(initial=0)) for t in tables.values()), default=0))
        pending = _pending(job, "cells", blocks)
        run("cells", cells_task, [(job, block, tables[block.index]) for block in pending])
    for kind, path in job.stores.items():
        for level in range(1, omezarr.level_count(Path(path))):
            shape = omezarr.open_level(Path(path), level, mode="r").shape
            size = job.chunk * max(1, BLOCK_SIZE // job.chunk)  # whole chunks of this level, as for the blocks
            regions = [
                (path, kind, level, z, y0, x0, size)
                for z in range(shape[0])
                for y0 in range(0, shape[1], size)
                for x0 in range(0, shape[2], size)
            ]
            run(f"pyramid {kind} {level}", pyramid_task, regions)
    import zarr

    group = zarr.open_group(job.first_store, mode="r+")
    for name in (DONE_GROUP, WORK_MASK, WORK_MEMBRANE, WORK_CELLS, WORK_BANDS, WORK_COUNTS):
        if name in group:
            del group[name]
    written = []
    for kind, path in job.stores.items():
        omezarr.set_attrs(Path(path), complete=True, cells=cells if kind == "cells" else None)
        final = finals[kind]
        shutil.rmtree(final, ignore_errors=True)
        os.replace(path, final)
        written.append(final)
    return VolumeSummary(
        blocks=len(blocks),
        skipped=skipped if resumed else 0,
        slices=source.shape[0],
        megapixels=source.shape[0] * source.shape[1] * source.shape[2] / 1e6,
        seconds=time.perf_counter() - start,
        cells=cells,
        written=written,
    )


def staging_stores(finals: dict[str, Path]) -> dict[str, str]:
    """The staging store of each final store (`.<name>.partial` beside it)."""
    return {kind: str(partial_folder(path)) for kind, path in finals.items()}


def discard_staging(job: VolumeJob) -> None:
    """Remove the staging stores (after a failure that a restart cannot mend)."""
    for path in job.stores.values():
        shutil.rmtree(path, ignore_errors=True)


# -- what `emseg predict` calls -------------------------------------------------------------------

#: a TIFF with more pixel bytes than this goes the block-wise way (it would not fit in memory whole)
TIFF_VOLUME_BYTES = 2**30


def tiff_is_volume(path: Path) -> bool:
    """Whether a TIFF is too big to read whole (over `TIFF_VOLUME_BYTES` of pixels, from its header; nothing is decoded)."""
    import tifffile

    from emseg.io.images import _tifffile_warnings

    try:
        with _tifffile_warnings(), tifffile.TiffFile(path) as tif:  # a damaged file's warnings: the reader's to report
            series = tif.series[0]
            return int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize > TIFF_VOLUME_BYTES
    except Exception:  # unreadable: the in-memory path's checks name the problem
        return False


def input_block_size(block_size: int, factors: tuple[float, float] | None) -> int:
    """The block side on the input's grid for blocks of `block_size` pixels at the model's scale.

    `block_size / factor` (the larger factor: the block fits the model's side on both axes),
    whole chunks of `CHUNK` above `CHUNK` (blocks never share a chunk), at least 16 pixels.
    """
    if factors is None:
        return block_size
    side = block_size / max(factors)
    if side >= CHUNK:
        return int(side // CHUNK) * CHUNK
    return max(16, int(side))


def plan_volume(source: VolumeSource, model_path: Path, request: VolumeRequest, out_dir: Path) -> tuple[VolumeJob, dict[str, Path]]:
    """The job of one volume input, and its final store paths (nothing is written yet)."""
    finals = {kind: out_dir / name for kind, name in store_names(source.stem, request.outputs).items()}
    block_size = input_block_size(request.block_size, request.rescale)
    job = VolumeJob(
        source=source,
        model_path=str(Path(model_path).resolve()),
        model_sha256=sha256_of(model_path),
        stores=staging_stores(finals),
        request=request,
        chunk=chunk_for(block_size),
        block_size=block_size,
    )
    return job, finals


def run_volume(job: VolumeJob, finals: dict[str, Path], engine: Any, version: str, show_bar: bool) -> VolumeSummary:
    """[`predict_volume`][emseg.inference.volume.blockwise.predict_volume] with a progress bar over the blocks of each pass.

    Bad data (an [`EmsegError`][emseg.errors.EmsegError]) removes the staging stores: a restart
    would meet it again.
    """
    from tqdm import tqdm

    with tqdm(total=0, unit="block", file=sys.stderr, disable=not show_bar, dynamic_ncols=True) as bar:

        current = [""]

        def progress(name: str, done: int, total: int) -> None:
            if current[0] != name:
                current[0] = name
                bar.reset(total=total)
                bar.set_description(name, refresh=False)
            bar.update(1)

        try:
            return predict_volume(replace(job, threads=getattr(engine, "threads_per_worker", 0)), finals, engine, version=version, progress=progress)
        except EmsegError:
            discard_staging(job)  # bad data: a restart would meet it again
            raise
