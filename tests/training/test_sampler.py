
import numpy as np
import pytest
import torch

from emseg.errors import EmsegError
from emseg.networks.affinities import affinity_targets
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
