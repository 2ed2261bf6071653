"""Training, validation and test lists of the labelled slices.

Adjacent serial sections are strongly correlated, so the default `contiguous` strategy
holds out blocks of neighbouring slices: test = the last `test_size` slices, validation =
the block just before them, training = the rest. `random` shuffles (seeded); `kfold` keeps
the contiguous test block and rotates a contiguous validation fold (`fold` of `n_folds`)
through the remaining slices.

[`cv_split`][emseg.preprocessing.split.cv_split] is the cross-validation pipeline's layout
(`params.yaml: cv`): fold `k` of `n` tests the `k`-th of `n` contiguous blocks, so that the
folds together test every labelled slice exactly once; `guard` slices on each side of the
test block are used by nothing (they are too close to it to be independent of it), the
validation block is the `val_size` slices next to the far side of a guard, and the
training set is everything else.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, train_test_split

from emseg.config.params import CVParams, SplitParams
from emseg.errors import EmsegError
from emseg.io.atomic import read_json


def make_split(n_slices: int, params: SplitParams, seed: int) -> dict[str, list[int]]:
    """The slice indices of the training, validation and test sets, by `params.strategy`.

    Returns:
        `{"train": [...], "val": [...], "test": [...]}`, each list sorted.

    Raises:
        EmsegError: The slices cannot hold the test and validation sets and a training set
            (or, for `kfold`, `n_folds` folds).
    """
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


def cv_split(n_slices: int, params: CVParams, fold: int) -> dict[str, list[int]]:
    """The slice indices of cross-validation fold `fold`.

    Returns:
        `{"train", "val", "test", "guard"}` lists of slice indices, each sorted.

    Raises:
        EmsegError: `fold` is not one of `params.folds`, or the slices cannot hold a test block
            with its guards, a validation block and a training set.
    """
    n_folds = len(params.folds)
    if fold not in params.folds:
        raise EmsegError(f"params cv.folds: fold {fold} is not one of {params.folds}")
    smallest_test = n_slices // n_folds
    needed = 2 * params.guard + params.val_size + 1  # around the largest test block: guards, validation, training
    if smallest_test < 1 or n_slices - (-(-n_slices // n_folds)) < needed:
        raise EmsegError(
            f"params cv: {n_slices} labelled slices cannot hold {n_folds} test blocks, each with {params.guard} guard "
            f"slice(s) per side, a validation block of {params.val_size} and a training set"
        )
    blocks = np.array_split(np.arange(n_slices), n_folds)
    test = blocks[fold]
    first, last = int(test[0]), int(test[-1])
    guard = [i for i in range(first - params.guard, last + params.guard + 1) if 0 <= i < n_slices and not first <= i <= last]
    after = list(range(last + params.guard + 1, last + params.guard + 1 + params.val_size))
    before = list(range(first - params.guard - params.val_size, first - params.guard))
    val = after if after[-1] < n_slices else before
    if val[0] < 0:
        raise EmsegError(f"params cv: fold {fold} (test slices {first}-{last}) has no room for a validation block of {params.val_size}")
    used = set(test.tolist()) | set(guard) | set(val)
    train = [i for i in range(n_slices) if i not in used]
    return {"train": train, "val": sorted(val), "test": test.tolist(), "guard": guard}


#: the strategy of a split that trains on every labelled slice (a final model, after cross-validation)
ALL_SLICES = "all"


def all_split(n_slices: int) -> dict[str, list[int]]:
    """Every labelled slice for training, none for validation or test: the final model's split.

    Its schedule and cell step are not chosen on these slices but taken from a cross-validation
    (final/dvc.yaml).

    Raises:
        EmsegError: No labelled slice.
    """
    if n_slices < 1:
        raise EmsegError("no labelled slices to train on")
    return {"train": list(range(n_slices)), "val": [], "test": []}


def read_split(path: str) -> dict[str, list[int]]:
    """Read a split file written by the split stage, checking its three lists.

    A split of strategy `all` ([`all_split`][emseg.preprocessing.split.all_split]) has empty
    validation and test lists; every other split has all three non-empty.

    Raises:
        EmsegError: The file lacks a non-empty `train`, `val` or `test` list (or, for `all`,
            a non-empty `train` list), or its test slices overlap the others.
    """
    raw = read_json(path)
    if isinstance(raw, dict) and raw.get("strategy") == ALL_SLICES:
        if not (isinstance(raw.get("train"), list) and raw["train"] and raw.get("val") == [] and raw.get("test") == []):
            raise EmsegError(f"{path}: not a split file of strategy {ALL_SLICES} (needs a non-empty train list, empty val and test lists)")
        return {"train": [int(i) for i in raw["train"]], "val": [], "test": []}
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), list) and raw[k] for k in ("train", "val", "test")):
        raise EmsegError(f"{path}: not a split file (needs non-empty train, val and test lists)")
    parts = {k: [int(i) for i in raw[k]] for k in ("train", "val", "test")}
    if set(parts["test"]) & (set(parts["train"]) | set(parts["val"])):
        raise EmsegError(f"{path}: test slices overlap the training or validation slices")
    return parts
