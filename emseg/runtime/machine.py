"""What a timing was measured on: the CPU (its model and the flags that decide convolution speed), cores, GPU, versions.

Timings differ several-fold between CPUs of the same core count (AVX2 only against
AVX-512 with native bf16), so every benchmark names the CPU beside its figures.
"""

from __future__ import annotations

import os
import sys

import torch

#: the CPU features that decide how fast convolutions run: fp32 vector width, native bf16, matrix units
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_description(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU model, its CPUID family and model numbers, the flags of `CPU_FLAGS` it has, and the kernels torch picked (e.g. AVX2, AVX512).

    The numbers tell generations apart where the model name does not: a virtual machine may
    report only "AMD EPYC" for Zen 3 (family 25 model 1), Zen 4 (25/17) and Zen 5 (26/2).
    """
    first: dict[str, str] = {}
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                first.setdefault(key.strip(), value.strip())
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    flags = set(first.get("flags", "").split())
    return {
        "model": first.get("model name", "unknown"),
        "family": first.get("cpu family"),
        "model_number": first.get("model"),
        "flags": [f for f in CPU_FLAGS if f in flags],
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
    }


def machine_info() -> dict:
    """What a timing was measured on: the CPU model and flags, cores, GPU, torch and Python versions, load average."""
    cuda = torch.cuda.is_available()
    return {
        "cpu": cpu_description(),
        "cpu_count": os.cpu_count(),
        "cuda": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict) -> str:
    """[`machine_info`][emseg.runtime.machine.machine_info] in one line, for a benchmark's output."""
    gpu = f"CUDA {info['cuda_device']}" if info["cuda"] else "no CUDA"
    cpu = info.get("cpu") or {}
    flags = "/".join(cpu.get("flags") or ["no AVX2"])
    cpuid = f"family {cpu['family']} model {cpu['model_number']}; " if cpu.get("family") and cpu.get("model_number") else ""
    return (
        f"{info['cpu_count']} x {cpu.get('model', 'CPU')} ({cpuid}{flags}; torch kernels {cpu.get('torch_capability')}), {gpu}, "
        f"torch {info['torch']}, load average {' '.join(map(str, info['load_average']))}"
    )


def sgemm_peak_gflops(size: int = 4096, repeats: int = 5) -> float:
    """This machine's practical fp32 peak now: the best of `repeats` square `size` matrix products, in GFLOP/s."""
    import time

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # first call: threads and buffers set up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9
