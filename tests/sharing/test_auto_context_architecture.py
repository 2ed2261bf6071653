"""emseg.sharing.auto_context_architecture: the file an auto-context package carries predicts what emseg's model predicts."""

from __future__ import annotations

import ast

import torch

from emseg.networks.architectures import AUTO_CONTEXT_KWARGS, SPATIAL_DIMS, build_network, resolve_kwargs
from emseg.sharing.auto_context_architecture import AutoContextNetwork
from emseg.sharing.bioimageio import AUTO_CONTEXT_SOURCE

from conftest import TINY_UNET


def test_the_package_network_loads_emseg_weights_as_they_are_and_predicts_the_same() -> None:
    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    model = build_network("unet", kwargs, out_channels=4, auto_context=True).eval()
    package = AutoContextNetwork(
        "UNet", {"spatial_dims": SPATIAL_DIMS, "in_channels": 1, "out_channels": 4, **kwargs},
        "UNet", {"spatial_dims": SPATIAL_DIMS, "in_channels": 5, "out_channels": 4, **AUTO_CONTEXT_KWARGS},
    ).eval()
    package.load_state_dict(model.net.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(package(x), model(x))
        assert not torch.allclose(package(x), model.net.first(x))  # the second network's prediction, not the first's


def test_the_file_imports_torch_and_monai_only() -> None:
    # it is copied into packages that run without emseg
    tree = ast.parse(AUTO_CONTEXT_SOURCE.read_text())
    modules = {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert modules <= {"__future__", "typing", "torch", "monai"}
