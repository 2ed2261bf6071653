"""Atomic file output: the one way emseg writes a file or a folder, and JSON in and out.

Every writer goes through [`atomic_output`][emseg.io.atomic.atomic_output] (a file) or
[`staged_directory`][emseg.io.atomic.staged_directory] (a folder), so that a crash never leaves
a half-written output under its final name that a later step would trust.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emseg.errors import EmsegError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only when the block succeeds.

    The temporary file is removed whatever happens, and the output gets the usual
    umask-based permissions. Missing parent folders are created.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates owner-only files; outputs get the usual umask-based permissions
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def new_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Create folder `path` and its missing parents; if the block fails, remove those it created again.

    Only folders left empty are removed, so a failed stage leaves no empty output folder
    behind (DVC would otherwise see an output that was never written).
    """
    folder = Path(path)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        for made in created:
            try:
                made.rmdir()
            except OSError:  # not empty (or gone): keep it and everything above it
                break
        raise


def partial_folder(final: str | os.PathLike[str]) -> Path:
    """The staging folder (`.<name>.partial`) beside `final` in which [`staged_directory`][emseg.io.atomic.staged_directory] builds it."""
    final = Path(final)
    return final.with_name(f".{final.name}.partial")


@contextlib.contextmanager
def staged_directory(final: str | os.PathLike[str], *, fresh: bool = True, keep_partial: bool = False) -> Iterator[Path]:
    """Yield a staging folder that replaces folder `final` only when the block succeeds.

    The one way emseg writes a folder output: a later stage (or DVC) never sees a folder
    half-built.

    Args:
        final: The folder to write.
        fresh: Start from an empty staging folder; False continues what an interrupted run
            left in it.
        keep_partial: On failure, leave the staging folder for such a continuation (resumable
            training logs) instead of removing it.
    """
    final = Path(final)
    staging = partial_folder(final)
    if fresh:
        shutil.rmtree(staging, ignore_errors=True)
    with new_folder(final.parent):  # nor does a failure leave a new empty parent folder
        staging.mkdir(exist_ok=True)
        try:
            yield staging
        except BaseException:
            if not keep_partial:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file.

    Raises:
        EmsegError: The file is missing or not valid JSON (one line naming it).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EmsegError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmsegError(f"{path}: not valid JSON ({exc})") from None
