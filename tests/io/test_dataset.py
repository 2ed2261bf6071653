from pathlib import Path

import numpy as np
import pytest

from emseg.config.layout import AUGMENTED_CONTEXT, AUGMENTED_IMAGES, AUGMENTED_LABELS, context_name, png_folder, slice_name
from emseg.errors import EmsegError
from emseg.io.dataset import count_labelled, read_augmented, read_labelled, read_unlabelled
from emseg.io.images import write_png


def test_unlabelled_slices_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    folder = png_folder(tmp_path, "test_images")
    for index in (0, 1, 3):
        write_png(folder / slice_name(index), np.full((4, 5), index, np.uint8))
    with pytest.raises(EmsegError, match=r"test/images/slice_002.png: file not found \(the unlabelled slices must be numbered"):
        read_unlabelled(tmp_path)
    write_png(folder / slice_name(2), np.full((4, 5), 2, np.uint8))
    assert [int(s[0, 0]) for s in read_unlabelled(tmp_path)] == [0, 1, 2, 3]
    with_sections = read_unlabelled(tmp_path, context=1)  # the test volume's own neighbours, clamped at its ends
    assert [[int(section[0, 0]) for section in s] for s in with_sections] == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    for index in range(2):
        write_png(png_folder(tmp_path, "train_images") / slice_name(index), np.zeros((4, 5), np.uint8))
    assert count_labelled(tmp_path) == 2




def test_labelled_slices_come_with_their_sections_and_augmented_copies_with_theirs(tmp_path: Path) -> None:
    for i in range(4):
        write_png(png_folder(tmp_path, "train_images") / slice_name(i), np.full((6, 7), 10 * i, np.uint8))
        write_png(png_folder(tmp_path, "train_labels") / slice_name(i), np.full((6, 7), 255, np.uint8))
    images, labels = read_labelled(tmp_path, [0, 2], context=1)
    assert [[int(s[0, 0]) for s in image] for image in images] == [[0, 0, 10], [10, 20, 30]]  # clamped at the stack's start
    assert all(label.shape == (6, 7) for label in labels)
    aug = tmp_path / "aug"
    write_png(aug / AUGMENTED_IMAGES / "a.png", np.full((6, 7), 5, np.uint8))
    write_png(aug / AUGMENTED_LABELS / "a.png", np.full((6, 7), 255, np.uint8))
    write_png(aug / AUGMENTED_CONTEXT / context_name("a.png", -1), np.full((6, 7), 4, np.uint8))
    with pytest.raises(EmsegError, match=r"a_z\+1.png: file not found"):
        read_augmented(aug, context=1)
    write_png(aug / AUGMENTED_CONTEXT / context_name("a.png", 1), np.full((6, 7), 6, np.uint8))
    stacks, _ = read_augmented(aug, context=1)
    assert [int(s[0, 0]) for s in stacks[0]] == [4, 5, 6] and read_augmented(aug)[0][0].shape == (6, 7)
