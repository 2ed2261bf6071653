from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image
from scipy import ndimage

from emseg.errors import EmsegError
from emseg.preprocessing.fetch import RAW_NAMES, fetch, sha256_of

from conftest import synthetic_stack

NAMES = dict(RAW_NAMES)


def test_fetch_copies_and_reports_stacks(isbi_like_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    info = fetch(str(isbi_like_source), out, NAMES)
    assert sorted(p.name for p in out.iterdir()) == sorted(RAW_NAMES.values())
    assert info["train_images"].shape == (8, 96, 80)
    assert info["test_images"].shape == (3, 96, 80)


def test_fetch_checks_sha256(isbi_like_source: Path, tmp_path: Path) -> None:
    good = sha256_of(isbi_like_source / "train-volume.tif")
    fetch(str(isbi_like_source), tmp_path / "ok", NAMES, {"train-volume.tif": good})
    with pytest.raises(EmsegError, match="sha256"):
        fetch(str(isbi_like_source), tmp_path / "bad", NAMES, {"train-volume.tif": "0" * 64})
    assert not any((tmp_path / "bad").glob("*.tif"))


def test_missing_source_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match="source folder not found"):
        fetch(str(tmp_path / "nowhere"), tmp_path / "raw", NAMES)


def test_mismatched_counts_leave_nothing_behind(isbi_like_source: Path, tmp_path: Path) -> None:
    labels = tifffile.imread(isbi_like_source / "train-labels.tif")
    tifffile.imwrite(isbi_like_source / "train-labels.tif", labels[:5], photometric="minisblack")
    out = tmp_path / "raw"
    with pytest.raises(EmsegError, match="train-labels.tif.*does not match"):
        fetch(str(isbi_like_source), out, NAMES)
    assert not any(out.glob("*.tif"))


def test_non_binary_labels_are_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    labels = tifffile.imread(isbi_like_source / "train-labels.tif")
    labels[0, 0, :3] = [1, 2, 3]
    tifffile.imwrite(isbi_like_source / "train-labels.tif", labels, photometric="minisblack")
    with pytest.raises(EmsegError, match="binary"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)


def test_text_file_named_tif_is_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    (isbi_like_source / "test-volume.tif").write_text("not an image")
    with pytest.raises(EmsegError, match="test-volume.tif: not a readable TIFF"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)


def test_four_dimensional_tiff_is_refused(isbi_like_source: Path, tmp_path: Path) -> None:
    tifffile.imwrite(isbi_like_source / "test-volume.tif", np.zeros((2, 2, 8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(EmsegError, match="expected a 2-D image or 3-D stack"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)


class _Server:
    """A local HTTP server on 127.0.0.1: /good/ serves the files, /short/ cuts them off, /wrong/ serves text."""

    def __init__(self, folder: Path) -> None:
        import http.server
        import threading

        files = {p.name: p.read_bytes() for p in folder.iterdir()}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                _, mode, name = self.path.split("/", 2)
                body = files.get(name)
                if body is None or mode == "missing":
                    self.send_error(404)
                    return
                if mode == "wrong":
                    body = b"<html>not a tiff</html>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "short" else body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_source(isbi_like_source: Path):
    server = _Server(isbi_like_source)
    yield server.url
    server.close()


def test_fetch_over_http(http_source: str, tmp_path: Path) -> None:
    info = fetch(f"{http_source}/good", tmp_path / "raw", NAMES)
    assert info["train_labels"].shape == (8, 96, 80)


@pytest.mark.parametrize("mode, message", [("short", "download"), ("wrong", "not a readable TIFF"), ("missing", "HTTP 404")])
def test_failed_downloads_leave_nothing_a_later_stage_trusts(http_source: str, tmp_path: Path, mode: str, message: str) -> None:
    out = tmp_path / "raw"
    out.mkdir()
    with pytest.raises(EmsegError, match=message) as info:
        fetch(f"{http_source}/{mode}", out, NAMES)
    assert "\n" not in str(info.value)
    assert list(out.iterdir()) == []


# --- a lab's own layouts -------------------------------------------------------------------------


def _vnc_like(folder: Path, slices: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """raw/NN.tif slices and membranes/NN.png 1-bit masks (True = membrane), as the VNC stack comes."""
    images, labels = synthetic_stack(slices, 32, 24)
    for index in range(slices):
        (folder / "raw").mkdir(parents=True, exist_ok=True)
        (folder / "membranes").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(folder / "raw" / f"{index:02d}.tif", images[index])
        Image.fromarray(labels[index] == 0).save(folder / "membranes" / f"{index:02d}.png")
    return images, labels


def test_folders_of_slices_become_tiff_stacks_and_no_test_stack_is_fine(tmp_path: Path) -> None:
    images, labels = _vnc_like(tmp_path / "src")
    info = fetch(str(tmp_path / "src"), tmp_path / "raw", {"train_images": "raw", "train_labels": "membranes"})
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["train-labels.tif", "train-volume.tif"]
    assert set(info) == {"train_images", "train_labels"} and info["train_labels"].dtype == "uint8"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "raw" / "train-volume.tif"), images)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "raw" / "train-labels.tif"), np.where(labels == 0, 255, 0))  # 1-bit: 0/255


def test_hdf5_and_ome_zarr_sources(tmp_path: Path) -> None:
    images, labels = synthetic_stack(3, 32, 24)
    (tmp_path / "src").mkdir()
    with h5py.File(tmp_path / "src" / "vol.h5", "w") as f:
        f["raw"], f["labels"] = images, labels
    root = zarr.open_group(str(tmp_path / "src" / "test.ome.zarr"), mode="w", zarr_format=2)
    root.create_array("0", data=images[:2])
    root.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": n, "type": "space"} for n in "zyx"], "datasets": [{"path": "0"}]}]
    names = {"train_images": "vol.h5:/raw", "train_labels": "vol.h5:/labels", "test_images": "test.ome.zarr"}
    info = fetch(str(tmp_path / "src"), tmp_path / "raw", names)
    assert info["test_images"].shape == (2, 32, 24) and info["train_labels"].origin == str(tmp_path / "src" / "vol.h5:/labels")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "raw" / "train-labels.tif"), labels)


def test_instance_labels_are_checked_as_instances(tmp_path: Path, isbi_like_source: Path) -> None:
    labels = tifffile.imread(isbi_like_source / "train-labels.tif")
    instances = np.stack([ndimage.label(s > 0)[0] for s in labels]).astype(np.uint16)
    tifffile.imwrite(isbi_like_source / "train-labels.tif", instances, photometric="minisblack")
    with pytest.raises(EmsegError, match="train-labels.tif: labels must be binary .*set labels: instances"):
        fetch(str(isbi_like_source), tmp_path / "raw", NAMES)
    fetch(str(isbi_like_source), tmp_path / "raw", NAMES, labels="instances")
    assert tifffile.imread(tmp_path / "raw" / "train-labels.tif").dtype == np.uint16  # stored as given: convert converts


def test_label_files_that_match_no_image_name_the_source(tmp_path: Path) -> None:
    _vnc_like(tmp_path / "src")
    (tmp_path / "src" / "membranes" / "02.png").rename(tmp_path / "src" / "membranes" / "2.png")
    with pytest.raises(EmsegError, match=r"src/membranes: label files 2\.png match no image in .*src/raw"):
        fetch(str(tmp_path / "src"), tmp_path / "raw", {"train_images": "raw", "train_labels": "membranes"})
    assert not (tmp_path / "raw").exists()


def test_a_folder_has_no_sha256(tmp_path: Path) -> None:
    _vnc_like(tmp_path / "src")
    with pytest.raises(EmsegError, match=r"src/raw: params data.sha256 checks single files"):
        fetch(str(tmp_path / "src"), tmp_path / "raw", {"train_images": "raw", "train_labels": "membranes"}, {"raw": "0" * 64})


def test_http_serves_single_files_only(http_source: str, tmp_path: Path) -> None:
    with pytest.raises(EmsegError, match=r"/good/raw: an http\(s\) source serves single files") as info:
        fetch(f"{http_source}/good", tmp_path / "raw", {**NAMES, "train_images": "raw"})
    assert "\n" not in str(info.value)
