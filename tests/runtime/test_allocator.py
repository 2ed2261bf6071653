"""emseg.runtime.allocator: glibc keeps freed tensor memory mapped."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from emseg.runtime import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_on_glibc_both_thresholds_are_set_and_setting_them_again_is_harmless() -> None:
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True


def test_without_a_c_library_it_does_nothing_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert allocator.keep_freed_memory() is False


def test_a_c_library_without_mallopt_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """musl and macOS have no mallopt: the call must fall back, not fail the training."""

    class NoMallopt:
        def __init__(self, name: str) -> None:
            pass

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libc.so.6")
    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.keep_freed_memory() is False
