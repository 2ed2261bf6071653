"""Shared fixtures and helpers: tiny synthetic EM-like stacks, the tiny pipeline profile, a checkout copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml

from emseg.io.synthetic import TINY_PROFILE, synthetic_slice, synthetic_stack, write_isbi_like_source

__all__ = [
    "ISBI_DIR", "REPO_ROOT", "TINY_PROFILE", "TINY_UNET", "copy_checkout", "merge", "run", "synthetic_slice", "synthetic_stack", "tif",
    "tiny_model_file", "tiny_training_data",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
ISBI_DIR = REPO_ROOT.parent / "shared" / "isbi2012"

#: a MONAI UNet small enough for unit tests (about 7 k parameters)
TINY_UNET = TINY_PROFILE["model"]["unet"]


def tif(path: Path, array: np.ndarray, **kwargs) -> Path:
    """Write ``array`` as a grey TIFF (its parent made) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, array, **{"photometric": "minisblack", **kwargs})
    return path


def tiny_training_data():
    """Three 48x48 synthetic training slices and one validation slice (emseg.training.sampler.TrainingData)."""
    from emseg.training.sampler import TrainingData

    images, labels = synthetic_stack(4, 48, 48)
    return TrainingData(list(images[:3]), list(labels[:3]), [images[3]], [labels[3]])


def tiny_model_file(path: Path, patch: int = 32, context: int = 0, auto_context: bool = False) -> Path:
    """A tiny untrained UNet (seed 0) saved the way training saves it; `context`: the sections on each side it reads;
    `auto_context`: followed by the second network of an auto-context model."""
    import torch

    from emseg.networks.architectures import build_network, resolve_kwargs
    from emseg.networks.model_file import ModelConfig, save_model
    from emseg.preprocessing.normalization import DEFAULT_NORMALIZATION

    torch.manual_seed(0)
    kwargs = resolve_kwargs("unet", TINY_UNET)
    channels = 2 * context + 1
    network = build_network("unet", kwargs, in_channels=channels, auto_context=auto_context).eval()
    save_model(path, network, ModelConfig("unet", kwargs, dict(DEFAULT_NORMALIZATION), patch, in_channels=channels, context=context,
                                          auto_context=auto_context))
    return path


def merge(base: dict, extra: dict) -> dict:
    """``base`` updated by ``extra``, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(base.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's scripts (dvc, emseg) first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done


def copy_checkout(dest: Path, overrides: dict) -> Path:
    """The working tree's tracked and untracked-but-not-ignored files, params overridden, as a fresh git repository.

    Without the pipeline's committed results (``dvc.lock``, ``metrics/``, ``dvclive/``), so
    that ``dvc repro`` there runs everything from nothing.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(("metrics/", "dvclive/")) and name != "dvc.lock":
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    params = merge(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), overrides)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(args, cwd=dest, capture_output=True, text=True, check=True)
    return dest


@pytest.fixture
def isbi_like_source(tmp_path: Path) -> Path:
    """A folder with train-volume/train-labels/test-volume TIFFs: 8 slices of 96x80 (3 test)."""
    return write_isbi_like_source(tmp_path / "source")


@pytest.fixture
def tiny_repo(tmp_path: Path, isbi_like_source: Path) -> Path:
    """A copy of the checkout on the tiny profile and the synthetic source."""
    return copy_checkout(tmp_path / "repo", merge(TINY_PROFILE, {"data": {"source": str(isbi_like_source)}}))


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Under `pytest -n` (pytest-xdist), each test goes to the next free worker, except that a test class's tests share
    one (and so its class or module fixture runs once there: tests/end_to_end/test_benchmarks.py's `quick_runs`).

    xdist's own `--dist loadgroup` would say this with a mark, but with pytest 9.2 it silently stops grouping
    (pytest-dev/pytest-xdist#1386); `--dist loadscope` groups whole modules, which leaves one worker the slowest modules.
    """
    from xdist.scheduler import LoadScopeScheduling

    class ClassScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("[", 1)[0]  # a parameter's id may hold "::"
            parent = path.rpartition("::")[0]
            return parent if "::" in parent else nodeid

    return ClassScheduling(config, log)
