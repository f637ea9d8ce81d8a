"""An architecture may derive from another by `base:`, as GPU presets and systems do: a newcomer changing FuseMax's
clock or buffer had to copy its 60-line file (extension audit helper-494)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.point import prepare


def _write(folder, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_a_derived_architecture_is_its_base_with_its_own_keys_laid_over(tmp_path):
    base = library.load_architecture_spec("fusemax")
    path = _write(tmp_path, "fx.yaml", "base: fusemax\nname: fx\nclock_hz: 1.0e+9\n"
                                       "memories: {GlobalBuffer: {capacity_bytes: 33554432}}\n")
    derived = library.load_architecture_spec(path)
    buffer = replace(base.memories[1], capacity_bytes=33554432)
    expected = replace(base, name="fx", source=path, clock_hz=1.0e9,
                       memories=(base.memories[0], buffer, *base.memories[2:]))
    assert derived == expected


def test_a_derived_clock_runs_the_same_cycles_in_less_time(tmp_path):
    """A compute-bound point (BERT-base at 4096 tokens on FuseMax): the same cycles at 1 GHz instead of 940 MHz."""
    path = _write(tmp_path, "fx.yaml", "base: fusemax\nname: fx\nclock_hz: 1.0e+9\n")
    results = []
    for arch in ("fusemax", path):
        point = prepare("fusemax", arch=arch, workload="bert-base", sets={"seq_len": 4096})
        results.append(evaluate(point.binding, point.analysis, point.arch, point.mapping))
    base, fast = results
    assert fast.compute_cycles == base.compute_cycles
    assert fast.latency_s == pytest.approx(base.latency_s * 940e6 / 1e9, rel=1e-12)


def test_check_tells_a_derived_architecture_by_its_base(tmp_path, invoke):
    """Only `clock_hz` of its own (a GPU preset's key too) and a base (a system's key): told by the base, by name or
    through a file deriving from one; a GPU preset deriving with the same key stays a GPU preset."""
    clock = _write(tmp_path, "clock.yaml", "base: fusemax\nname: fx\nclock_hz: 1.0e+9\n")
    deeper = _write(tmp_path, "deeper.yaml", "base: clock.yaml\nname: fx2\n")
    gpu = _write(tmp_path, "gpu.yaml", "base: h100-sxm5\nname: slow-h100\nclock_hz: 1.0e+9\n")
    code, out = invoke("check", clock, deeper, gpu)
    assert (code, out) == (0, f"ok  {clock}: architecture fx\nok  {deeper}: architecture fx2\n"
                              f"ok  {gpu}: gpu slow-h100\n")


@pytest.mark.parametrize(("text", "where", "says"), [
    ("base: fusemax\nclock_hz: 1.0e+9\n", "name", "missing: an architecture with a base names itself"),
    ("base: nosuch\nname: fx\n", "base", "'nosuch'"),
    ("base: fusemax\nname: fx\nclock_hz: -1\n", "clock_hz", ""),
])
def test_a_bad_derived_architecture_is_refused_naming_the_field(tmp_path, text, where, says):
    path = _write(tmp_path, "fx.yaml", text)
    with pytest.raises(SpecError) as error:
        library.load_architecture_spec(path)
    assert (error.value.source, error.value.where) == (path, where) and says in error.value.message


def test_a_base_that_is_no_architecture_is_refused_at_base(tmp_path):
    _write(tmp_path, "gpu.yaml", "name: g\nsm_count: 1\n")
    path = _write(tmp_path, "fx.yaml", "base: gpu.yaml\nname: fx\n")
    with pytest.raises(SpecError) as error:
        library.load_architecture_spec(path)
    assert error.value.where == "base" and error.value.message.endswith("not an architecture (it gives no units)")
