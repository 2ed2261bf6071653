from pathlib import Path

import numpy as np
import pytest
import tifffile

from emseg.errors import EmsegError
from emseg.preprocessing.fetch import RAW_NAMES, fetch, sha256_of

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
