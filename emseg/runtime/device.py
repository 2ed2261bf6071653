"""Device choice and mixed precision: CUDA with AMP when present, else the CPU, decided in one place.

Mixed precision on the CPU (bf16) pays off only on CPUs with native bf16 (AVX-512 BF16,
AMX) and is slower than fp32 elsewhere, so it is used there only when asked
(`train.cpu_bf16`, `auto`: where the CPU has it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from emseg.config.defaults import DEVICES
from emseg.errors import EmsegError


def select_device(name: str = "auto") -> torch.device:
    """The torch device `name` stands for: `auto` picks CUDA when available, else the CPU.

    Raises:
        EmsegError: An unknown name, or `cuda` on a machine without CUDA.
    """
    if name not in DEVICES:
        raise EmsegError(f"unknown device {name!r} ({', '.join(DEVICES)})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EmsegError("device 'cuda' requested but no CUDA device is available (use auto or cpu)")
    return torch.device(name)


def amp_dtype(device: torch.device) -> torch.dtype:
    """The autocast type of `device`: bf16 on the CPU and on GPUs that support it, else fp16."""
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
    """Whether to run in mixed precision.

    On CUDA when `enabled`; on the CPU only when `cpu_bf16` also asks (`"auto"`: when the CPU
    has native bf16), because bf16 convolutions pay off only on CPUs with native bf16
    (AVX-512 BF16, AMX) and are slower than fp32 elsewhere.
    """
    if not enabled:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (native_bf16() if cpu_bf16 == "auto" else bool(cpu_bf16))


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool, cpu_bf16: bool | str = False) -> Iterator[None]:
    """Autocast to [`amp_dtype`][emseg.runtime.device.amp_dtype] while the block runs, when mixed precision is on.

    [`uses_amp`][emseg.runtime.device.uses_amp] decides, with the same arguments; otherwise the
    block runs in full precision.
    """
    if uses_amp(device, enabled, cpu_bf16):
        with torch.autocast(device_type=device.type, dtype=amp_dtype(device)):
            yield
    else:
        yield
