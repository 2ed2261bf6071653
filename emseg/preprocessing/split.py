"""Train / validation / test lists of the labelled slices.

Adjacent serial sections are strongly correlated, so the default ``contiguous``
strategy holds out blocks of neighbouring slices: test = the last ``test_size`` slices,
validation = the block just before them, train = the rest. ``random`` shuffles (seeded);
``kfold`` keeps the contiguous test block and rotates a contiguous validation fold
(``fold`` of ``n_folds``) through the remaining slices, for cross-validation.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.model_selection import KFold, train_test_split

from emseg.errors import EmsegError
from emseg.io import read_json

Strategy = Literal["contiguous", "random", "kfold"]


def make_split(
    n_slices: int,
    strategy: Strategy = "contiguous",
    test_size: int = 5,
    val_size: int = 3,
    seed: int = 42,
    n_folds: int = 5,
    fold: int = 0,
) -> dict[str, list[int]]:
    """Return ``{"train": [...], "val": [...], "test": [...]}`` slice indices, each sorted."""
    if test_size < 1 or val_size < 1:
        raise EmsegError(f"params split: test_size ({test_size}) and val_size ({val_size}) must be at least 1")
    if strategy != "kfold" and n_slices - test_size - val_size < 1:
        raise EmsegError(
            f"params split: {n_slices} labelled slices cannot hold test_size {test_size} + val_size {val_size} and a training set"
        )
    indices = np.arange(n_slices)
    if strategy in ("contiguous", "kfold"):
        rest, test = train_test_split(indices, test_size=test_size, shuffle=False)
    elif strategy == "random":
        rest, test = train_test_split(indices, test_size=test_size, shuffle=True, random_state=seed)
    else:
        raise EmsegError(f"params split.strategy: unknown {strategy!r} (contiguous, random, kfold)")

    if strategy == "contiguous":
        train, val = train_test_split(rest, test_size=val_size, shuffle=False)
    elif strategy == "random":
        train, val = train_test_split(rest, test_size=val_size, shuffle=True, random_state=seed)
    else:
        if not 0 <= fold < n_folds:
            raise EmsegError(f"params split.fold: {fold} must be in 0..{n_folds - 1}")
        if len(rest) < n_folds:
            raise EmsegError(f"params split.n_folds: {n_folds} folds need at least {n_folds} non-test slices, have {len(rest)}")
        train_pos, val_pos = list(KFold(n_splits=n_folds, shuffle=False).split(rest))[fold]
        train, val = rest[train_pos], rest[val_pos]
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
