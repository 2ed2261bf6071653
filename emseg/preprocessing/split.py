"""Train / validation / test lists of the labelled slices.

Adjacent serial sections are strongly correlated, so the default ``contiguous``
strategy holds out blocks of neighbouring slices: test = the last ``test_size`` slices,
validation = the block just before them, train = the rest. ``random`` shuffles (seeded);
``kfold`` keeps the contiguous test block and rotates a contiguous validation fold
(``fold`` of ``n_folds``) through the remaining slices, for cross-validation.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, train_test_split

from emseg.errors import EmsegError
from emseg.io import read_json
from emseg.params import SplitParams


def make_split(n_slices: int, params: SplitParams, seed: int) -> dict[str, list[int]]:
    """Return ``{"train": [...], "val": [...], "test": [...]}`` slice indices, each sorted."""
    strategy, test_size, val_size = params.strategy, params.test_size, params.val_size
    if strategy != "kfold" and n_slices - test_size - val_size < 1:
        raise EmsegError(
            f"params split: {n_slices} labelled slices cannot hold test_size {test_size} + val_size {val_size} and a training set"
        )
    indices = np.arange(n_slices)
    shuffle = strategy == "random"
    rest, test = train_test_split(indices, test_size=test_size, shuffle=shuffle, random_state=seed if shuffle else None)
    if strategy == "kfold":
        if len(rest) < params.n_folds:
            raise EmsegError(f"params split.n_folds: {params.n_folds} folds need at least {params.n_folds} non-test slices, have {len(rest)}")
        train_pos, val_pos = list(KFold(n_splits=params.n_folds, shuffle=False).split(rest))[params.fold]
        train, val = rest[train_pos], rest[val_pos]
    else:
        train, val = train_test_split(rest, test_size=val_size, shuffle=shuffle, random_state=seed if shuffle else None)
    return {name: sorted(int(i) for i in part) for name, part in (("train", train), ("val", val), ("test", test))}


def read_split(path: str) -> dict[str, list[int]]:
    """Read a split file written by the split stage, checking its three lists."""
    raw = read_json(path)
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) and raw[k] for k in ("train", "val", "test")):
        raise EmsegError(f"{path}: not a split file (needs non-empty train, val and test lists)")
    parts = {k: [int(i) for i in raw[k]] for k in ("train", "val", "test")}
    if set(parts["test"]) & (set(parts["train"]) | set(parts["val"])):
        raise EmsegError(f"{path}: test slices overlap the training or validation slices")
    return parts
