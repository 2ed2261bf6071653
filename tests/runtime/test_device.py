import pytest
import torch

from emseg.errors import EmsegError
from emseg.runtime.device import amp_dtype, autocast, native_bf16, select_device, uses_amp

CPU = torch.device("cpu")


def test_auto_picks_cuda_only_when_present() -> None:
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == CPU


def test_unknown_or_missing_device_is_a_clear_error() -> None:
    with pytest.raises(EmsegError, match="unknown device 'tpu'"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(EmsegError, match="no CUDA device"):
            select_device("cuda")


def test_cpu_mixed_precision_only_when_asked_for() -> None:
    assert not uses_amp(CPU, True)
    assert uses_amp(CPU, True, cpu_bf16=True)
    assert not uses_amp(CPU, False, cpu_bf16=True)
    assert amp_dtype(CPU) == torch.bfloat16


@pytest.mark.parametrize("native", [False, True])
def test_auto_uses_bf16_exactly_where_the_cpu_has_it(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import emseg.runtime.device

    monkeypatch.setattr(emseg.runtime.device, "native_bf16", lambda: native)
    assert uses_amp(CPU, True, cpu_bf16="auto") is native
    assert not uses_amp(CPU, False, cpu_bf16="auto")


def test_native_bf16_reads_the_cpu_flags() -> None:
    flags = open("/proc/cpuinfo").read()
    assert native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_autocast_on_cpu_runs_convolutions_in_bf16_only_with_cpu_bf16(cpu_bf16: bool) -> None:
    conv = torch.nn.Conv2d(1, 2, 3)
    with autocast(CPU, True, cpu_bf16):
        out = conv(torch.randn(1, 1, 8, 8))
    assert out.dtype == (torch.bfloat16 if cpu_bf16 else torch.float32)
