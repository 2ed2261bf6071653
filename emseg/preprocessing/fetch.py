"""Fetch the three ISBI-style TIFF stacks from a local folder or an http(s) base URL.

Everything lands under a temporary name first and is validated (a readable TIFF, 2-D or
3-D, matching image and label counts and shapes, binary labels, the optional sha256) before
it is renamed into place, so that a later stage never trusts a half-fetched or wrong file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emseg.config.layout import RAW_NAMES
from emseg.errors import EmsegError
from emseg.io.atomic import atomic_output, staged_directory
from emseg.io.images import read_tiff

DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StackInfo:
    """What a fetched stack holds: its file name, shape and pixel type."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def is_url(source: str) -> bool:
    """Whether `source` is an http(s) URL rather than a local folder."""
    return source.startswith(("http://", "https://"))


def sha256_of(path: Path) -> str:
    """The SHA-256 hex digest of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise EmsegError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise EmsegError(f"{url}: download failed ({reason})") from None
    if expected is not None and target.stat().st_size != int(expected):
        raise EmsegError(f"{url}: download truncated ({target.stat().st_size} of {expected} bytes)")


def _origin(source: str, name: str) -> str:
    return f"{source.rstrip('/')}/{name}" if is_url(source) else str(Path(source) / name)


def _fetch_one(source: str, name: str, target: Path, expected_sha256: str | None) -> None:
    """Copy or download `name` from `source` to `target`, atomically and verified."""
    origin = _origin(source, name)
    with atomic_output(target) as tmp:
        if is_url(source):
            _download(origin, tmp)
        else:
            src = Path(origin)
            if not src.is_file():
                raise EmsegError(f"{src}: file not found (params data.source = {source!r})")
            shutil.copyfile(src, tmp)
        if expected_sha256 is not None:
            actual = sha256_of(tmp)
            if actual != expected_sha256.lower():
                raise EmsegError(f"{origin}: sha256 {actual} does not match params data.sha256 {expected_sha256}")
        _validate_tiff(tmp, origin)


def _validate_tiff(path: Path, origin: str) -> None:
    try:
        read_tiff(path)
    except EmsegError as exc:
        raise EmsegError(str(exc).replace(str(path), origin)) from None


def check_binary_labels(labels: np.ndarray, origin: str) -> None:
    """Check that a label stack is binary: 0 = membrane and at most one positive value = cell.

    Raises:
        EmsegError: Other values are found (the first few are named, with `origin`).
    """
    values = np.unique(labels)
    if values.size > 2 or (values.size == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise EmsegError(f"{origin}: labels must be binary (0 = membrane, one positive value = cell), found values {shown}")


def validate_raw(images: Path, labels: Path, test_images: Path) -> dict[str, StackInfo]:
    """Check that the fetched stacks belong together; return what they hold.

    The labels must have the images' shape and be binary.

    Returns:
        A [`StackInfo`][emseg.preprocessing.fetch.StackInfo] per stack, keyed as `RAW_NAMES`
        of [`emseg.config.layout`][emseg.config.layout].
    """
    train = read_tiff(images)
    label = read_tiff(labels)
    test = read_tiff(test_images)
    if train.shape != label.shape:
        raise EmsegError(f"{labels}: label stack shape {label.shape} does not match image stack {images} shape {train.shape}")
    if label.ndim != 3:
        raise EmsegError(f"{labels}: expected a 2-D or 3-D stack")
    check_binary_labels(label, str(labels))
    return {
        key: StackInfo(path.name, tuple(stack.shape), str(stack.dtype))
        for key, path, stack in (("train_images", images, train), ("train_labels", labels, label), ("test_images", test_images, test))
    }


def fetch(source: str, out_dir: str | os.PathLike[str], names: dict[str, str], sha256: dict[str, str] | None = None) -> dict[str, StackInfo]:
    """Fill `out_dir` with the three stacks, copied or downloaded and validated.

    On any failure `out_dir` is left as it was.

    Args:
        source: A local folder, or an http(s) base URL.
        out_dir: The folder of the raw stacks (`data/raw`); they are stored under the names of
            `RAW_NAMES` whatever the source calls them.
        names: Each stack's file name at the source, keyed as `RAW_NAMES`.
        sha256: Optional `{file name at the source: sha256}` to check.

    Returns:
        A [`StackInfo`][emseg.preprocessing.fetch.StackInfo] per stack.

    Raises:
        EmsegError: A missing source or file, a failed or truncated download, a checksum
            mismatch, an unreadable TIFF, stacks that do not belong together or non-binary
            labels; the message names the file at its source.
    """
    if not is_url(source) and not Path(source).is_dir():
        raise EmsegError(f"{source}: source folder not found (params data.source)")
    sha256 = sha256 or {}
    unknown = set(sha256) - set(names.values())
    if unknown:
        raise EmsegError(f"params data.sha256: names {sorted(unknown)} are none of the fetched files {sorted(names.values())}")
    with staged_directory(out_dir) as staging:
        for key, raw_name in RAW_NAMES.items():
            _fetch_one(source, names[key], staging / raw_name, sha256.get(names[key]))
        try:
            info = validate_raw(*(staging / raw_name for raw_name in RAW_NAMES.values()))
        except EmsegError as exc:
            message = str(exc)
            for key, raw_name in RAW_NAMES.items():
                message = message.replace(str(staging / raw_name), _origin(source, names[key]))
            raise EmsegError(message) from None
    return info
