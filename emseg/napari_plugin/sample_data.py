"""napari's File > Open Sample for emseg: a real EM slice from ISBI 2012 when a copy is at hand, and a synthetic one always.

The data sets are never shipped with the package: [`isbi_slice`][emseg.napari_plugin.sample_data.isbi_slice]
finds a copy of the ISBI 2012 training stack offline, in this order:

1. `EMSEG_SAMPLE_DATA`: a folder holding `train-volume.tif`, or the file itself;
2. `data/raw/train-volume.tif` in the current folder (what `dvc repro fetch` leaves in an emseg project);
3. the local folder `params.yaml: data.source` names, relative to the current folder, and the
   stack `data.train_images` there.

[`synthetic_slice`][emseg.napari_plugin.sample_data.synthetic_slice] needs nothing: an EM-like slice
drawn by [`emseg.io.synthetic`][emseg.io.synthetic].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from emseg.config.defaults import ISBI_PIXEL_SIZE
from emseg.config.layout import RAW_NAMES
from emseg.errors import EmsegError

__all__ = ["ENV_VAR", "RAW_FOLDER", "SYNTHETIC_SIZE", "isbi_candidates", "isbi_slice", "synthetic_slice"]

LayerData = tuple[Any, dict[str, Any], str]
#: the environment variable that points at a copy of the ISBI 2012 training stack (or its folder)
ENV_VAR = "EMSEG_SAMPLE_DATA"
#: where the fetch stage puts the raw stacks, relative to an emseg project (`dvc.yaml: vars.paths.raw`)
RAW_FOLDER = Path("data") / "raw"
#: the synthetic slice's side, pixels: the size of an ISBI slice
SYNTHETIC_SIZE = 512
#: Voronoi cells in the synthetic slice: dozens of profiles, as an ISBI slice shows, rather than the generator's default dozen
SYNTHETIC_CELLS = 60
#: the synthetic slice's seed: the same sample every time
SYNTHETIC_SEED = 0
_TRAIN_NAME = RAW_NAMES["train_images"]


def isbi_candidates() -> list[Path | str]:
    """Where [`isbi_slice`][emseg.napari_plugin.sample_data.isbi_slice] looks for the ISBI 2012 training stack, in order.

    Returns:
        Paths (or a params `data.train_images` spec such as `file.h5:/raw`, joined to the
        source folder) that may hold the stack; only the first that exists is read.
    """
    candidates: list[Path | str] = []
    if value := os.environ.get(ENV_VAR, "").strip():
        given = Path(value).expanduser()
        # a folder holding the stack, or the stack itself
        candidates.append(given / _TRAIN_NAME if given.is_dir() else given)
    candidates.append(Path.cwd() / RAW_FOLDER / _TRAIN_NAME)
    if source := _params_source():
        candidates.append(source)
    return candidates


def _params_source() -> str | None:
    """The training stack at the local source `params.yaml` in the current folder names, or None (no file, a URL, unreadable)."""
    import yaml

    from emseg.preprocessing.fetch import is_url

    try:
        data = (yaml.safe_load((Path.cwd() / "params.yaml").read_text()) or {}).get("data") or {}
        source = str(data.get("source") or "")
        name = str(data.get("train_images") or _TRAIN_NAME)
    except (OSError, yaml.YAMLError, AttributeError):  # no params file, or not one emseg can read: one place fewer to look
        return None
    if not source or is_url(source):  # an http(s) source is not offline: the fetch stage downloads it
        return None
    return str(Path.cwd() / source / name)


def _exists(spec: Path | str) -> bool:
    from emseg.io.stacks import spec_file

    return Path(spec_file(str(spec))).exists()


def isbi_slice() -> list[LayerData]:
    """Slice 0 of the ISBI 2012 training stack (`train-volume.tif`), as one napari image layer.

    Returns:
        `[(image, kwargs, "image")]`: the 2-D slice in its stored pixel type, named
        `"ISBI 2012 slice"`, with the data set's pixel size (`scale`, `units` in nm, y and x of
        `emseg.config.defaults.ISBI_PIXEL_SIZE`) and `metadata["path"]` the file read.

    Raises:
        EmsegError: No copy found (one line saying where it looked and how to get one), or the
            copy found is unreadable (naming it).
    """
    from emseg.io.stacks import load_stack

    candidates = isbi_candidates()
    found = next((spec for spec in candidates if _exists(spec)), None)
    if found is None:
        looked = ", ".join(str(spec) for spec in candidates)
        unset = "" if os.environ.get(ENV_VAR, "").strip() else f" ({ENV_VAR} is not set)"
        raise EmsegError(
            f"ISBI 2012 sample: {_TRAIN_NAME} not found (looked at {looked}){unset}; run `dvc repro fetch` in an emseg project, "
            f"or set {ENV_VAR} to a folder holding {_TRAIN_NAME}"
        )
    stack = load_stack(found)  # EmsegError naming the file when it is damaged or not an image
    _, y, x = ISBI_PIXEL_SIZE
    kwargs = {"name": "ISBI 2012 slice", "scale": [y, x], "units": ["nm", "nm"], "metadata": {"path": str(found)}}
    return [(stack.pixels[0], kwargs, "image")]


def synthetic_slice() -> list[LayerData]:
    """An EM-like 512 x 512 slice (Voronoi cells with dark membranes and noise) that needs no data set.

    Returns:
        `[(image, kwargs, "image")]`: a `uint8` slice named `"synthetic EM-like slice"`, the
        same every time; no scale, since a drawn slice has no physical pixel size.
    """
    from emseg.io import synthetic

    image, _ = synthetic.synthetic_slice(SYNTHETIC_SIZE, SYNTHETIC_SIZE, SYNTHETIC_SEED, cells=SYNTHETIC_CELLS)
    return [(image, {"name": "synthetic EM-like slice"}, "image")]
