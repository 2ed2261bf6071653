"""Fixtures of the napari plugin's tests: a viewer with the widgets docked, the notifications they showed, runs waited for.

The GUI tests need the `napari` extra and a display (pytest-xvfb starts Xvfb). Without the
extra they are skipped, except where `EMSEG_REQUIRE_GUI` is set (CI sets it), where a missing
extra fails them instead of hiding them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("EMSEG_REQUIRE_GUI"):
    import napari  # noqa: F401 (CI: a missing extra is a failure, not a skip)
else:
    pytest.importorskip("napari")
    pytest.importorskip("pytestqt")

#: the slowest run a GUI test waits for, in ms (a 2-core machine under load)
RUN_TIMEOUT_MS = 180_000


@pytest.fixture
def notes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The notifications the widgets showed, as (kind, message)."""
    from emseg.napari_plugin import finetune, measure, segment, workers

    shown: list[tuple[str, str]] = []
    for module in (finetune, measure, segment, workers):
        for kind in ("show_error", "show_info"):
            if hasattr(module, kind):
                monkeypatch.setattr(module, kind, lambda message, kind=kind: shown.append((kind, message)))
    return shown


@pytest.fixture
def wait_for(qtbot) -> Callable:
    """Wait until a widget's run panel has no job left (its worker finished and its results were put in the viewer)."""

    def wait(panel, timeout: int = RUN_TIMEOUT_MS) -> None:
        qtbot.waitUntil(lambda: not panel.running, timeout=timeout)

    return wait


@pytest.fixture
def em_slice() -> np.ndarray:
    """A 192x160 synthetic EM-like slice (uint8)."""
    from emseg.io.synthetic import synthetic_slice

    return synthetic_slice(192, 160, seed=3, cells=10)[0]


@pytest.fixture
def predict_cli(tmp_path: Path) -> Callable[..., Path]:
    """`emseg predict` on an image saved as `image.tif` in a new folder: returns its output folder."""
    from emseg.cli.main import main
    from emseg.io.images import write_tiff

    def predict(image: np.ndarray, *args: str) -> Path:
        folder = tmp_path / "cli"
        folder.mkdir(parents=True, exist_ok=True)
        write_tiff(folder / "image.tif", image)
        assert main(["predict", str(folder / "image.tif"), "--out", str(folder / "out"), "--quiet", *args]) == 0
        return folder / "out"

    return predict
