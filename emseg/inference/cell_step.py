"""Which cell step a prediction runs: the one asked for, the model file's, `segment.json` beside it, or components.

Shared by `emseg predict` and the napari plugin, so that both draw the same cells from the
same model and settings.
"""

from __future__ import annotations

from pathlib import Path

from emseg.errors import EmsegError
from emseg.networks.model_file import ModelConfig


def cell_method(model_path: Path, asked: str | None, config: ModelConfig, option: str = "--cells") -> tuple[str, dict, str]:
    """The segmentation method of `emseg predict`, its settings, and where they come from.

    The cell step recorded in the model file ([`ModelConfig.cell_step`][emseg.networks.model_file.ModelConfig.cell_step])
    gives the method when none was asked for, and its settings when it is the method asked
    for; a model file without one (older formats) takes them from `segment.json` beside it
    (the evaluate stage's choice); otherwise the method (default `components`) runs with its
    own defaults.

    Args:
        model_path: The model file.
        asked: The method given with `--cells`, or None.
        config: The model file's [`ModelConfig`][emseg.networks.model_file.ModelConfig].
        option: What the errors call the choice (`--cells` on the command line).

    Returns:
        The method, its settings, and a few words on where they come from.

    Raises:
        EmsegError: An unknown method, or one that needs an affinity model for a boundary model.
    """
    from emseg.config.layout import SEGMENT_FILE
    from emseg.io.atomic import read_json
    from emseg.segmentation.methods import METHODS

    step = config.cell_step()
    chosen_path = model_path.with_name(SEGMENT_FILE)
    if step is not None:
        chosen, source = {"method": step[0], "settings": step[1]}, f"settings from the model file {model_path}"
    elif chosen_path.is_file():
        chosen, source = read_json(chosen_path), f"settings from {chosen_path}"
    else:
        chosen, source = None, ""
    method = asked or (chosen["method"] if chosen else "components")
    if method not in METHODS:
        raise EmsegError(f"{option}: unknown method {method!r}; registered: {', '.join(METHODS)}")
    if METHODS[method].needs_affinities and config.target != "affinities":
        raise EmsegError(f"{option} {method} needs an affinity model; {model_path} is a {config.target} model")
    if method == "components":
        return method, {}, "at the mask's threshold"
    if chosen and chosen.get("method") == method:
        return method, dict(chosen["settings"]), source
    return method, {}, "default settings"


def settings_text(settings: dict) -> str:
    """A cell method's settings for the summary line: ` (beta=0.4, min_size=25)`, or nothing."""
    return f" ({', '.join(f'{key}={value:g}' if isinstance(value, float) else f'{key}={value}' for key, value in settings.items())})" if settings else ""
