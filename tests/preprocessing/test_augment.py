import numpy as np

from emseg.config.params import AugmentParams, ElasticParams
from emseg.io.images import read_image
from emseg.preprocessing.augment import augment_slices, write_augmented, write_preview

from conftest import synthetic_stack


def test_augmented_pairs_stay_binary_aligned_and_seeded(tmp_path) -> None:
    images, labels = synthetic_stack(2, 64, 64)
    params = AugmentParams(copies=3, elastic=ElasticParams(prob=1.0, grid_spacing=16, magnitude=(4.0, 6.0)))
    first = augment_slices(list(images), list(labels), params, seed=7)
    again = augment_slices(list(images), list(labels), params, seed=7)
    assert len(first) == 6
    for (src, image, label), (_, image2, label2) in zip(first, again):
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 255}
        np.testing.assert_array_equal(image, image2)
        # dark pixels still sit on membrane: the label was deformed with the image
        assert image[label == 0].mean() < image[label == 255].mean() - 40
    assert not np.array_equal(first[0][1], images[0])  # something changed


def test_no_augmentation_when_everything_is_off() -> None:
    images, labels = synthetic_stack(1, 32, 32)
    off = AugmentParams(copies=1, elastic=ElasticParams(prob=0.0), flip_prob=0.0, rotate90_prob=0.0,
                        gamma={"prob": 0.0}, contrast={"prob": 0.0}, noise={"prob": 0.0}, blur={"prob": 0.0})
    (_, image, label), = augment_slices(list(images), list(labels), off, seed=0)
    np.testing.assert_array_equal(image, images[0])
    np.testing.assert_array_equal(label, labels[0])


def test_written_files_and_preview(tmp_path) -> None:
    images, labels = synthetic_stack(2, 32, 40)
    samples = augment_slices(list(images), list(labels), AugmentParams(copies=2), seed=0)
    names = write_augmented(samples, [4, 9], tmp_path / "aug")
    assert names[0] == "slice_004_aug_00.png" and names[-1] == "slice_009_aug_01.png"
    assert read_image(tmp_path / "aug" / "labels" / names[0]).shape == (1, 32, 40)
    write_preview([(images[0], labels[0])], [(samples[0][1], samples[0][2])], tmp_path / "preview.png", tile=32)
    preview = read_image(tmp_path / "preview.png", allow_rgb=True)
    assert preview.shape[1:] == (32, 68)


def test_unlabelled_pixels_stay_unlabelled_through_the_deformation() -> None:
    from emseg.config.layout import UNLABELLED_VALUE

    images, labels = synthetic_stack(1, 64, 64)
    sparse = labels.copy()
    sparse[0, :, 32:] = UNLABELLED_VALUE
    params = AugmentParams(copies=4, elastic=ElasticParams(prob=1.0, grid_spacing=16, magnitude=(4.0, 6.0)))
    for _, _, label in augment_slices(list(images), list(sparse), params, seed=3):
        assert set(np.unique(label)) == {0, UNLABELLED_VALUE, 255}  # neither made cell nor membrane
        assert 0.3 < np.mean(label == UNLABELLED_VALUE) < 0.7


def test_a_slice_and_its_sections_are_deformed_as_one_and_written_apart(tmp_path) -> None:
    from emseg.io.dataset import read_augmented

    images, labels = synthetic_stack(1, 64, 64)
    sections = np.stack([images[0], 255 - images[0], images[0]])  # the outer two equal the slice, the middle its negative
    spatial_only = AugmentParams(copies=2, elastic=ElasticParams(prob=1.0, grid_spacing=16, magnitude=(4.0, 6.0)),
                                 gamma={"prob": 0.0}, contrast={"prob": 0.0}, noise={"prob": 0.0}, blur={"prob": 0.0})
    samples = augment_slices([sections], list(labels), spatial_only, seed=3)
    for _, image, label in samples:
        assert image.shape == (3, 64, 64) and image.dtype == np.uint8
        np.testing.assert_array_equal(image[0], image[2])  # one deformation for every section
        assert np.abs(image[1].astype(int) - (255 - image[0].astype(int))).max() <= 1
        assert image[1][label == 0].mean() > image[1][label == 255].mean() + 40  # and for the label
    names = write_augmented(samples, [5], tmp_path / "aug")
    stacks, read_labels = read_augmented(tmp_path / "aug", context=1)
    np.testing.assert_array_equal(stacks[0], samples[0][1])
    np.testing.assert_array_equal(read_labels[1], samples[1][2])
    assert names == ["slice_005_aug_00.png", "slice_005_aug_01.png"]
    write_preview([(sections, labels[0])], [(samples[0][1], samples[0][2])], tmp_path / "preview.png", tile=32)
