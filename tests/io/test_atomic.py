from pathlib import Path

import pytest

from emseg.io.atomic import atomic_output, partial_folder, staged_directory


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_staged_directory_replaces_the_folder_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out" / "png"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    with staged_directory(final) as staging:
        assert staging == partial_folder(final) and not final.joinpath("new.txt").exists()
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    with pytest.raises(RuntimeError), staged_directory(final) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("stage failed")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"] and not partial_folder(final).exists()


def test_a_kept_partial_folder_is_continued_by_the_next_run(tmp_path: Path) -> None:
    final = tmp_path / "live"
    with pytest.raises(KeyboardInterrupt), staged_directory(final, keep_partial=True) as staging:
        (staging / "log.tsv").write_text("1\n")
        raise KeyboardInterrupt
    assert (partial_folder(final) / "log.tsv").read_text() == "1\n" and not final.exists()
    with staged_directory(final, fresh=False, keep_partial=True) as staging:
        (staging / "log.tsv").write_text((staging / "log.tsv").read_text() + "2\n")
    assert (final / "log.tsv").read_text() == "1\n2\n" and not partial_folder(final).exists()


def test_a_failed_staged_directory_leaves_no_new_parent(tmp_path: Path) -> None:
    with pytest.raises(ValueError), staged_directory(tmp_path / "a" / "b" / "c"):
        raise ValueError
    assert list(tmp_path.iterdir()) == []
