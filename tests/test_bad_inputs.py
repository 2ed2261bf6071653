"""A corpus of bad inputs run through every entry point, as a user would run them.

Each case builds a valid workspace (synthetic ISBI-like stacks, the converted PNGs, a
split, a tiny model, a params file derived from the repository's ``params.yaml``), breaks
ONE thing, runs ``emseg ...`` or ``python stages/<stage>.py ...`` as a subprocess, and
checks the contract of :class:`emseg.errors.EmsegError`:

* exit status 2;
* exactly one non-empty line on stderr, naming the offending file or params key;
* no traceback (only with ``--debug``, checked separately);
* nothing new, changed or removed anywhere in the workspace (Python caches aside), in
  particular no (half-written) output.

``EMSEG_ERROR_TABLE=cases.md pytest tests/test_bad_inputs.py`` also writes the markdown
table of the cases and the error line each printed (as in the README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from emseg.io import write_json
from emseg.model_file import ModelConfig, save_model
from emseg.networks import build_network, resolve_kwargs
from emseg.normalization import DEFAULT_NORMALIZATION
from emseg.preprocessing.convert import convert
from emseg.preprocessing.fetch import RAW_NAMES, fetch
from emseg.preprocessing.split import make_split

from conftest import REPO_ROOT, TINY_UNET, synthetic_stack

TINY = {
    "split": {"test_size": 2, "val_size": 1},
    "augment": {"copies": 1, "preview_samples": 2},
    "model": {"unet": TINY_UNET},
    "train": {
        "steps": 2, "batch_size": 2, "patch_size": 32, "val_every": 2, "log_every": 2, "checkpoint_every": 2,
        "device": "cpu", "threads": 1,
    },
    "evaluate": {"tta": False, "overlays": 1, "pr_points": 20},
}
SLICES, HEIGHT, WIDTH = 8, 96, 80  # as tests/conftest.py's isbi_like_source
#: every command writes only under this folder of the workspace; a failed one must not create it
OUT = "out"
SUBPROCESS_ENV = {
    **os.environ,
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
}


# --------------------------------------------------------------------------------------
# the valid workspace every case starts from
# --------------------------------------------------------------------------------------


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def _tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, photometric=kwargs.pop("photometric", "minisblack"), **kwargs)
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """source/ (3 TIFFs), data/raw, data/png, data/split.json, data/augmented (empty), models/model.pt."""
    root = tmp_path_factory.mktemp("prepared")
    images, labels = synthetic_stack(SLICES, HEIGHT, WIDTH, seed=1)
    test, _ = synthetic_stack(3, HEIGHT, WIDTH, seed=100)
    source = root / "source"
    _tif(source / "train-volume.tif", images)
    _tif(source / "train-labels.tif", labels)
    _tif(source / "test-volume.tif", test)
    fetch(str(source), root / "data" / "raw", dict(RAW_NAMES))
    convert(root / "data" / "raw", root / "data" / "png", RAW_NAMES)
    write_json(root / "data" / "split.json", {"strategy": "contiguous", "seed": 42, **make_split(SLICES, "contiguous", 2, 1)})
    for part in ("images", "labels"):
        (root / "data" / "augmented" / part).mkdir(parents=True)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    save_model(root / "models" / "model.pt", build_network("unet", kwargs), ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32))
    return root


@dataclass
class Workspace:
    """One case's working directory (a copy of ``prepared``) and helpers to break it."""

    root: Path

    def params(self, overrides: dict | None = None) -> str:
        """Write params.yaml: the repository's, made tiny, pointed at source/, plus ``overrides``."""
        params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
        params = _merge(params, {**TINY, "data": {"source": str(self.root / "source")}})
        params = _merge(params, overrides or {})
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return "params.yaml"

    def raw_params(self, text: str) -> str:
        (self.root / "params.yaml").write_text(text)
        return "params.yaml"

    def stage(self, name: str, *args: str, params: str | None = None) -> list[str]:
        return [sys.executable, str(REPO_ROOT / "stages" / f"{name}.py"), "--params", params or self.params(), *args]

    @staticmethod
    def emseg(*args: str) -> list[str]:
        return [sys.executable, "-m", "emseg.cli.main", *args]

    def pair(self, n: int = 3, h: int = 32, w: int = 32) -> tuple[Path, Path]:
        """A valid (labels.tif, proba.tif) pair for ``emseg score``."""
        _, labels = synthetic_stack(n, h, w, seed=5)
        return _tif(self.root / "labels.tif", labels), _tif(self.root / "proba.tif", (labels / 255.0).astype(np.float32))

    def image(self, name: str = "image.tif") -> Path:
        images, _ = synthetic_stack(2, 48, 40, seed=7)
        return _tif(self.root / name, images)


# every stage as dvc.yaml calls it, its outputs moved under out/
def fetch_args(w: Workspace, params: str | None = None) -> list[str]:
    return w.stage("fetch", "--out", f"{OUT}/raw", params=params)


def convert_args(w: Workspace, raw: str = "data/raw", params: str | None = None) -> list[str]:
    return w.stage("convert", "--raw", raw, "--out", f"{OUT}/png", params=params)


def split_args(w: Workspace, params: str | None = None) -> list[str]:
    return w.stage("split", "--png", "data/png", "--out", f"{OUT}/split.json", params=params)


def augment_args(w: Workspace, split: str = "data/split.json", params: str | None = None) -> list[str]:
    return w.stage(
        "augment", "--png", "data/png", "--split", split, "--out", f"{OUT}/augmented",
        "--preview", f"{OUT}/plots/augment_preview.png", params=params,
    )


def train_args(w: Workspace, augmented: str = "data/augmented", params: str | None = None) -> list[str]:
    return w.stage(
        "train", "--png", "data/png", "--split", "data/split.json", "--augmented", augmented,
        "--model", f"{OUT}/model.pt", "--live", f"{OUT}/dvclive", "--checkpoints", f"{OUT}/checkpoints", params=params,
    )


def evaluate_args(w: Workspace, model: str = "models/model.pt", params: str | None = None) -> list[str]:
    return w.stage(
        "evaluate", "--png", "data/png", "--split", "data/split.json", "--model", model,
        "--metrics", f"{OUT}/evaluate.json", "--plots", f"{OUT}/plots", "--eval", f"{OUT}/eval", params=params,
    )


# --------------------------------------------------------------------------------------
# ways to break a file
# --------------------------------------------------------------------------------------


def make_empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncate(path: Path) -> Path:
    """Keep the first half of a valid file: header intact, pixel data cut."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def cut_between_pages(path: Path, stack: np.ndarray) -> Path:
    """A stack saved page by page without tifffile's shape metadata, cut just before its last page.

    tifffile reads what is left as a shorter stack and only logs a warning.
    """
    with tifffile.TiffWriter(path) as tif:
        for page in stack:
            tif.write(page, photometric="minisblack", contiguous=False, metadata=None)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == len(stack)
        last = tif.pages[-1].offset
    path.write_bytes(path.read_bytes()[:last])
    return path


def make_text(path: Path) -> Path:
    path.write_text("these are not the pixels you are looking for\n")
    return path


def make_4d(path: Path, n: int, h: int, w: int) -> Path:
    return _tif(path, np.zeros((n, 2, h, w), np.uint8))


def make_rgb(path: Path, labels: np.ndarray) -> Path:
    return _tif(path, np.stack([labels] * 3, axis=-1), photometric="rgb")


def make_zero_size(path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile warns that it writes a non-conformant TIFF: that is the point
        return _tif(path, np.zeros((2, 0, 16), np.uint8))


def non_emseg_checkpoint(path: Path) -> Path:
    """A plain PyTorch state dict, as another tool would save it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_network("unet", TINY_UNET).state_dict(), path)
    return path


def source_stacks(n: int = SLICES, h: int = HEIGHT, w: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_stack(n, h, w, seed=1)


# --------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    #: the file name or params key the one error line must contain
    names: str


@dataclass
class Case:
    id: str
    entry: str
    what: str
    build: Callable[[Workspace], Run] = field(repr=False)


CASES: list[Case] = []


def case(entry: str, what: str) -> Callable[[Callable[[Workspace], Run]], Callable[[Workspace], Run]]:
    def register(build: Callable[[Workspace], Run]) -> Callable[[Workspace], Run]:
        CASES.append(Case(build.__name__.removeprefix("case_"), entry, what, build))
        return build

    return register


# ---- emseg score ----------------------------------------------------------------------


@case("emseg score", "missing file")
def case_score_missing_file(w: Workspace) -> Run:
    _, proba = w.pair()
    return Run(w.emseg("score", "no-such-labels.tif", str(proba), "--json", f"{OUT}/score.json"), "no-such-labels.tif")


@case("emseg score", "empty file")
def case_score_empty_file(w: Workspace) -> Run:
    labels, proba = w.pair()
    make_empty(proba)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "proba.tif")


@case("emseg score", "truncated TIFF")
def case_score_truncated_tiff(w: Workspace) -> Run:
    labels, proba = w.pair()
    truncate(proba)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "proba.tif")


@case("emseg score", "text file named .tif")
def case_score_text_as_tif(w: Workspace) -> Run:
    labels, proba = w.pair()
    make_text(labels)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "labels.tif")


@case("emseg score", "4-D TIFF")
def case_score_4d_tiff(w: Workspace) -> Run:
    labels, proba = w.pair()
    make_4d(labels, 3, 32, 32)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "labels.tif")


@case("emseg score", "RGB labels")
def case_score_rgb_labels(w: Workspace) -> Run:
    labels, proba = w.pair()
    make_rgb(labels, tifffile.imread(labels))
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "labels.tif")


@case("emseg score", "labels and probabilities of different lengths")
def case_score_length_mismatch(w: Workspace) -> Run:
    labels, proba = w.pair()
    _tif(proba, tifffile.imread(proba)[:2])
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "proba.tif")


@case("emseg score", "labels and probabilities of different shapes")
def case_score_shape_mismatch(w: Workspace) -> Run:
    labels, proba = w.pair()
    _tif(proba, tifffile.imread(proba)[:, :, :24])
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "proba.tif")


@case("emseg score", "zero-size image")
def case_score_zero_size(w: Workspace) -> Run:
    labels, proba = w.pair()
    make_zero_size(labels)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "labels.tif")


@case("emseg score", "NaN in the probability map")
def case_score_nan(w: Workspace) -> Run:
    labels, proba = w.pair()
    values = tifffile.imread(proba)
    values[1, 5, 7] = np.nan
    _tif(proba, values)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "proba.tif")


@case("emseg score", "negative labels")
def case_score_negative_labels(w: Workspace) -> Run:
    labels, proba = w.pair()
    _tif(labels, tifffile.imread(labels).astype(np.int16) - 1)
    return Run(w.emseg("score", str(labels), str(proba), "--json", f"{OUT}/score.json"), "labels.tif")


# ---- emseg predict --------------------------------------------------------------------


@case("emseg predict", "missing file")
def case_predict_missing_input(w: Workspace) -> Run:
    return Run(w.emseg("predict", "no-such-image.tif", "--model", "models/model.pt", "--out", OUT), "no-such-image.tif")


@case("emseg predict", "text file named .tif (after a good input)")
def case_predict_text_as_tif(w: Workspace) -> Run:
    good = w.image("good.tif")
    bad = make_text(w.root / "bad.tif")
    return Run(w.emseg("predict", str(good), str(bad), "--model", "models/model.pt", "--out", OUT), "bad.tif")


@case("emseg predict", "truncated TIFF")
def case_predict_truncated_tiff(w: Workspace) -> Run:
    bad = truncate(w.image("cut.tif"))
    return Run(w.emseg("predict", str(bad), "--model", "models/model.pt", "--out", OUT), "cut.tif")


@case("emseg predict", "non-emseg checkpoint")
def case_predict_foreign_checkpoint(w: Workspace) -> Run:
    model = non_emseg_checkpoint(w.root / "foreign.pt")
    return Run(w.emseg("predict", str(w.image()), "--model", str(model), "--out", OUT), "foreign.pt")


@case("emseg predict", "empty model file")
def case_predict_empty_model(w: Workspace) -> Run:
    model = make_empty(w.root / "empty.pt")
    return Run(w.emseg("predict", str(w.image()), "--model", str(model), "--out", OUT), "empty.pt")


# ---- stages/fetch.py ------------------------------------------------------------------


@case("stages/fetch.py", "missing file")
def case_fetch_missing_file(w: Workspace) -> Run:
    (w.root / "source" / "test-volume.tif").unlink()
    return Run(fetch_args(w), "test-volume.tif")


@case("stages/fetch.py", "empty file")
def case_fetch_empty_file(w: Workspace) -> Run:
    make_empty(w.root / "source" / "train-labels.tif")
    return Run(fetch_args(w), "train-labels.tif")


@case("stages/fetch.py", "truncated TIFF")
def case_fetch_truncated_tiff(w: Workspace) -> Run:
    truncate(w.root / "source" / "train-volume.tif")
    return Run(fetch_args(w), "train-volume.tif")


@case("stages/fetch.py", "truncated TIFF cut between pages (tifffile reads it short, with a logged warning)")
def case_fetch_stack_cut_between_pages(w: Workspace) -> Run:
    cut_between_pages(w.root / "source" / "test-volume.tif", synthetic_stack(3, HEIGHT, WIDTH, seed=100)[0])
    return Run(fetch_args(w), "test-volume.tif")


@case("stages/fetch.py", "text file named .tif")
def case_fetch_text_as_tif(w: Workspace) -> Run:
    make_text(w.root / "source" / "test-volume.tif")
    return Run(fetch_args(w), "test-volume.tif")


@case("stages/fetch.py", "4-D TIFF")
def case_fetch_4d_tiff(w: Workspace) -> Run:
    make_4d(w.root / "source" / "train-volume.tif", SLICES, HEIGHT, WIDTH)
    return Run(fetch_args(w), "train-volume.tif")


@case("stages/fetch.py", "TIFF whose image series differ in slice shape")
def case_fetch_mixed_series(w: Workspace) -> Run:
    path = w.root / "source" / "train-volume.tif"
    images = source_stacks()[0]
    tifffile.imwrite(path, images[:-1], photometric="minisblack")
    tifffile.imwrite(path, images[-1, :32, :32], photometric="minisblack", append=True)
    return Run(fetch_args(w), "train-volume.tif")


@case("stages/fetch.py", "RGB labels")
def case_fetch_rgb_labels(w: Workspace) -> Run:
    make_rgb(w.root / "source" / "train-labels.tif", source_stacks()[1])
    return Run(fetch_args(w), "train-labels.tif")


@case("stages/fetch.py", "non-binary labels (0/128/255)")
def case_fetch_non_binary_labels(w: Workspace) -> Run:
    labels = source_stacks()[1].copy()
    labels[:, :10, :10] = 128
    _tif(w.root / "source" / "train-labels.tif", labels)
    return Run(fetch_args(w), "train-labels.tif")


@case("stages/fetch.py", "image and label stacks of different lengths")
def case_fetch_length_mismatch(w: Workspace) -> Run:
    _tif(w.root / "source" / "train-labels.tif", source_stacks()[1][:-1])
    return Run(fetch_args(w), "train-labels.tif")


@case("stages/fetch.py", "image and label stacks of different shapes")
def case_fetch_shape_mismatch(w: Workspace) -> Run:
    _tif(w.root / "source" / "train-labels.tif", source_stacks()[1][:, :, :64])
    return Run(fetch_args(w), "train-labels.tif")


@case("stages/fetch.py", "zero-size image")
def case_fetch_zero_size(w: Workspace) -> Run:
    make_zero_size(w.root / "source" / "test-volume.tif")
    return Run(fetch_args(w), "test-volume.tif")


@case("stages/fetch.py", "data.source folder missing")
def case_fetch_missing_source(w: Workspace) -> Run:
    return Run(fetch_args(w, params=w.params({"data": {"source": "no-such-folder"}})), "data.source")


@case("stages/fetch.py", "unknown params key (data.sourse)")
def case_fetch_unknown_key(w: Workspace) -> Run:
    return Run(fetch_args(w, params=w.params({"data": {"sourse": "source"}})), "data.sourse")


@case("stages/fetch.py", "bad YAML in params")
def case_fetch_bad_yaml(w: Workspace) -> Run:
    return Run(fetch_args(w, params=w.raw_params("data:\n  source: [unclosed\n")), "params.yaml")


@case("stages/fetch.py", "params file missing")
def case_fetch_missing_params(w: Workspace) -> Run:
    return Run(fetch_args(w, params="no-params.yaml"), "no-params.yaml")


# ---- stages/convert.py ----------------------------------------------------------------


@case("stages/convert.py", "missing file")
def case_convert_missing_file(w: Workspace) -> Run:
    (w.root / "data" / "raw" / "train-labels.tif").unlink()
    return Run(convert_args(w), "train-labels.tif")


@case("stages/convert.py", "image and label stacks of different shapes")
def case_convert_shape_mismatch(w: Workspace) -> Run:
    _tif(w.root / "data" / "raw" / "train-labels.tif", source_stacks()[1][:, :64])
    return Run(convert_args(w), "train-labels.tif")


@case("stages/convert.py", "non-binary labels (0/1/2)")
def case_convert_non_binary_labels(w: Workspace) -> Run:
    labels = (source_stacks()[1] > 0).astype(np.uint8)
    labels[:, :5, :5] = 2
    _tif(w.root / "data" / "raw" / "train-labels.tif", labels)
    return Run(convert_args(w), "train-labels.tif")


@case("stages/convert.py", "float test volume (unsupported pixel type)")
def case_convert_float_volume(w: Workspace) -> Run:
    _tif(w.root / "data" / "raw" / "test-volume.tif", np.random.default_rng(0).random((2, HEIGHT, WIDTH), np.float32))
    return Run(convert_args(w), "test-volume.tif")


# ---- stages/split.py ------------------------------------------------------------------


@case("stages/split.py", "split larger than the data (split.test_size)")
def case_split_too_large(w: Workspace) -> Run:
    return Run(split_args(w, params=w.params({"split": {"test_size": SLICES}})), "test_size")


# ---- stages/augment.py ----------------------------------------------------------------


@case("stages/augment.py", "empty split file")
def case_augment_empty_split(w: Workspace) -> Run:
    make_empty(w.root / "data" / "split.json")
    return Run(augment_args(w), "split.json")


@case("stages/augment.py", "missing training slice")
def case_augment_missing_slice(w: Workspace) -> Run:
    (w.root / "data" / "png" / "train" / "labels" / "slice_003.png").unlink()
    return Run(augment_args(w), "slice_003.png")


# ---- stages/train.py ------------------------------------------------------------------


@case("stages/train.py", "zero step count (train.steps: 0)")
def case_train_zero_steps(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"train": {"steps": 0}})), "train.steps")


@case("stages/train.py", "negative step count (train.steps: -5)")
def case_train_negative_steps(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"train": {"steps": -5}})), "train.steps")


@case("stages/train.py", "patch larger than the image (train.patch_size: 128 vs 96x80)")
def case_train_patch_too_large(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"train": {"patch_size": 128}})), "train.patch_size")


@case("stages/train.py", "unknown architecture (model.arch: resnet9000)")
def case_train_unknown_arch(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"model": {"arch": "resnet9000"}})), "model.arch")


@case("stages/train.py", "argument the network does not take (model.unet: {chanels: ...})")
def case_train_bad_network_argument(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"model": {"unet": {"chanels": [4, 8, 16]}}})), "chanels")


@case("stages/train.py", "argument value the network rejects (model.unet.strides too short)")
def case_train_bad_network_value(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"model": {"unet": {"strides": [2]}}})), "model.unet")


@case("stages/train.py", "unknown loss (train.loss)")
def case_train_unknown_loss(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"train": {"loss": "hinge"}})), "train.loss")


@case("stages/train.py", "unknown params key (train.stpes)")
def case_train_unknown_key(w: Workspace) -> Run:
    return Run(train_args(w, params=w.params({"train": {"stpes": 10}})), "train.stpes")


@case("stages/train.py", "augmented folder missing")
def case_train_missing_augmented(w: Workspace) -> Run:
    return Run(train_args(w, augmented="data/no-augmented"), "no-augmented")


# ---- stages/evaluate.py ---------------------------------------------------------------


@case("stages/evaluate.py", "non-emseg checkpoint")
def case_evaluate_foreign_checkpoint(w: Workspace) -> Run:
    non_emseg_checkpoint(w.root / "models" / "foreign.pt")
    return Run(evaluate_args(w, model="models/foreign.pt"), "foreign.pt")


@case("stages/evaluate.py", "truncated model file")
def case_evaluate_truncated_model(w: Workspace) -> Run:
    truncate(w.root / "models" / "model.pt")
    return Run(evaluate_args(w), "model.pt")


@case("stages/evaluate.py", "missing test slice")
def case_evaluate_missing_slice(w: Workspace) -> Run:
    (w.root / "data" / "png" / "train" / "images" / "slice_007.png").unlink()
    return Run(evaluate_args(w), "slice_007.png")


#: the cases the brief asks for at the least, each one a kind of bad input
REQUIRED_KINDS = (
    "missing file", "empty file", "truncated TIFF", "text file named .tif", "4-D TIFF", "RGB labels",
    "non-binary labels", "different lengths", "different shapes", "zero-size image", "NaN",
    "unknown params key", "zero step count", "negative step count", "patch larger than the image",
    "non-emseg checkpoint", "unknown architecture", "argument the network does not take", "bad YAML",
)


def test_the_corpus_covers_every_required_kind() -> None:
    assert len(REQUIRED_KINDS) == 19 and len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    for kind in REQUIRED_KINDS:
        assert any(kind in c.what for c in CASES), kind
    # non-emseg checkpoints through both entry points that load a model
    assert {c.entry for c in CASES if "non-emseg checkpoint" in c.what} == {"emseg predict", "stages/evaluate.py"}


# --------------------------------------------------------------------------------------
# running a case
# --------------------------------------------------------------------------------------


def _is_cache(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix == ".pyc"


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every file and folder under ``root`` (caches aside), with its kind, size and mtime."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if _is_cache(path.relative_to(root)):
            continue
        stat = path.lstat()
        kind = "dir" if path.is_dir() else "file"
        seen[str(path.relative_to(root))] = (kind, 0 if kind == "dir" else stat.st_size, 0 if kind == "dir" else stat.st_mtime_ns)
    return seen


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run from ``cwd``, with paths inside it given relative to it, as a user would type them."""
    argv = [arg.removeprefix(f"{cwd}{os.sep}") for arg in argv]
    return subprocess.run(argv, cwd=cwd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=120)


#: case id -> the error line it printed; written as a markdown table when EMSEG_ERROR_TABLE names a file
ERROR_LINES: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def error_table():
    yield
    target = os.environ.get("EMSEG_ERROR_TABLE")
    if target and ERROR_LINES:
        rows = ["| case | entry point | error line |", "|---|---|---|"]
        for bad in CASES:
            if bad.id in ERROR_LINES:
                line = ERROR_LINES[bad.id].replace("|", "\\|")
                fence = "``" if "`" in line else "`"
                rows.append(f"| {bad.what} | `{bad.entry}` | {fence} {line} {fence} |")
        Path(target).write_text("\n".join(rows) + "\n")


@pytest.fixture
def workspace(tmp_path: Path, prepared: Path) -> Workspace:
    root = tmp_path / "work"
    shutil.copytree(prepared, root)
    return Workspace(root)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_clear_error_line_and_no_output(bad: Case, workspace: Workspace) -> None:
    planned = bad.build(workspace)
    before = snapshot(workspace.root)
    done = run(planned.argv, workspace.root)
    after = snapshot(workspace.root)

    report = f"{bad.entry} / {bad.what}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    if lines:
        ERROR_LINES[bad.id] = lines[0].replace(str(workspace.root) + os.sep, "")
    assert done.returncode == 2, report
    assert "Traceback" not in done.stderr, report
    assert len(lines) == 1, report
    assert "error:" in lines[0] and planned.names in lines[0], report
    assert not (workspace.root / OUT).exists(), f"left output behind: {sorted(p for p in after if p.startswith(OUT))}\n{report}"
    new = sorted(set(after) - set(before))
    gone = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    assert not (new or gone or changed), f"new {new}, removed {gone}, changed {changed}\n{report}"


def test_debug_shows_the_traceback(workspace: Workspace) -> None:
    labels, proba = workspace.pair()
    make_text(labels)
    done = run(workspace.emseg("--debug", "score", str(labels), str(proba)), workspace.root)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr
    assert "EmsegError" in done.stderr and "labels.tif" in done.stderr

    argv = fetch_args(workspace, params=workspace.params({"data": {"sourse": "source"}}))
    done = run([*argv, "--debug"], workspace.root)
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr and "data.sourse" in done.stderr


def test_emseg_score_starts_without_torch() -> None:
    """Every `emseg` command builds every subcommand's parser: torch and MONAI stay in predict's and models' run()."""
    code = (
        "import sys; from emseg.cli.main import build_parser; import emseg.cli.score; build_parser(); "
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
