import pytest
import torch

from tinyfast.utils import precision
from tinyfast.utils.precision import resolve_precision


@pytest.mark.parametrize(("setting", "expected"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_explicit_settings_on_the_cpu(setting, expected):
    assert resolve_precision(setting, "cpu", "test.precision") is expected


def test_auto_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu", "train.amp") is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu", "train.amp") is None


def test_cpu_flags_are_read(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu avx512f avx512_bf16\n\nprocessor : 1\nflags : fpu\n")
    monkeypatch.setattr(precision, "Path", lambda _: cpuinfo)
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16()
        cpuinfo.write_text("flags : fpu avx512f avx512bw\n")
        precision.cpu_has_native_bf16.cache_clear()
        assert not precision.cpu_has_native_bf16()
    finally:
        precision.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("setting", ["bfloat16", "", "FP32", True, None])
def test_unknown_settings_name_the_key(setting):
    with pytest.raises(ValueError, match="test.precision must be one of"):
        resolve_precision(setting, "cpu", "test.precision")


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(ValueError, match="train.amp = 'fp16' is not supported on the CPU"):
        resolve_precision("fp16", "cpu", "train.amp")
