import pytest

from emseg.errors import EmsegError
from emseg.params import SplitParams
from emseg.preprocessing.split import make_split


def test_contiguous_default_on_isbi() -> None:
    split = make_split(30, SplitParams(), seed=42)
    assert split["test"] == [25, 26, 27, 28, 29]
    assert split["val"] == [22, 23, 24]
    assert split["train"] == list(range(22))


def test_random_is_seeded_and_disjoint() -> None:
    params = SplitParams(strategy="random")
    a, b, c = make_split(30, params, seed=1), make_split(30, params, seed=1), make_split(30, params, seed=2)
    assert a == b and a != c
    assert sorted(a["train"] + a["val"] + a["test"]) == list(range(30))


def test_kfold_keeps_test_block_and_rotates_contiguous_validation() -> None:
    folds = [make_split(30, SplitParams(strategy="kfold", n_folds=5, fold=f), seed=0) for f in range(5)]
    assert all(f["test"] == [25, 26, 27, 28, 29] for f in folds)
    vals = [f["val"] for f in folds]
    assert sorted(i for v in vals for i in v) == list(range(25))
    assert all(v == list(range(v[0], v[-1] + 1)) for v in vals)


def test_too_few_slices_is_an_error() -> None:
    with pytest.raises(EmsegError, match="test_size"):
        make_split(6, SplitParams(test_size=5, val_size=1), seed=0)
