"""Which floating-point precision a training phase computes in: `optim.precision` resolved for the device.

bf16 autocast pays only where the hardware has bfloat16 arithmetic; elsewhere it is emulated and slower than
fp32, so `auto` asks the device (measured in results/pretrain_step_profile.json: masked-position KD is x1.9
faster under bf16 on an AVX512_BF16 CPU, at the same transfer accuracy in the study).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

#: /proc/cpuinfo flags of CPUs that compute bfloat16 dot products natively
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has AVX512_BF16 or AMX-BF16 (False where /proc/cpuinfo cannot be read)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(_NATIVE_BF16_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for `device`: `auto` is bf16 where the device has native bfloat16, else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
