import pytest
import torch

from emseg.config.params import parse_params
from emseg.errors import EmsegError
from emseg.networks.architectures import REGISTRY, available, build_network, check_model_params, check_network, count_parameters, resolve_kwargs
from emseg.networks.model_file import ModelConfig, load_model, save_model
from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION

from conftest import TINY_UNET

# small variants keep the shape tests fast on 2 cores
TINY = {
    "unet": TINY_UNET,
    "basic_unet": {"features": [4, 4, 8, 8, 16, 4]},
    "attention_unet": {"channels": [4, 8, 16], "strides": [2, 2]},
    "segresnet": {"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
    "dynunet": {"kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2], "filters": [4, 8, 16]},
    "swin_unetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1], "window_size": 4},
    "flexible_unet": {"backbone": "resnet10", "decoder_channels": [16, 8, 8, 8, 4]},
    "unetplusplus": {"features": [4, 4, 8, 8, 16, 4]},
}
DEEP_SUPERVISION = {
    "dynunet": {**TINY["dynunet"], "deep_supervision": True, "deep_supr_num": 1},
    "unetplusplus": {**TINY["unetplusplus"], "deep_supervision": True},
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
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    # UNet++ without deep supervision leaves its auxiliary heads unused; all else trains
    trained = [p.grad is not None for p in net.parameters()]
    assert sum(trained) >= 0.9 * len(trained)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_defaults_build(arch: str) -> None:
    assert count_parameters(build_network(arch)) > 10_000


@pytest.mark.parametrize("arch", sorted(DEEP_SUPERVISION))
def test_deep_supervision_heads_in_training_main_output_in_eval(arch: str) -> None:
    net = build_network(arch, DEEP_SUPERVISION[arch]).train()
    heads = net.forward_heads(torch.randn(2, 1, 35, 41))
    assert len(heads) >= 2 and all(h.shape == (2, 1, 35, 41) for h in heads)
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, 35, 41)).shape == (1, 1, 35, 41)


@pytest.mark.parametrize("arch", sorted(REGISTRY))
def test_model_file_round_trip_gives_identical_outputs(arch: str, tmp_path) -> None:
    torch.manual_seed(0)
    kwargs = resolve_kwargs(arch, TINY[arch])
    net = build_network(arch, kwargs).eval()
    save_model(tmp_path / "m.pt", net, ModelConfig(arch, kwargs, dict(DEFAULT_NORMALIZATION), 32))
    loaded, _ = load_model(tmp_path / "m.pt")
    x = torch.randn(1, 1, 33, 47)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(EmsegError, match="unknown architecture 'vnet'; registered: attention_unet, basic_unet"):
        resolve_kwargs("vnet")


def test_unknown_argument_lists_valid_ones() -> None:
    with pytest.raises(EmsegError, match=r"^chanels not accepted by UNet; valid: .*channels"):
        resolve_kwargs("unet", {"chanels": [8, 16]})


def test_fixed_arguments_cannot_be_overridden() -> None:
    with pytest.raises(EmsegError, match="in_channels not accepted"):
        resolve_kwargs("unet", {"in_channels": 3})


def test_wrong_rank_input_is_an_explicit_error() -> None:
    with pytest.raises(ValueError, match="expected a \\(batch, channel, height, width\\)"):
        build_network("unet", TINY["unet"])(torch.zeros(1, 32, 32))


@pytest.mark.parametrize("arch", sorted(REGISTRY))
@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (16, 16)])
def test_inputs_down_to_a_pixel_work(arch: str, shape: tuple[int, int]) -> None:
    """Padded to at least two multiples of the network's divisor: its coarsest level keeps 2x2 for instance norm."""
    net = build_network(arch, TINY[arch]).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 1, *shape)).shape == (1, 1, *shape)


def test_check_network_leaves_the_random_state_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    check_network("unet", TINY["unet"])
    assert torch.equal(torch.rand(3), expected)
    with pytest.raises(EmsegError, match="invalid arguments for UNet"):
        check_network("unet", {"channels": [4, 8, 16], "strides": [2]})


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"arch": "unet", "unett": {"channels": [8, 16]}}, r"^params.yaml: model.unett: not a registered architecture \(registered: attention_unet, "),
        ({"arch": "unet", "unett": {}}, r"^params.yaml: model.unett: not a registered architecture"),
        ({"arch": "resnet9000"}, r"^params.yaml: model.arch: Input should be 'attention_unet', .* or 'unetplusplus' \(got 'resnet9000'\)$"),
        ({"unet": {"chanels": [8, 16]}}, r"^params.yaml: model.unet: chanels not accepted by UNet; valid: channels, "),
        ({"unet": {"channels": [4, 8, 16], "strides": [2]}}, r"^params.yaml: model.unet: invalid arguments for UNet \("),
        # a block of a network that is not the chosen one is checked all the same
        ({"arch": "unet", "segresnet": {"blocks": 3}}, r"^params.yaml: model.segresnet: blocks not accepted by SegResNet"),
    ],
)
def test_the_registry_checks_the_model_params_with_one_line(model: dict, message: str) -> None:
    with pytest.raises(EmsegError, match=message):
        parse_params({"model": model}, checks=(check_model_params,))


def test_the_registry_passes_the_profile_and_every_network_by_name() -> None:
    parse_params({}, checks=(check_model_params,))
    for arch in REGISTRY:
        parse_params({"model": {"arch": arch}}, checks=(check_model_params,))


def test_an_auxiliary_head_trains_and_predictions_leave_it_out(tmp_path) -> None:
    kwargs = resolve_kwargs("unet", TINY_UNET)
    net = build_network("unet", kwargs, out_channels=4, aux_channels=6)
    x = torch.zeros(2, 1, 32, 32)
    assert net(x).shape == (2, 4, 32, 32) and net.forward_heads(x)[0].shape == (2, 10, 32, 32)
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, out_channels=4, target="affinities",
                         offsets=[[-1, 0], [0, -1], [-3, 0], [0, -3]], aux_channels=6)
    save_model(tmp_path / "lsd.pt", net.eval(), config)
    loaded, read = load_model(tmp_path / "lsd.pt")
    assert read.aux_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_an_auto_context_model_predicts_with_its_second_network_and_trains_both(tmp_path) -> None:
    from emseg.networks.architectures import AUTO_CONTEXT_KWARGS, AutoContext

    kwargs = resolve_kwargs("unet", TINY_UNET)
    torch.manual_seed(0)
    net = build_network("unet", kwargs, out_channels=4, aux_channels=6, auto_context=True).eval()
    assert isinstance(net.net, AutoContext) and net.divisor % 2 ** len(AUTO_CONTEXT_KWARGS["strides"]) == 0
    # the second network reads the slice, the first's 4 affinities (as probabilities) and its 6 descriptors
    assert net.net.second.model[0].conv.unit0.conv.in_channels == 1 + 4 + 6
    x = torch.randn(2, 1, 37, 29)  # a lone slice of a size no level divides
    with torch.no_grad():
        heads = net.forward_heads(x)
        second, first = heads
        assert len(heads) == 2 and second.shape == first.shape == (2, 10, 37, 29)
        assert torch.equal(net(x), second[:, :4])  # the prediction is the second network's affinities
        # and it does read the first's: other first-network weights change it
        net.net.first.model[0].conv.unit0.conv.bias.add_(1.0)
        assert not torch.allclose(net(x), second[:, :4])
    # the loss reaches both networks
    net.train()
    sum(h.sum() for h in net.forward_heads(x)).backward()
    assert net.net.first.model[0].conv.unit0.conv.weight.grad.abs().sum() > 0
    assert net.net.second.model[0].conv.unit0.conv.weight.grad.abs().sum() > 0
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, out_channels=4, target="affinities",
                         offsets=[[-1, 0], [0, -1], [-3, 0], [0, -3]], aux_channels=6, auto_context=True)
    save_model(tmp_path / "ac.pt", net.eval(), config)
    loaded, read = load_model(tmp_path / "ac.pt")
    assert read.auto_context and read.auto_context_kwargs == AUTO_CONTEXT_KWARGS  # the file records the second network
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))


def test_a_model_file_rebuilds_the_second_network_it_records_and_an_older_one_the_constants(tmp_path) -> None:
    from emseg.networks.architectures import AUTO_CONTEXT_KWARGS

    kwargs = resolve_kwargs("unet", TINY_UNET)
    second = {"channels": [4, 8], "strides": [2], "num_res_units": 0, "dropout": 0.0}  # not the constant's
    net = build_network("unet", kwargs, out_channels=1, auto_context=True, auto_context_kwargs=second).eval()
    config = ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, auto_context=True, auto_context_kwargs=second)
    save_model(tmp_path / "other.pt", net, config)
    loaded, read = load_model(tmp_path / "other.pt")
    assert read.auto_context_kwargs == second and list(loaded.net.second.channels) == [4, 8]
    # a file written before the field: its second network was the constant's
    old = build_network("unet", kwargs, out_channels=1, auto_context=True).eval()
    save_model(tmp_path / "old.pt", old, ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, auto_context=True))
    payload = torch.load(tmp_path / "old.pt", weights_only=True)
    del payload["config"]["auto_context_kwargs"]
    torch.save(payload, tmp_path / "old.pt")
    _, read = load_model(tmp_path / "old.pt")
    assert read.auto_context_kwargs == AUTO_CONTEXT_KWARGS
    assert ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), 32, auto_context_kwargs=second).auto_context_kwargs is None
