"""`optim.precision: auto` picks bf16 only where the device computes bfloat16 natively."""

from __future__ import annotations

import torch

from pruneofa.train.precision import cpu_has_native_bf16, resolve_precision


def _cpuinfo(tmp_path, name: str, flags: str):
    path = tmp_path / name
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    return path


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "zen4", "fpu avx2 avx512f avx512_vnni avx512_bf16"))
    assert cpu_has_native_bf16(_cpuinfo(tmp_path, "sapphire", "fpu avx2 amx_tile amx_bf16 amx_int8"))
    assert not cpu_has_native_bf16(_cpuinfo(tmp_path, "icelake", "fpu avx2 avx512f avx512_vnni"))
    assert not cpu_has_native_bf16(tmp_path / "missing")


def test_auto_resolves_per_device_and_explicit_choices_stay(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr("pruneofa.train.precision.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr("pruneofa.train.precision.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"


def test_the_step_autocasts_exactly_when_auto_resolves_to_bf16(monkeypatch):
    from types import SimpleNamespace

    from pruneofa.config.schema import OptimConfig
    from pruneofa.train.loop import MLMTrainer

    trainer = SimpleNamespace(spec=SimpleNamespace(optim=OptimConfig(precision="auto")), device=torch.device("cpu"))
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr("pruneofa.train.precision.cpu_has_native_bf16", lambda native=native: native)
        with MLMTrainer.autocast(trainer):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
