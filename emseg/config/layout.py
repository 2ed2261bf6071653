"""Where the pipeline keeps its data: every folder and file name under `data/`, in one place.

The DVC stages pass the roots (`data/raw`, `data/png`, `data/augmented`, `data/eval`) on
their command lines; what lies inside a root is decided here, and fetch, convert, augment,
the data set and evaluate all read it from here.

* `data/raw/`: the three stacks of `STACKS`, under the names of `RAW_NAMES` whatever the
  source calls them;
* `data/png/`: one lossless PNG per slice, named by [`slice_name`][emseg.config.layout.slice_name],
  in the folders of `PNG_FOLDERS`; labels stored as `CELL_VALUE` (255) = cell interior, 0 = membrane,
  `UNLABELLED_VALUE` (128) = not labelled (sparse labels);
* `data/augmented/`: `images/` and `labels/` pairs named by
  [`augmented_name`][emseg.config.layout.augmented_name]; for a model that reads neighbouring
  sections (`model.context`), `context/` holds each copy's neighbours, deformed with it
  ([`context_name`][emseg.config.layout.context_name]);
* `data/eval/`: the stacks evaluate scored and predicted, `EVAL_NAMES`; the segmentation it chose
  goes beside the model file as `SEGMENT_FILE` (`segment.json`);
* `cv/folds/<k>/`: one cross-validation fold's split, scores and per-slice table, `CV_FOLD_FILES`
  (cv/dvc.yaml writes them there; a test holds the two equal).
"""

from __future__ import annotations

import os
from pathlib import Path

#: the three stacks of an ISBI-style data set, by the params ``data`` key that names each at its source
STACKS = ("train_images", "train_labels", "test_images")
#: their names under ``data/raw/`` (and the ISBI 2012 challenge's own names, the source default)
RAW_NAMES = {"train_images": "train-volume.tif", "train_labels": "train-labels.tif", "test_images": "test-volume.tif"}
#: their slices under ``data/png/``
PNG_FOLDERS = {"train_images": Path("train") / "images", "train_labels": Path("train") / "labels", "test_images": Path("test") / "images"}
#: the ISBI label convention kept on disk: cell interior 255, membrane 0
CELL_VALUE = 255
#: a pixel nobody labelled (sparse labels, `data.unlabelled`), as convert stores it: ignored by the loss and the scores
UNLABELLED_VALUE = 128
#: an augmented set's two folders, and the folder of its copies' neighbouring sections (model.context > 0)
AUGMENTED_IMAGES, AUGMENTED_LABELS, AUGMENTED_CONTEXT = "images", "labels", "context"
#: what evaluate writes under ``data/eval/``: the scored test labels and map, the unlabelled volume's map
EVAL_NAMES = {"labels": "test-labels.tif", "proba": "test-proba.tif", "volume_proba": "test-volume-proba.tif", "cells": "test-cells.tif"}
#: the segmentation the evaluate stage chose on the validation slices, beside the model file
SEGMENT_FILE = "segment.json"


def slice_name(index: int) -> str:
    """The PNG file name of labelled or test slice `index`."""
    return f"slice_{index:03d}.png"


def augmented_name(index: int, copy: int) -> str:
    """The PNG file name of augmented copy `copy` of training slice `index`."""
    return f"slice_{index:03d}_aug_{copy:02d}.png"


def context_name(name: str, offset: int) -> str:
    """The PNG file name of the section `offset` (-2, -1, 1, 2, ...) from the augmented copy `name`."""
    return f"{Path(name).stem}_z{offset:+d}.png"


def png_folder(png_root: str | os.PathLike[str], stack: str) -> Path:
    """The folder of one stack's slices (a key of `STACKS`) under the PNG root."""
    return Path(png_root) / PNG_FOLDERS[stack]


#: what a cross-validation fold's folder (cv/folds/<k>/) holds for the aggregate stage
CV_FOLD_FILES = {
    "split": "split.json",
    "metrics": "evaluate.json",
    "per_slice": "plots/per_slice.json",
    "segment": "segment.json",
    "val_curve": "dvclive/plots/metrics/val/v_rand.tsv",
}


def cv_fold_file(folds_root: str | os.PathLike[str], fold: int, kind: str) -> Path:
    """The file of one kind in one cross-validation fold's folder.

    Args:
        folds_root: The folder of the folds (`cv/folds`).
        fold: The fold number.
        kind: What the file holds, a key of `CV_FOLD_FILES`: `split`, `metrics`, `per_slice`, `segment` (the cell step its validation block chose) or
            `val_curve` (its training's validation V_rand by step, dvclive's table).
    """
    return Path(folds_root) / str(fold) / CV_FOLD_FILES[kind]
