import pytest
import torch

from emseg.errors import EmsegError
from emseg.networks import REGISTRY, available, build_network, count_parameters, resolve_kwargs

# small variants keep the shape tests fast on 2 cores
TINY = {
    "unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
    "basic_unet": {"features": [4, 4, 8, 8, 16, 4]},
    "attention_unet": {"channels": [4, 8, 16], "strides": [2, 2]},
    "segresnet": {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
}


def test_every_registered_network_has_a_tiny_variant_here() -> None:
    assert sorted(TINY) == available()


@pytest.mark.parametrize("arch", sorted(REGISTRY))
@pytest.mark.parametrize("size", [(32, 32), (37, 53), (16, 71)])
def test_output_shape_equals_input_shape_and_backward_runs(arch: str, size: tuple[int, int]) -> None:
    net = build_network(arch, TINY[arch])
    x = torch.randn(2, 1, *size, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 1, *size)
    y.mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_defaults_build(arch: str) -> None:
    assert count_parameters(build_network(arch)) > 10_000


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(EmsegError, match="unknown architecture 'vnet'; registered: attention_unet, basic_unet"):
        resolve_kwargs("vnet")


def test_unknown_argument_lists_valid_ones() -> None:
    with pytest.raises(EmsegError, match=r"model.unet: chanels not accepted by UNet; valid: .*channels"):
        resolve_kwargs("unet", {"chanels": [8, 16]})


def test_fixed_arguments_cannot_be_overridden() -> None:
    with pytest.raises(EmsegError, match="in_channels not accepted"):
        resolve_kwargs("unet", {"in_channels": 3})


def test_wrong_rank_input_is_an_explicit_error() -> None:
    with pytest.raises(ValueError, match="expected a \\(batch, channel, height, width\\)"):
        build_network("unet", TINY["unet"])(torch.zeros(1, 32, 32))
