"""emseg.runtime.machine: the CPU named beside every timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from emseg.runtime.machine import cpu_description, machine_info, machine_line

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: another
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZEN3, {"model": "AMD EPYC", "family": "25", "model_number": "1", "flags": ["avx2"]}),
        (ZEN3.replace("fma", "fma avx512f avx512_bf16"), {"flags": ["avx2", "avx512f", "avx512_bf16"]}),
        ("processor\t: 0\n", {"model": "unknown", "family": None, "model_number": None, "flags": []}),
    ],
)
def test_the_cpu_is_named_by_model_cpuid_numbers_and_flags(tmp_path: Path, text: str, expected: dict) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    description = cpu_description(str(cpuinfo))
    assert {key: description[key] for key in expected} == expected


def test_a_missing_cpuinfo_leaves_the_cpu_unknown(tmp_path: Path) -> None:
    assert cpu_description(str(tmp_path / "absent"))["model"] == "unknown"


def test_the_machine_line_carries_the_cpuid_numbers() -> None:
    info = machine_info()
    info["cpu"] = {"model": "AMD EPYC", "family": "25", "model_number": "1", "flags": ["avx2"], "torch_capability": "AVX2"}
    assert machine_line(info).startswith(f"{info['cpu_count']} x AMD EPYC (family 25 model 1; avx2; torch kernels AVX2)")
