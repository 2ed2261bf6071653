
import numpy as np
import pytest
import torch

from emseg.config.layout import UNLABELLED_VALUE
from emseg.errors import EmsegError
from emseg.networks.affinities import affinity_targets
from emseg.preprocessing.normalization import normalize
from emseg.training.sampler import PatchSampler, membrane_target

from conftest import synthetic_stack


def test_membrane_target_is_label_zero() -> None:
    label = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(membrane_target(label), [[1.0, 0.0], [0.0, 1.0]])


def test_patches_have_the_right_shape_and_stay_paired() -> None:
    images, labels = synthetic_stack(3, 40, 50)
    sampler = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=0)
    x, y, w, mask = sampler.sample(8)
    assert x.shape == y.shape == (8, 1, 16, 16) and x.dtype == torch.float32
    assert w is None
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    # membrane pixels are the dark ones in the synthetic data, after any flip/rotation
    assert x[y == 1].mean() < x[y == 0].mean()


def test_sampling_is_seeded() -> None:
    images, labels = synthetic_stack(2, 32, 32)
    a = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=3).sample(4)[0]
    b = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=3).sample(4)[0]
    torch.testing.assert_close(a, b)


def test_patch_larger_than_the_slices_is_an_error() -> None:
    images, labels = synthetic_stack(1, 20, 30)
    with pytest.raises(EmsegError, match="train.patch_size: 32 is larger than a training slice \\(20x30\\)"):
        PatchSampler.from_arrays(list(images), list(labels), 32, True, seed=0)


def test_weights_are_cropped_and_turned_with_their_patch() -> None:
    images, labels = synthetic_stack(2, 40, 40)
    # weights that encode the target: 2 on membrane, 1 elsewhere
    weights = [np.where(label == 0, 2.0, 1.0).astype(np.float32) for label in labels]
    sampler = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=1, weights=weights)
    x, y, w, mask = sampler.sample(6)
    assert w.shape == y.shape
    torch.testing.assert_close(w, 1.0 + y)


def test_an_affinity_sampler_derives_the_target_from_the_turned_patch() -> None:
    images, labels = synthetic_stack(2, 48, 48)
    offsets = ((-1, 0), (0, -1), (-3, 0), (0, -3))
    affinity = PatchSampler.from_arrays(list(images), list(labels), 32, True, seed=4, offsets=offsets).sample(6)
    # the same seed draws the same crops, turns and flips: the boundary target is the turned label patch
    boundary = PatchSampler.from_arrays(list(images), list(labels), 32, True, seed=4).sample(6)
    assert affinity.target.shape == affinity.mask.shape == (6, 4, 32, 32)
    assert torch.equal(affinity.image, boundary.image) and boundary.mask is None
    for membrane, target, mask in zip(boundary.target, affinity.target, affinity.mask):
        expected, expected_mask = affinity_targets(np.where(membrane[0].numpy() > 0, 0, 255).astype(np.uint8), offsets)
        np.testing.assert_array_equal(target.numpy(), expected)
        np.testing.assert_array_equal(mask.numpy(), expected_mask)


def _sparse(labels: np.ndarray) -> list[np.ndarray]:
    """The labels with each slice's right half unlabelled (and a fully labelled last slice)."""
    sparse = [label.copy() for label in labels]
    for label in sparse[:-1]:
        label[:, label.shape[1] // 2 :] = UNLABELLED_VALUE
    return sparse


def test_a_boundary_batch_masks_out_the_unlabelled_pixels() -> None:
    images, labels = synthetic_stack(3, 40, 40)
    sparse = _sparse(labels)
    # weights that mark the unlabelled pixels (2), cropped and turned with the patch as the mask must be
    marks = [np.where(label == UNLABELLED_VALUE, 2.0, 1.0).astype(np.float32) for label in sparse]
    batch = PatchSampler.from_arrays(list(images), sparse, 16, True, seed=2, weights=marks).sample(12)
    assert batch.mask is not None and batch.mask.shape == batch.target.shape
    torch.testing.assert_close(batch.mask, (batch.weights == 1).float())
    assert (batch.mask == 0).any() and (batch.mask == 1).any()
    assert batch.mask.flatten(1).any(dim=1).all()  # no patch is all unlabelled


def test_an_affinity_batch_masks_out_the_pairs_with_an_unlabelled_end() -> None:
    images, labels = synthetic_stack(2, 48, 48)
    sparse = _sparse(labels)
    offsets = ((-1, 0), (0, -1), (-3, 0), (0, -3))
    affinity = PatchSampler.from_arrays(list(images), sparse, 32, True, seed=4, offsets=offsets).sample(6)
    boundary = PatchSampler.from_arrays(list(images), sparse, 32, True, seed=4).sample(6)  # the same crops, turns and flips
    assert torch.equal(affinity.image, boundary.image)
    for membrane, labelled, target, mask in zip(boundary.target, boundary.mask, affinity.target, affinity.mask):
        label = np.where(labelled[0].numpy() == 0, UNLABELLED_VALUE, np.where(membrane[0].numpy() > 0, 0, 255)).astype(np.uint8)
        expected, expected_mask = affinity_targets(label, offsets)
        np.testing.assert_array_equal(target.numpy(), expected)
        np.testing.assert_array_equal(mask.numpy(), expected_mask)
        assert not mask.numpy()[:, label == UNLABELLED_VALUE].any()


def test_patches_are_drawn_where_something_is_labelled_and_unlabelled_slices_left_out() -> None:
    images, labels = synthetic_stack(2, 40, 40)
    sparse = np.full_like(labels, UNLABELLED_VALUE)
    sparse[0, 30:, 33:] = labels[0, 30:, 33:]  # a 10x7 labelled corner; slice 1 nobody labelled
    sampler = PatchSampler.from_arrays(list(images), list(sparse), 16, True, seed=0)
    assert len(sampler.images) == 1
    # a 16 px patch of this 40 px slice reaches the labelled corner from tops 15..24 and lefts 18..24
    expected = [top * 25 + left for top in range(15, 25) for left in range(18, 25)]
    assert sampler.corners[0].tolist() == expected
    mask = sampler.sample(64).mask
    assert mask.flatten(1).any(dim=1).all()
    with pytest.raises(EmsegError, match="no labelled pixel in the training labels"):
        PatchSampler.from_arrays(list(images), [sparse[1]] * 2, 16, True, seed=0)


def _old_stream(images, labels, size, seed, batch, weights=None):
    """The patch stream as drawn before sparse labels: slice, top, left, then turns and flip, from one generator."""
    generator = torch.Generator().manual_seed(seed)

    def draw(high):
        return int(torch.randint(high, (1,), generator=generator))

    images = [torch.from_numpy(normalize(i)) for i in images]
    targets = [torch.from_numpy(membrane_target(l)) for l in labels]
    xs, ys, ws = [], [], []
    for _ in range(batch):
        index = draw(len(images))
        top, left = draw(images[index].shape[0] - size + 1), draw(images[index].shape[1] - size + 1)
        crop = (slice(top, top + size), slice(left, left + size))
        patches = [images[index][crop], targets[index][crop]] + ([torch.from_numpy(weights[index])[crop]] if weights else [])
        k, flip = draw(4), draw(2)
        patches = [torch.rot90(p, k) for p in patches]
        patches = [torch.flip(p, (1,)) for p in patches] if flip else patches
        xs.append(patches[0])
        ys.append(patches[1])
        ws += patches[2:]
    return torch.stack(xs)[:, None], torch.stack(ys)[:, None], torch.stack(ws)[:, None] if ws else None


@pytest.mark.parametrize("weighted", [False, True])
def test_fully_labelled_slices_draw_the_stream_they_always_drew(weighted: bool) -> None:
    images, labels = synthetic_stack(3, 40, 44)
    weights = [np.where(label == 0, 3.0, 1.0).astype(np.float32) for label in labels] if weighted else None
    sampler = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=9, weights=weights)
    batch = sampler.sample(7)
    x, y, w = _old_stream(list(images), list(labels), 16, 9, 7, weights)
    assert torch.equal(batch.image, x) and torch.equal(batch.target, y) and batch.mask is None
    assert (batch.weights is None and w is None) or torch.equal(batch.weights, w)


def test_sections_are_cropped_and_turned_with_their_slice_on_the_same_random_draws() -> None:
    images, labels = synthetic_stack(2, 40, 48)
    sections = [np.stack([255 - image, image, 255 - image]) for image in images]
    offsets = ((-1, 0), (0, -1))
    alone = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=5, offsets=offsets).sample(6)
    stacked = PatchSampler.from_arrays(sections, list(labels), 16, True, seed=5, offsets=offsets).sample(6)
    assert stacked.image.shape == (6, 3, 16, 16)
    torch.testing.assert_close(stacked.image[:, 1:2], alone.image)  # the middle channel is the slice alone
    torch.testing.assert_close(stacked.image[:, 0], -stacked.image[:, 1], atol=1e-5, rtol=0)  # each section z-scored on its own
    torch.testing.assert_close(stacked.target, alone.target)


def test_descriptors_follow_the_affinities_in_target_and_mask_on_the_same_random_draws() -> None:
    from emseg.networks.lsd import LSD_CHANNELS, lsd_targets, turn_descriptors

    images, labels = synthetic_stack(2, 40, 48)
    offsets = ((-1, 0), (0, -1), (-3, 0), (0, -3))
    plain = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=2, offsets=offsets).sample(5)
    with_lsd = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=2, offsets=offsets, lsd_sigma=4.0)
    batch = with_lsd.sample(5)
    assert batch.target.shape == batch.mask.shape == (5, 4 + LSD_CHANNELS, 16, 16)
    torch.testing.assert_close(batch.image, plain.image)
    torch.testing.assert_close(batch.target[:, :4], plain.target)
    torch.testing.assert_close(batch.mask[:, :4], plain.mask)
    # a descriptor is held on cell pixels only: where the patch's own label is cell
    assert (batch.mask[:, 4:] == (batch.target[:, :2].amax(1, keepdim=True) < 2).float() * batch.mask[:, 4:]).all()
    # a patch the size of its slice, not turned: its descriptors are the slice's
    square_images, square_labels = synthetic_stack(1, 40, 40)
    still = PatchSampler.from_arrays(list(square_images), list(square_labels), 40, False, seed=0, offsets=offsets, lsd_sigma=4.0).sample(1)
    lsd, kept = lsd_targets(square_labels[0], 4.0)
    torch.testing.assert_close(still.target[0, 4:], torch.from_numpy(lsd))
    torch.testing.assert_close(still.mask[0, 4], torch.from_numpy(kept))
    assert turn_descriptors(torch.from_numpy(lsd), 0, False).shape == lsd.shape


def test_unlabelled_patches_come_clean_and_perturbed_with_the_same_geometry() -> None:
    images, labels = synthetic_stack(3, 40, 48)
    unlabelled = [np.stack([255 - image, image, 255 - image]) for image in images]
    sampler = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=2, unlabelled=list(images))
    clean, perturbed = sampler.sample_unlabelled(5)
    assert clean.shape == perturbed.shape == (5, 1, 16, 16)
    for c, p in zip(clean, perturbed):  # a contrast factor, a shift and noise: the same pixels, linearly related
        slope, intercept = np.polyfit(c.flatten().numpy(), p.flatten().numpy(), 1)
        assert 0.75 <= slope <= 1.25 and -0.3 <= intercept <= 0.3
        assert float((p - (slope * c + intercept)).std()) == pytest.approx(0.1, abs=0.03)
    stacked = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=2, unlabelled=unlabelled).sample_unlabelled(5)
    assert stacked.clean.shape == (5, 3, 16, 16)
    torch.testing.assert_close(stacked.clean[:, 0], -stacked.clean[:, 1], atol=1e-5, rtol=0)  # sections z-scored on their own


def test_unlabelled_slices_leave_the_labelled_stream_as_it_was() -> None:
    images, labels = synthetic_stack(3, 40, 48)
    plain = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=4).sample(6)
    with_unlabelled = PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=4, unlabelled=list(images)).sample(6)
    torch.testing.assert_close(plain.image, with_unlabelled.image)
    with pytest.raises(EmsegError, match="^train.consistency_weight: there are no unlabelled slices"):
        PatchSampler.from_arrays(list(images), list(labels), 16, True, seed=4).sample_unlabelled(1)
    with pytest.raises(EmsegError, match=r"train.patch_size: 32 is larger than a training slice \(20x30\)"):
        PatchSampler.from_arrays(list(images), list(labels), 32, True, seed=4, unlabelled=[images[0][:20, :30]])
