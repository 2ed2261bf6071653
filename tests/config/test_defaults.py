"""emseg.config.defaults: facts several layers share, importable without torch."""

from __future__ import annotations

import subprocess
import sys

from emseg.config import defaults
from emseg.config.params import check_offsets


def test_the_defaults_import_no_heavy_library() -> None:
    """The `emseg` parser shows these defaults at once, so this module must not pull torch or numpy in."""
    code = "import sys, emseg.config.defaults; print(sorted(m for m in ('torch', 'numpy', 'pydantic') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_default_offsets_are_valid_and_closed_under_quarter_turns() -> None:
    """Nearest neighbours first (a boundary map is made of them), and every turned offset has a channel (TTA)."""
    offsets = check_offsets(defaults.DEFAULT_OFFSETS)
    turned = {(-dx, dy) for dy, dx in offsets} | {(dx, -dy) for dy, dx in offsets}
    assert turned <= set(offsets) | {(-dy, -dx) for dy, dx in offsets}


def test_window_and_device_defaults_are_in_range() -> None:
    assert 0.0 <= defaults.OVERLAP < 1.0 and defaults.TILE_BATCH >= 1
    assert 0.0 < defaults.FALLBACK_THRESHOLD < 1.0 and 0.0 < defaults.CONFIDENCE < 1.0
    assert defaults.DEVICES[0] == "auto" and set(defaults.DEVICES) == {"auto", "cpu", "cuda"}
