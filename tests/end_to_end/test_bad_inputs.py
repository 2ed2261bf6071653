"""Bad inputs through every entry point, as tests as data: a matrix of breakers x inputs, plus bespoke cases.

Every case starts from the same valid workspace (the synthetic ISBI-like source, its
fetched stacks and PNGs, a split, an empty augmented folder, a tiny model, a score pair,
a predict input, ``params.yaml`` on the tiny profile), breaks ONE thing, runs one entry
point from the workspace root and checks the contract of :class:`emseg.errors.EmsegError`:

* exit status 2, no traceback;
* exactly one line on stderr, ``<prog>: error: ...``, naming the offending file or key;
* nothing new, changed or removed in the workspace (no half-written output).

The cases come from tables:

* :data:`ROWS` x :data:`BREAKERS`: each row is one input file of one entry point (e.g.
  ``emseg score``'s LABELS, ``stages/fetch.py``'s three source stacks) with the family of
  breakers that fits its format (TIFF stack, model file, JSON, PNG slice); each breaker is
  a small function that damages the file at a path. :data:`EXCLUDED` lists the cells that
  are no bad input at all, with the reason.
* :data:`BESPOKE`: the cases that do not fit the matrix (stacks that do not match each
  other, bad values, params errors), each a small function with an id.

The entry points run in this process (``emseg.cli.main.main`` and the stage scripts
through :mod:`runpy`), with the warnings and log records a bare interpreter would print
counted as stderr lines; two cases also run as real processes, end to end.

``EMSEG_ERROR_TABLE=cases.md pytest tests/end_to_end/test_bad_inputs.py`` also writes a markdown
table of one error line per kind of case (as in the README).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import runpy
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from emseg.cli.main import main as emseg_main
from emseg.config.layout import AUGMENTED_IMAGES, AUGMENTED_LABELS, RAW_NAMES, slice_name
from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.io.atomic import write_json
from emseg.io.synthetic import write_isbi_like_source
from emseg.networks.architectures import build_network, resolve_kwargs
from emseg.networks.model_file import ModelConfig, save_model
from emseg.preprocessing.convert import convert
from emseg.preprocessing.fetch import fetch
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION
from emseg.preprocessing.split import make_split

from conftest import REPO_ROOT, TINY_PROFILE, TINY_UNET, merge, run, synthetic_stack, tif

SLICES, HEIGHT, WIDTH = 8, 96, 80  # write_isbi_like_source's defaults
#: every command writes only under this folder of the workspace; a refused one must not create it
OUT = "out"
#: on top of the tiny profile: train and evaluate on one CPU thread, the source inside the workspace
QUICK = {
    "data": {"source": "source"},
    "train": {"steps": 2, "checkpoint_every": 2, "device": "cpu", "threads": 1},
    "evaluate": {"device": "cpu", "threads": 1},
}

#: each entry point as dvc.yaml (or a user) calls it, from the workspace root, outputs under out/
COMMANDS: dict[str, list[str]] = {
    "score": ["emseg", "score", "labels.tif", "proba.tif", "--json", f"{OUT}/score.json"],
    "predict": ["emseg", "predict", "good.tif", "input.tif", "--model", "models/model.pt", "--out", OUT],
    "emseg_train": ["emseg", "train", "good.tif", "good-labels.tif", "--params", "params.yaml", "--out", f"{OUT}/model.pt"],
    "fetch": ["stages/fetch.py", "--out", f"{OUT}/raw"],
    "convert": ["stages/convert.py", "--raw", "data/raw", "--out", f"{OUT}/png"],
    "split": ["stages/split.py", "--png", "data/png", "--out", f"{OUT}/split.json"],
    "augment": [
        "stages/augment.py", "--png", "data/png", "--split", "data/split.json",
        "--out", f"{OUT}/augmented", "--preview", f"{OUT}/plots/augment_preview.png",
    ],
    "train": [
        "stages/train.py", "--png", "data/png", "--split", "data/split.json", "--augmented", "data/augmented",
        "--model", f"{OUT}/model.pt", "--live", f"{OUT}/dvclive", "--checkpoints", f"{OUT}/checkpoints",
    ],
    "evaluate": [
        "stages/evaluate.py", "--png", "data/png", "--split", "data/split.json", "--model", "models/model.pt",
        "--metrics", f"{OUT}/evaluate.json", "--plots", f"{OUT}/plots", "--eval", f"{OUT}/eval",
        "--segment", f"{OUT}/segment.json",
    ],
}


def entry_name(command: str) -> str:
    """How the README names an entry point: ``emseg score`` or ``stages/fetch.py``."""
    argv = COMMANDS[command]
    return f"emseg {argv[1]}" if argv[0] == "emseg" else argv[0]


# --------------------------------------------------------------------------------------
# the valid workspace every case starts from
# --------------------------------------------------------------------------------------


def write_params(root: Path, overrides: dict | None = None) -> None:
    """params.yaml: the repository's, on the tiny profile and :data:`QUICK`, plus ``overrides``."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params = merge(merge(merge(params, TINY_PROFILE), QUICK), overrides or {})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def save_tiny_model(path: Path) -> None:
    """An emseg model file of the tiny U-Net (untrained: only its loading matters here)."""
    kwargs = resolve_kwargs("unet", TINY_UNET)
    save_model(path, build_network("unet", kwargs), ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: the pipeline's inputs up to a model, made with the package's own functions."""
    root = tmp_path_factory.mktemp("prepared")
    write_params(root)
    params = parse_params(yaml.safe_load((root / "params.yaml").read_text()))
    write_isbi_like_source(root / "source", SLICES, 3, HEIGHT, WIDTH)
    fetch(str(root / "source"), root / "data" / "raw", dict(RAW_NAMES))
    convert(root / "data" / "raw", root / "data" / "png")
    split = make_split(SLICES, params.split, params.base.seed)
    write_json(root / "data" / "split.json", {"strategy": params.split.strategy, "seed": params.base.seed, **split})
    for part in (AUGMENTED_IMAGES, AUGMENTED_LABELS):
        (root / "data" / "augmented" / part).mkdir(parents=True)
    save_tiny_model(root / "models" / "model.pt")
    _, labels = synthetic_stack(3, 32, 32, seed=5)  # emseg score's pair
    tif(root / "labels.tif", labels)
    tif(root / "proba.tif", (labels / 255.0).astype(np.float32))
    for name, seed in (("good.tif", 6), ("input.tif", 7)):  # emseg predict's inputs
        tif(root / name, synthetic_stack(2, 48, 40, seed=seed)[0])
    tif(root / "good-labels.tif", synthetic_stack(2, 48, 40, seed=6)[1])  # emseg train's labels of good.tif
    return root


@pytest.fixture
def workspace(tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of ``prepared``, made the working directory (paths are typed relative to it)."""
    root = tmp_path / "work"
    shutil.copytree(prepared, root)
    monkeypatch.chdir(root)
    return root


# --------------------------------------------------------------------------------------
# breakers: each damages the (valid) file at a path in one way
# --------------------------------------------------------------------------------------


def missing(path: Path) -> None:
    """The file is not there."""
    path.unlink()


def empty(path: Path) -> None:
    """The file has zero bytes (an interrupted copy)."""
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    """The first half of the file: header intact, data cut."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def text(path: Path) -> None:
    """A text file under the expected name."""
    path.write_text("these are not the pixels you are looking for\n")


def four_d(path: Path) -> None:
    """A 4-D TIFF: two channels per slice."""
    stack = tifffile.imread(path)
    tif(path, np.stack([stack, stack], axis=1))


def rgb(path: Path) -> None:
    """The stack saved as RGB, where a grey one is required."""
    tif(path, np.stack([tifffile.imread(path)] * 3, axis=-1), photometric="rgb")


def zero_size(path: Path) -> None:
    """A TIFF whose slices are 0 pixels high."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that it writes a non-conformant TIFF: that is the point
        tif(path, np.zeros((2, 0, 16), np.uint8))


def cut_between_pages(path: Path) -> None:
    """Saved page by page without shape metadata, cut before its last page: tifffile reads it short, only logging."""
    stack = tifffile.imread(path)
    with tifffile.TiffWriter(path) as writer:
        for page in stack:
            writer.write(page, photometric="minisblack", contiguous=False, metadata=None)
    with tifffile.TiffFile(path) as written:
        assert len(written.pages) == len(stack) > 1
        last = written.pages[-1].offset
    path.write_bytes(path.read_bytes()[:last])


def tiff_image(path: Path) -> None:
    """A real TIFF image where a model file belongs (arguments mixed up)."""
    tif(path, synthetic_stack(1, 32, 32)[0])


def foreign_checkpoint(path: Path) -> None:
    """A plain PyTorch state dict, as another tool would save it."""
    torch.save(build_network("unet", TINY_UNET).state_dict(), path)


BREAKERS: dict[str, Callable[[Path], None]] = {
    b.__name__: b
    for b in (missing, empty, truncated, text, four_d, rgb, zero_size, cut_between_pages, tiff_image, foreign_checkpoint)
}
#: the breakers that fit each format of input file
TIFF = ("missing", "empty", "truncated", "text", "four_d", "rgb", "zero_size", "cut_between_pages")
MODEL = ("missing", "empty", "truncated", "text", "tiff_image", "foreign_checkpoint")
FILE = ("missing", "empty", "truncated", "text")  # JSON, PNG


# --------------------------------------------------------------------------------------
# the matrix: (entry point, input file) rows x the breakers that fit the file's format
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One input file of one entry point (relative to the workspace), and the breakers that fit its format."""

    command: str
    target: str
    format: str
    breakers: tuple[str, ...]


TEST_SLICE = f"data/png/train/images/{slice_name(7)}"  # contiguous split of 8: test 6-7, val 5, train 0-4
UNLABELLED_SLICE = f"data/png/test/images/{slice_name(1)}"
ROWS: list[Row] = [
    Row("score", "labels.tif", "TIFF", TIFF),
    Row("score", "proba.tif", "TIFF", TIFF),
    Row("predict", "input.tif", "TIFF", TIFF),  # after good.tif: nothing may be written for that one either
    Row("predict", "models/model.pt", "model file", MODEL),
    Row("emseg_train", "good.tif", "TIFF", TIFF),
    Row("emseg_train", "good-labels.tif", "TIFF", TIFF),
    *(Row("fetch", f"source/{name}", "TIFF", TIFF) for name in RAW_NAMES.values()),
    *(Row("convert", f"data/raw/{name}", "TIFF", TIFF) for name in RAW_NAMES.values()),
    *(Row(stage, "data/split.json", "split JSON", FILE) for stage in ("augment", "train", "evaluate")),
    Row("augment", f"data/png/train/labels/{slice_name(3)}", "PNG slice", FILE),
    Row("train", f"data/png/train/images/{slice_name(5)}", "PNG slice", FILE),
    Row("evaluate", TEST_SLICE, "PNG slice", FILE),
    Row("evaluate", UNLABELLED_SLICE, "PNG slice", FILE),
    Row("evaluate", "models/model.pt", "model file", MODEL),
]
#: (command, target, breaker) cells that are no bad input, and why
EXCLUDED: dict[tuple[str, str, str], str] = {
    ("predict", "input.tif", "rgb"): "emseg predict makes colour inputs grey, by design",
}
CELLS = [
    pytest.param(row, breaker, id=f"{row.command}:{row.target}:{breaker}")
    for row in ROWS
    for breaker in row.breakers
    if (row.command, row.target, breaker) not in EXCLUDED
]


# --------------------------------------------------------------------------------------
# bespoke cases: each damages the workspace (root) in a way the matrix does not
# --------------------------------------------------------------------------------------


def with_nan(values: np.ndarray) -> np.ndarray:
    """A copy with one NaN pixel in slice 2."""
    values = values.copy()
    values[1, 5, 7] = np.nan
    return values


def grey_corner(labels: np.ndarray) -> np.ndarray:
    """0/255 labels with a corner of 128 in every slice: a third value."""
    labels = labels.copy()
    labels[:, :10, :10] = 128
    return labels


def three_values(labels: np.ndarray) -> np.ndarray:
    """0/1 labels with a corner of 2 in every slice (an instance map, say)."""
    labels = (labels > 0).astype(np.uint8)
    labels[:, :5, :5] = 2
    return labels


def mixed_series(root: Path) -> None:
    """A TIFF of two image series whose slices differ in shape (one slice appended by another tool)."""
    path = root / "source" / RAW_NAMES["train_images"]
    images = tifffile.imread(path)
    tifffile.imwrite(path, images[:-1], photometric="minisblack")
    tifffile.imwrite(path, images[-1, :32, :32], photometric="minisblack", append=True)


def bad_yaml(root: Path) -> None:
    """params.yaml that is no YAML."""
    (root / "params.yaml").write_text("data:\n  source: [unclosed\n")


def with_params(overrides: dict) -> Callable[[Path], None]:
    """A breaker writing params.yaml with ``overrides``."""
    return lambda root: write_params(root, overrides)


def tif_change(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], None]:
    """A breaker rewriting the workspace's TIFF stack ``name`` as ``change`` makes it."""

    def breaks(root: Path) -> None:
        tif(root / name, change(tifffile.imread(root / name)))

    return breaks


def removed(name: str) -> Callable[[Path], None]:
    """A breaker removing the workspace's file or folder ``name``."""

    def breaks(root: Path) -> None:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return breaks


def written(name: str, text: str) -> Callable[[Path], None]:
    """A breaker writing the workspace's file ``name`` with ``text``."""
    return lambda root: (root / name).write_text(text)


def nothing(root: Path) -> None:
    """The workspace stays valid: the command line itself is the bad input."""


@dataclass(frozen=True)
class Bespoke:
    """A case outside the matrix: what it breaks, how, and a regex the error line must match."""

    id: str
    command: str
    what: str
    breaks: Callable[[Path], None]
    expect: str
    args: tuple[str, ...] = ()  # appended to the command line (argparse: the last --model wins)


RAW_LABELS, RAW_TEST = (f"data/raw/{RAW_NAMES[stack]}" for stack in ("train_labels", "test_images"))
SOURCE_LABELS = f"source/{RAW_NAMES['train_labels']}"
BESPOKE: list[Bespoke] = [
    # emseg score
    Bespoke("score-fewer_proba_slices", "score", "labels and probabilities of different lengths",
            tif_change("proba.tif", lambda a: a[:2]), r"slice count mismatch: labels\.tif has 3 .*proba\.tif has 2"),
    Bespoke("score-narrower_proba", "score", "labels and probabilities of different shapes",
            tif_change("proba.tif", lambda a: a[:, :, :24]), r"slice size mismatch: labels\.tif .*proba\.tif is 32x24"),
    Bespoke("score-nan_in_proba", "score", "NaN in the probability map",
            tif_change("proba.tif", with_nan), r"proba\.tif: probability map contains NaN \(first in slice 2\)"),
    Bespoke("score-negative_labels", "score", "negative labels",
            tif_change("labels.tif", lambda a: a.astype(np.int16) - 1), r"labels\.tif: .*negative"),
    Bespoke("score-no_cell_in_labels", "score", "labels that are all 0 (membrane)",
            tif_change("labels.tif", np.zeros_like), r"labels\.tif: labels hold no cell \("),
    # emseg predict
    Bespoke("predict-model_is_an_image", "predict", "--model pointed at a TIFF image",
            nothing, r"input\.tif: not an emseg model file \(a TIFF image\)", ("--model", "input.tif")),
    Bespoke("predict-renamed_output_kind", "predict", "--outputs with the old kind name mask (now membrane)",
            nothing, r"--outputs: unknown output mask", ("--outputs", "mask")),
    # stages/fetch.py
    Bespoke("fetch-mixed_series", "fetch", "TIFF whose image series differ in slice shape",
            mixed_series, r"source/train-volume\.tif: TIFF holds 2 image series"),
    Bespoke("fetch-grey_levels_in_labels", "fetch", "non-binary labels (0/128/255)",
            tif_change(SOURCE_LABELS, grey_corner), r"source/train-labels\.tif: labels must be binary"),
    Bespoke("fetch-fewer_labels", "fetch", "image and label stacks of different lengths",
            tif_change(SOURCE_LABELS, lambda a: a[:-1]), r"source/train-labels\.tif: .*does not match"),
    Bespoke("fetch-narrower_labels", "fetch", "image and label stacks of different shapes",
            tif_change(SOURCE_LABELS, lambda a: a[:, :, :64]), r"source/train-labels\.tif: .*does not match"),
    Bespoke("fetch-missing_source", "fetch", "data.source folder missing",
            with_params({"data": {"source": "no-such-folder"}}), r"no-such-folder: .*data\.source"),
    Bespoke("fetch-unknown_key", "fetch", "unknown params key (data.sourse)",
            with_params({"data": {"sourse": "source"}}), r"params\.yaml: data\.sourse: unknown key"),
    Bespoke("fetch-bad_yaml", "fetch", "params.yaml that is no YAML", bad_yaml, r"params\.yaml: not valid YAML"),
    Bespoke("fetch-missing_params", "fetch", "params file missing",
            removed("params.yaml"), r"params\.yaml: params file not found"),
    # stages/convert.py
    Bespoke("convert-narrower_labels", "convert", "image and label stacks of different shapes",
            tif_change(RAW_LABELS, lambda a: a[:, :64]), r"data/raw/train-labels\.tif: shape .* does not match"),
    Bespoke("convert-three_label_values", "convert", "non-binary labels (0/1/2)",
            tif_change(RAW_LABELS, three_values), r"data/raw/train-labels\.tif: labels must be binary"),
    Bespoke("convert-float_volume", "convert", "float test volume (unsupported pixel type)",
            tif_change(RAW_TEST, lambda a: a.astype(np.float32) / 255), r"data/raw/test-volume\.tif: pixel type float32"),
    # stages/split.py
    Bespoke("split-too_large", "split", "split larger than the data (split.test_size: 8 of 8 slices)",
            with_params({"split": {"test_size": SLICES}}), r"split.*test_size 8"),
    Bespoke("split-cv_layout_too_large", "split", "a fold layout the data cannot hold (cv.val_size: 6 beside 4-slice test blocks)",
            with_params({"cv": {"val_size": 6}}),
            r"params cv: 8 labelled slices cannot hold 2 test blocks, each with 1 guard", args=("--fold", "0")),
    Bespoke("split-cv_unknown_fold", "split", "--fold that params cv.folds does not list",
            nothing, r"params cv\.folds: fold 7 is not one of \[0, 1\]", args=("--fold", "7")),
    # stages/train.py
    Bespoke("evaluate-unknown_segmentation", "evaluate", "unknown segmentation method (segment.method: mwz)",
            with_params({"segment": {"method": "mwz"}}), r"params\.yaml: segment\.method: Input should be .*\(got 'mwz'\)"),
    Bespoke("evaluate-mws_of_a_boundary_model", "evaluate", "the Mutex Watershed asked of a boundary model",
            with_params({"model": {"target": "boundary"}, "segment": {"method": "mws"}}), r"params\.yaml: segment\.method: mws needs an affinity model"),
    Bespoke("evaluate-unknown_segment_setting", "evaluate", "a setting the method does not have (segment.gasp.bta)",
            with_params({"segment": {"gasp": {"bta": 0.5}}}), r"params\.yaml: segment\.gasp: bta not a setting of gasp"),
    Bespoke("predict-pixel_size_without_unit", "predict", "--pixel-size without a unit",
            nothing, r"--pixel-size '4': give a number and a unit", args=("--pixel-size", "4")),
    Bespoke("predict-pixel_size_not_positive", "predict", "--pixel-size that is not positive",
            nothing, r"--pixel-size '0nm': must be positive", args=("--pixel-size", "0nm")),
    Bespoke("predict-unknown_cells_method", "predict", "--cells naming no method",
            nothing, r"--cells: unknown method 'mwz'; registered: components", args=("--cells", "mwz")),
    Bespoke("train-missing_augmented", "train", "augmented folder missing",
            removed("data/augmented"), r"data/augmented: augmented slices folder not found"),
    Bespoke("train-stop_past_the_schedule", "train", "a chosen step past train.steps (--stop-at step.json: 9 of 2)",
            written("step.json", '{"step": 9}'), r"step\.json: no step within the schedule's 2 \(train\.steps\) under 'step', got 9",
            args=("--stop-at", "step.json")),
    Bespoke("train-zero_steps", "train", "zero step count (train.steps: 0)",
            with_params({"train": {"steps": 0}}), r"params\.yaml: train\.steps: Input should be greater than 0"),
    Bespoke("train-negative_steps", "train", "negative step count (train.steps: -5)",
            with_params({"train": {"steps": -5}}), r"params\.yaml: train\.steps: Input should be greater than 0"),
    Bespoke("train-unknown_key", "train", "unknown params key (train.stpes)",
            with_params({"train": {"stpes": 10}}), r"params\.yaml: train\.stpes: unknown key"),
    Bespoke("train-unknown_loss", "train", "unknown loss (train.loss: hinge)",
            with_params({"train": {"loss": "hinge"}}),
            r"params\.yaml: train\.loss: Input should be .*'dice_ce'.*\(got 'hinge'\)"),
    Bespoke("train-unknown_arch", "train", "unknown architecture (model.arch: resnet9000)",
            with_params({"model": {"arch": "resnet9000"}}),
            r"params\.yaml: model\.arch: Input should be .*'unet'.*\(got 'resnet9000'\)"),
    Bespoke("train-unregistered_arch_block", "train", "block of an unregistered architecture (model.unett)",
            with_params({"model": {"arch": "unet", "unett": {"channels": [8, 16]}}}),
            r"params\.yaml: model\.unett: not a registered architecture \(registered: .*unet"),
    Bespoke("train-bad_network_argument", "train", "argument the network does not take (model.unet: {chanels: ...})",
            with_params({"model": {"unet": {"chanels": [4, 8, 16]}}}), r"params\.yaml: model\.unet: chanels not accepted"),
    Bespoke("train-bad_network_value", "train", "argument value the network rejects (model.unet.strides too short)",
            with_params({"model": {"unet": {"strides": [2]}}}), r"params\.yaml: model\.unet: "),
    Bespoke("train-patch_too_large", "train", "patch larger than the image (train.patch_size: 128 vs 96x80)",
            with_params({"train": {"patch_size": 128}}), r"train\.patch_size"),
]


# --------------------------------------------------------------------------------------
# running a case and checking the contract
# --------------------------------------------------------------------------------------


def exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives: None is 0, a message 1."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def invoke(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run ``emseg ...`` or ``stages/<name>.py ...`` in this process, as its script would; the exit status."""
    threads = torch.get_num_threads()  # a stage may set it: keep this process as it was
    try:
        if argv[0] == "emseg":
            return emseg_main(argv[1:])
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(REPO_ROOT / argv[0]), run_name="__main__")
        return 0
    except SystemExit as exc:  # the stages' sys.exit(status), argparse's usage errors
        return exit_status(exc.code)
    finally:
        torch.set_num_threads(threads)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"(logged) {record.name}: {record.getMessage()}")


@contextlib.contextmanager
def stray_output() -> Iterator[list[str]]:
    """The warnings and log records that a bare interpreter prints on stderr, which pytest would swallow.

    Filled when the block ends; filters as Python's defaults (deprecations are silent).
    """
    stray: list[str] = []
    records = _Records()
    logging.getLogger().addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            yield stray
    finally:
        logging.getLogger().removeHandler(records)
    stray += [f"(warning) {w.category.__name__}: {w.message}" for w in caught] + records.lines


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``root`` (Python caches aside), with its kind, size and mtime."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.relative_to(root).parts or path.suffix == ".pyc":
            continue
        stat = path.lstat()
        seen[path.relative_to(root).as_posix()] = ("dir", 0, 0) if path.is_dir() else ("file", stat.st_size, stat.st_mtime_ns)
    return seen


def assert_unchanged(before: dict, after: dict, report: str) -> None:
    """No file or folder new, removed or changed."""
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (new or gone or changed), f"new {new}, removed {gone}, changed {changed}\n{report}"


def assert_one_error_line(prog: str, status: int, stderr: str, lines: list[str], expect: str, report: str) -> None:
    """Exit status 2, no traceback, one line ``prog: error: ...`` that matches ``expect``."""
    assert status == 2, report
    assert "Traceback" not in stderr, report
    assert len(lines) == 1, report
    assert lines[0].startswith(f"{prog}: error: "), report
    assert re.search(expect, lines[0]), f"no match for {expect!r}\n{report}"


#: case id -> (what, entry point, error line), for EMSEG_ERROR_TABLE
ERROR_LINES: dict[str, tuple[str, str, str]] = {}


def check_refused(
    command: str, args: tuple[str, ...], expect: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run the command in this process against the current workspace; assert the contract; its error line."""
    root = Path.cwd()
    argv = [*COMMANDS[command], *args]
    before = snapshot(root)
    with stray_output() as stray:
        status = invoke(argv, monkeypatch)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()] + stray
    report = f"{' '.join(argv)}\nstatus {status}\nstdout:\n{captured.out}\nstderr:\n" + "\n".join(lines)
    assert_one_error_line(argv[0], status, captured.err, lines, expect, report)
    assert_unchanged(before, snapshot(root), report)
    return lines[0].replace(f"{root}{os.sep}", "")


# --------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "breaker"), CELLS)
def test_matrix(
    row: Row, breaker: str, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each breaker applied to each input it fits: one error line naming that input, nothing written."""
    BREAKERS[breaker](workspace / row.target)
    line = check_refused(row.command, (), re.escape(row.target), monkeypatch, capsys)
    doc = BREAKERS[breaker].__doc__.splitlines()[0].rstrip(".")
    what = f"{row.format}, {breaker}: {doc[0].lower()}{doc[1:]}"
    ERROR_LINES.setdefault(f"{row.format}:{breaker}", (what, entry_name(row.command), line))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in BESPOKE])
def test_bespoke(case: Bespoke, workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The cases outside the matrix, each with the line it must print."""
    case.breaks(workspace)
    line = check_refused(case.command, case.args, case.expect, monkeypatch, capsys)
    ERROR_LINES[case.id] = (case.what, entry_name(case.command), line)


@pytest.mark.parametrize(
    ("command", "target", "breaker"),
    [("score", "labels.tif", "text"), ("fetch", f"source/{RAW_NAMES['test_images']}", "cut_between_pages")],
    ids=["emseg", "stage"],
)
def test_as_a_real_process(command: str, target: str, breaker: str, workspace: Path) -> None:
    """End to end, as a subprocess: the real exit status and everything the process wrote on stderr."""
    BREAKERS[breaker](workspace / target)
    argv = COMMANDS[command]
    argv = argv if argv[0] == "emseg" else [sys.executable, str(REPO_ROOT / argv[0]), *argv[1:]]
    before = snapshot(workspace)
    done = run(argv, workspace, check=False)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    report = f"{' '.join(argv)}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert_one_error_line(COMMANDS[command][0], done.returncode, done.stderr, lines, re.escape(target), report)
    assert_unchanged(before, snapshot(workspace), report)


def test_debug_lets_the_error_through(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With --debug the EmsegError propagates (so Python prints its traceback) from emseg and from a stage."""
    text(workspace / "labels.tif")
    with pytest.raises(EmsegError, match="labels.tif"):
        emseg_main(["--debug", "score", "labels.tif", "proba.tif"])
    write_params(workspace, {"data": {"sourse": "source"}})
    monkeypatch.setattr(sys, "argv", [*COMMANDS["fetch"], "--debug"])
    with pytest.raises(EmsegError, match="data.sourse"):
        runpy.run_path(str(REPO_ROOT / "stages" / "fetch.py"), run_name="__main__")


def test_emseg_score_starts_without_torch(tmp_path: Path) -> None:
    """Every `emseg` command builds every subcommand's parser: torch and MONAI stay in predict's and models' run()."""
    code = (
        "import sys; from emseg.cli.main import build_parser; import emseg.cli.score; build_parser(); "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    done = run([sys.executable, "-c", code], tmp_path)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.fixture(scope="module", autouse=True)
def error_table() -> Iterator[None]:
    """With EMSEG_ERROR_TABLE=FILE, write the markdown table of one error line per kind of case."""
    yield
    target = os.environ.get("EMSEG_ERROR_TABLE")
    if target and ERROR_LINES:
        rows = ["| case | entry point | error line |", "|---|---|---|"]
        for what, entry, line in ERROR_LINES.values():
            line = line.replace("|", "\\|")
            fence = "``" if "`" in line else "`"
            rows.append(f"| {what} | `{entry}` | {fence}{line}{fence} |")
        Path(target).write_text("\n".join(rows) + "\n")
