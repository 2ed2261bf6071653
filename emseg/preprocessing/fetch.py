"""Fetch the training stacks from a local folder or an http(s) base URL into `data/raw/`, validated.

`data.train_images`, `data.train_labels` and `data.test_images` may each name, at a local
source, a multi-page TIFF, a TIFF/PNG slice, a folder of slices, an OME-Zarr image or an
HDF5 dataset (`file.h5:/dataset`); an http(s) source serves single files only. A TIFF is
copied byte for byte; any other layout is read ([`load_stack`][emseg.io.stacks.load_stack])
and stored as one multi-page TIFF, so that `data/raw/` always holds the stacks of `RAW_NAMES`
(no test stack when `data.test_images` is empty).

Everything lands in a staging folder and is validated first (readable stacks, 8- or 16-bit
images, labels that match the images by name, shape and pixel size and that
[`canonical_labels`][emseg.preprocessing.labels.canonical_labels] accepts, the optional
sha256), so that a later stage never trusts a half-fetched or wrong file; errors name the
file at its source.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emseg.config.layout import RAW_NAMES
from emseg.errors import EmsegError
from emseg.io.atomic import atomic_output, staged_directory
from emseg.io.images import IMAGE_SUFFIXES, TIFF_SUFFIXES, write_tiff
from emseg.io.stacks import Stack, VoxelSize, is_zarr, load_stack, spec_file, split_hdf5_spec
from emseg.preprocessing.labels import LabelKind, LabelledSlices, check_image_type, labelled_from_stacks

DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20


@dataclass(frozen=True)
class StackInfo:
    """What a fetched stack holds: its file name under `data/raw/`, shape, pixel type, and the pixel size its source carries."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    pixel_size: VoxelSize | None = None
    origin: str = ""


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


def _is_tiff(name: str) -> bool:
    return split_hdf5_spec(name) is None and Path(name).suffix.lower() in TIFF_SUFFIXES


def _is_single_file(name: str) -> bool:
    """Whether a stack's name at the source is one file (what an http(s) source can serve)."""
    file = spec_file(name)
    return not file.endswith("/") and not is_zarr(file) and (split_hdf5_spec(name) is not None or Path(file).suffix.lower() in IMAGE_SUFFIXES)


def _fetch_stack(source: str, key: str, name: str, staging: Path, expected_sha256: str | None) -> tuple[Stack, bool]:
    """Read one stack from the source, a TIFF copied verbatim into `staging` on the way.

    Returns:
        The stack (its `spec` the name at the source) and whether its file already lies in
        `staging` under its `RAW_NAMES` name (a TIFF); otherwise it is still to be written.
    """
    origin = _origin(source, name)
    file, inner = spec_file(name), split_hdf5_spec(name)
    scratch = None
    if is_url(source):
        if not _is_single_file(name):
            raise EmsegError(
                f"{origin}: an http(s) source serves single files (TIFF, PNG, HDF5), not folders or OME-Zarr; "
                "copy it to a local folder and set data.source to that folder"
            )
        local = staging / (RAW_NAMES[key] if _is_tiff(name) else f".download-{key}{Path(file).suffix}")
        scratch = None if _is_tiff(name) else local
        with atomic_output(local) as tmp:
            _download(_origin(source, file), tmp)
    else:
        src = Path(source) / file
        if not src.exists():
            raise EmsegError(f"{src}: file not found (params data.source = {source!r})")
        if _is_tiff(name) and src.is_file():
            local = staging / RAW_NAMES[key]
            with atomic_output(local) as tmp:
                shutil.copyfile(src, tmp)
        else:
            local = src
    try:
        if expected_sha256 is not None:
            if local.is_dir():
                raise EmsegError(f"{origin}: params data.sha256 checks single files; this is a folder")
            actual = sha256_of(local)
            if actual != expected_sha256.lower():
                raise EmsegError(f"{origin}: sha256 {actual} does not match params data.sha256 {expected_sha256}")
        spec = f"{local}:{inner[1]}" if inner and inner[1] else str(local)
        try:
            stack = load_stack(spec)
        except EmsegError as exc:
            raise EmsegError(str(exc).replace(str(local), _origin(source, file))) from None
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    return replace(stack, spec=origin), local == staging / RAW_NAMES[key]


def validate_stacks(
    stacks: dict[str, Stack], labels: LabelKind = "membrane", membrane_value: int | str = "auto", unlabelled: int | None = None
) -> LabelledSlices:
    """Check that the stacks, keyed as `RAW_NAMES`, belong together; the labelled slices they make.

    Raises:
        EmsegError: Images that are not 8- or 16-bit integers, labels that do not match the
            images (names, shape, pixel size) or that [`canonical_labels`][emseg.preprocessing.labels.canonical_labels]
            refuses; the message names the stack's `spec`.
    """
    if "test_images" in stacks:
        check_image_type(stacks["test_images"])
    return labelled_from_stacks(stacks["train_images"], stacks["train_labels"], labels, membrane_value, unlabelled)


def validate_raw(
    images: Path,
    labels: Path,
    test_images: Path | None = None,
    kind: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
) -> dict[str, StackInfo]:
    """Check that stacks on disk belong together ([`validate_stacks`][emseg.preprocessing.fetch.validate_stacks]); what they hold.

    Returns:
        A [`StackInfo`][emseg.preprocessing.fetch.StackInfo] per stack, keyed as `RAW_NAMES`
        of [`emseg.config.layout`][emseg.config.layout] (no test stack without `test_images`).
    """
    paths = {"train_images": images, "train_labels": labels, **({"test_images": test_images} if test_images is not None else {})}
    stacks = {key: load_stack(path) for key, path in paths.items()}
    validate_stacks(stacks, kind, membrane_value, unlabelled)
    return {key: _info(Path(paths[key]).name, stack) for key, stack in stacks.items()}


def _info(name: str, stack: Stack) -> StackInfo:
    return StackInfo(name, tuple(stack.pixels.shape), str(_stored(stack.pixels).dtype), stack.pixel_size, stack.spec)


def _stored(pixels: np.ndarray) -> np.ndarray:
    """What a stack read from another layout is stored as: 1-bit masks as 0/255 (Fiji shows them; both read as the same mask)."""
    return np.where(pixels, np.iinfo(np.uint8).max, 0).astype(np.uint8) if pixels.dtype == bool else pixels


def fetch(
    source: str,
    out_dir: str | os.PathLike[str],
    names: dict[str, str],
    sha256: dict[str, str] | None = None,
    labels: LabelKind = "membrane",
    membrane_value: int | str = "auto",
    unlabelled: int | None = None,
) -> dict[str, StackInfo]:
    """Fill `out_dir` with the stacks, copied, downloaded or read from another layout, and validated.

    On any failure `out_dir` is left as it was.

    Args:
        source: A local folder, or an http(s) base URL (single files only).
        out_dir: The folder of the raw stacks (`data/raw`); they are stored under the names of
            `RAW_NAMES` whatever the source calls them.
        names: Each stack's name at the source, keyed as `RAW_NAMES`: a TIFF, a TIFF/PNG slice,
            a folder of slices, an OME-Zarr image, `file.h5:/dataset`. Without `test_images`
            no test stack is fetched.
        sha256: Optional `{file name at the source: sha256}` to check (single files; an HDF5 stack's file).
        labels: The kind of labels, `membrane` or `instances` (`data.labels`), to check them.
        membrane_value: A mask's membrane value, or `auto` (`data.membrane_value`).
        unlabelled: The label value of unlabelled pixels, or None (`data.unlabelled`).

    Returns:
        A [`StackInfo`][emseg.preprocessing.fetch.StackInfo] per stack.

    Raises:
        EmsegError: A missing source or file, a folder asked of an http(s) source, a failed or
            truncated download, a checksum mismatch, an unreadable stack, stacks that do not
            belong together or labels that cannot be put in emseg's convention; the message
            names the file at its source.
    """
    if not is_url(source) and not Path(source).is_dir():
        raise EmsegError(f"{source}: source folder not found (params data.source)")
    missing = [key for key in ("train_images", "train_labels") if not names.get(key)]
    if missing:
        raise EmsegError(f"params data.{missing[0]}: name the stack at the source")
    names = {key: name for key, name in names.items() if name}
    sha256 = sha256 or {}
    files = {spec_file(name) for name in names.values()}
    unknown = set(sha256) - files
    if unknown:
        raise EmsegError(f"params data.sha256: names {sorted(unknown)} are none of the fetched files {sorted(files)}")
    with staged_directory(out_dir) as staging:
        stacks, copied = {}, {}
        for key in RAW_NAMES:
            if key in names:
                stacks[key], copied[key] = _fetch_stack(source, key, names[key], staging, sha256.get(spec_file(names[key])))
        validate_stacks(stacks, labels, membrane_value, unlabelled)
        for key, stack in stacks.items():
            if not copied[key]:
                write_tiff(staging / RAW_NAMES[key], _stored(stack.pixels))
    return {key: _info(RAW_NAMES[key], stack) for key, stack in stacks.items()}
