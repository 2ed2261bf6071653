"""Device choice and mixed precision: CUDA with AMP when present, else CPU, from one place."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from emseg.config.defaults import DEVICES
from emseg.errors import EmsegError


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for ``cuda`` without one is an error."""
    if name not in DEVICES:
        raise EmsegError(f"unknown device {name!r} ({', '.join(DEVICES)})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EmsegError("device 'cuda' requested but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cpu":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), where bf16 convolutions are the fast ones."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_amp(device: torch.device, enabled: bool, cpu_bf16: bool | str = False) -> bool:
    """Mixed precision: on CUDA when ``enabled``; on CPU only when ``cpu_bf16`` also asks (``"auto"``:
    when the CPU has native bf16), because bf16 convolutions pay off only on CPUs with native bf16
    (AVX-512 BF16, AMX) and are slower than fp32 elsewhere."""
    if not enabled:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (native_bf16() if cpu_bf16 == "auto" else bool(cpu_bf16))


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool, cpu_bf16: bool | str = False) -> Iterator[None]:
    if uses_amp(device, enabled, cpu_bf16):
        with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):
            yield
    else:
        yield
