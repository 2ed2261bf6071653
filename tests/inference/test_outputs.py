"""emseg.inference.outputs: the one table of what `emseg predict` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emseg.errors import EmsegError
from emseg.inference.outputs import OUTPUT_KINDS, OUTPUTS, default_outputs, output_paths, parse_outputs


def test_output_paths_follow_the_input_kind(tmp_path: Path) -> None:
    assert output_paths("one", False, tmp_path, ("membrane",))["membrane"].name == "one_membrane.png"
    assert output_paths("two", True, tmp_path, ("membrane", "proba")) == {
        "proba": tmp_path / "two_proba.tif",
        "membrane": tmp_path / "two_membrane.tif",
    }
    assert output_paths("two", True, tmp_path, ("overlay",))["overlay"].name == "two_overlay.png"


def test_every_kind_has_its_own_file_and_the_tables_sit_beside_the_cells() -> None:
    names = {kind: spec.file_name("x", True) for kind, spec in OUTPUTS.items()}
    assert len(set(names.values())) == len(names)
    assert all(names[kind].startswith(f"x_{kind}.") for kind in ("proba", "membrane", "cells", "overlay"))
    assert names["measurements"] == "x_cells.csv" and names["summary"] == "x_cells_summary.csv"
    assert np.dtype(OUTPUTS["cells"].dtype) == np.uint32


@pytest.mark.parametrize(
    ("text", "expected"),
    [("proba", ("proba",)), ("cells, proba,cells", ("proba", "cells")), (",".join(OUTPUT_KINDS), OUTPUT_KINDS)],
)
def test_parse_outputs_keeps_the_table_order_once(text: str, expected: tuple[str, ...]) -> None:
    assert parse_outputs(text) == expected


@pytest.mark.parametrize("text", ["", "proba,mask", "labels"])
def test_parse_outputs_refuses_unknown_kinds(text: str) -> None:
    with pytest.raises(EmsegError, match="--outputs: unknown output"):
        parse_outputs(text)


def test_the_uncertainty_comes_with_tta_only() -> None:
    assert "uncertainty" not in default_outputs(tta=False) and default_outputs(tta=True) == OUTPUT_KINDS
    assert parse_outputs("uncertainty,proba", tta=True) == ("proba", "uncertainty")
    with pytest.raises(EmsegError, match="--outputs uncertainty: .* needs --tta"):
        parse_outputs("proba,uncertainty", tta=False)
