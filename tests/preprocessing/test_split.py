import pytest

from emseg.config.params import CVParams, SplitParams
from emseg.errors import EmsegError
from emseg.preprocessing.split import cv_split, make_split


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


@pytest.mark.parametrize(("n_slices", "folds", "guard", "val_size"), [(30, 5, 1, 3), (30, 3, 2, 2), (8, 2, 1, 1), (31, 5, 1, 3)])
def test_cv_folds_test_every_slice_once_and_keep_guards_out(n_slices: int, folds: int, guard: int, val_size: int) -> None:
    params = CVParams(folds=list(range(folds)), guard=guard, val_size=val_size)
    layouts = [cv_split(n_slices, params, fold) for fold in params.folds]
    assert sorted(i for layout in layouts for i in layout["test"]) == list(range(n_slices))
    for layout in layouts:
        test, val, train, guard_slices = layout["test"], layout["val"], layout["train"], layout["guard"]
        assert test == list(range(test[0], test[-1] + 1)) and val == list(range(val[0], val[-1] + 1))
        assert sorted(test + val + train + guard_slices) == list(range(n_slices))  # a partition
        near = {i for i in range(test[0] - guard, test[-1] + guard + 1)} - set(test)
        assert near & set(range(n_slices)) == set(guard_slices)
        assert not near & set(train + val) and len(val) == val_size and train


def test_the_isbi_folds_are_blocks_of_six() -> None:
    layout = cv_split(30, CVParams(), 2)
    assert layout == {"train": [*range(11), *range(22, 30)], "val": [19, 20, 21], "test": list(range(12, 18)), "guard": [11, 18]}


def test_a_fold_layout_the_data_cannot_hold_is_one_error() -> None:
    with pytest.raises(EmsegError, match="params cv: 8 labelled slices cannot hold 2 test blocks"):
        cv_split(8, CVParams(folds=[0, 1], val_size=6), 0)
    with pytest.raises(EmsegError, match=r"params cv.folds: fold 5 is not one of \[0, 1\]"):
        cv_split(8, CVParams(folds=[0, 1]), 5)


def test_the_final_split_trains_on_every_slice_and_reads_back_with_empty_holdouts(tmp_path) -> None:
    from emseg.io.atomic import write_json
    from emseg.preprocessing.split import ALL_SLICES, all_split, read_split

    parts = all_split(30)
    assert parts == {"train": list(range(30)), "val": [], "test": []}
    write_json(tmp_path / "all.json", {"strategy": ALL_SLICES, **parts})
    assert read_split(str(tmp_path / "all.json")) == parts
    write_json(tmp_path / "plain.json", {"strategy": "contiguous", **parts})  # empty holdouts only where the split says all
    with pytest.raises(EmsegError, match=r"plain.json: not a split file \(needs non-empty train, val and test lists\)"):
        read_split(str(tmp_path / "plain.json"))
    write_json(tmp_path / "bad.json", {"strategy": ALL_SLICES, "train": [0], "val": [1], "test": []})
    with pytest.raises(EmsegError, match=r"bad.json: not a split file of strategy all"):
        read_split(str(tmp_path / "bad.json"))
