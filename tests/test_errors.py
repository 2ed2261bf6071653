"""emseg.errors: one clear error line, and interrupts that clean up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from emseg.errors import EmsegError, Terminated, run_with_clean_errors, terminate_as_exception
from emseg.io.atomic import atomic_output


def test_emseg_error_becomes_one_line_and_status_2(capsys) -> None:
    def fail() -> int:
        raise EmsegError("data/x.tif: file not found")

    assert run_with_clean_errors(fail, debug=False) == 2
    assert capsys.readouterr().err == "emseg: error: data/x.tif: file not found\n"


def test_debug_shows_the_traceback() -> None:
    def fail() -> int:
        raise EmsegError("boom")

    with pytest.raises(EmsegError, match="boom"):
        run_with_clean_errors(fail, debug=True)


@pytest.mark.parametrize(("signum", "status", "word"), [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_unwinds_the_body_and_removes_its_temporary_output(signum: int, status: int, word: str, tmp_path: Path, capsys) -> None:
    # Python's own SIGINT handler, whatever an earlier test or library put in its place
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _signal_body_case(signum, status, word, tmp_path, capsys)
    finally:
        signal.signal(signal.SIGINT, previous)


def _signal_body_case(signum: int, status: int, word: str, tmp_path: Path, capsys) -> None:
    def body() -> int:
        with atomic_output(tmp_path / "out.tif") as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signum)
        return 0

    assert run_with_clean_errors(body, debug=False, prog="stages/x.py") == status
    assert capsys.readouterr().err == f"stages/x.py: {word}\n"
    assert list(tmp_path.iterdir()) == []


def test_sigterm_handling_is_restored_afterwards() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), terminate_as_exception():
        os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before
