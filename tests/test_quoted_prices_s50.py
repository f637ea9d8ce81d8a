"""A memory's read and write prices are quoted at a width and its leak at a clock (energy/area auditor, s50): a spec
that changes `access_bits` or `clock_hz` without restating the prices keeps the energy per bit (Accelergy's
widthscale, fusemax-energy.md s4) and the leak power. FuseMax's buffer at 1024 b had priced 4x the energy of its
4096-b rows for the same bits (65536 b: 1/16), and a clock doubled had doubled the leak power."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from archsim import library
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_columns
from archsim.model.event import simulate
from archsim.point import prepare
from archsim.systems.seqpar_compute import ArrayCompute
from archsim.systems.topology import ArrayDevice

BUFFER = ("GlobalBuffer", "read"), ("GlobalBuffer", "write")
DRAM = ("DRAM", "read"), ("DRAM", "write")


@pytest.fixture(scope="module")
def point():
    return prepare("fusemax", workload="bert-base", sets={"seq_len": 1024})


def _run(point, arch):
    return evaluate(point.binding, point.analysis, arch, point.mapping)


def _derived(tmp_path, layer: dict):
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump({"base": "fusemax", "name": "derived", **layer}, sort_keys=False))
    return library.load_architecture_spec(str(path))


@pytest.mark.parametrize("bits", [1024, 16384])
def test_a_derived_width_keeps_the_energy_per_bit(point, tmp_path, bits):
    base = _run(point, point.arch)
    wide = _run(point, _derived(tmp_path, {"memories": {"GlobalBuffer": {"access_bits": bits},
                                                        "DRAM": {"access_bits": bits // 8}}}))
    assert wide.latency_s == base.latency_s and wide.traffic_bytes == base.traffic_bytes
    for key in (*BUFFER, *DRAM):
        assert wide.energy_by[key] == pytest.approx(base.energy_by[key], rel=1e-12), key


def test_with_changes_and_a_width_column_keep_the_energy_per_bit(point):
    base = _run(point, point.arch)
    arch = point.arch.with_changes(**{"memories.GlobalBuffer.access_bits": 65536, "memories.DRAM.access_bits": 256})
    changed = _run(point, arch)
    columns = evaluate_columns(point.binding, point.analysis, point.arch, point.mapping,
                               {"memories.GlobalBuffer.access_bits": [1024, 65536]})
    for key in (*BUFFER, *DRAM):
        assert changed.energy_by[key] == pytest.approx(base.energy_by[key], rel=1e-12), key
        assert columns.result(1).energy_by[key] == pytest.approx(base.energy_by[key], rel=1e-12), key
    assert columns.energy_pj.tolist() == pytest.approx([base.energy_pj] * 2, rel=1e-12)


def test_prices_restated_with_a_width_are_taken_as_given_and_those_left_keep_their_energy_per_bit(point, tmp_path):
    buffer = point.arch.memory("GlobalBuffer")
    base = _run(point, point.arch)
    read_bits = base.energy_by[BUFFER[0]] / buffer.energy.actions_pj["read"] * buffer.access_bits
    both = _run(point, _derived(tmp_path, {"memories": {"GlobalBuffer": {
        "access_bits": 1024, "energy": {"actions_pj": {"read": 3000.0, "write": 4000.0}}}}}))
    assert both.energy_by[BUFFER[0]] == pytest.approx(read_bits / 1024 * 3000.0, rel=1e-12)
    read_only = _run(point, _derived(tmp_path, {"memories": {"GlobalBuffer": {
        "access_bits": 1024, "energy": {"actions_pj": {"read": 3000.0}}}}}))
    assert read_only.energy_by[BUFFER[0]] == pytest.approx(read_bits / 1024 * 3000.0, rel=1e-12)
    assert read_only.energy_by[BUFFER[1]] == pytest.approx(base.energy_by[BUFFER[1]], rel=1e-12)
    restated = point.arch.with_changes(**{"memories.GlobalBuffer.access_bits": 1024,
                                          "memories.GlobalBuffer.energy.actions_pj.read": 3000.0})
    assert _run(point, restated).energy_by == pytest.approx(read_only.energy_by, rel=1e-12)
    columns = evaluate_columns(point.binding, point.analysis, point.arch, point.mapping, {
        "memories.GlobalBuffer.access_bits": [1024], "memories.GlobalBuffer.energy.actions_pj.read": [3000.0]})
    assert columns.result(0).energy_by == pytest.approx(read_only.energy_by, rel=1e-12)


def test_a_users_own_file_quotes_its_prices_at_its_own_width_unless_it_says_otherwise(point, tmp_path):
    data = point.arch.to_dict()
    data["memories"]["GlobalBuffer"]["access_bits"] = 1024
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    own = library.load_architecture_spec(str(path))
    assert own.memory("GlobalBuffer").energy_access_bits == 1024
    base = _run(point, point.arch)
    assert _run(point, own).energy_by[BUFFER[0]] == pytest.approx(4 * base.energy_by[BUFFER[0]], rel=1e-12)
    data["memories"]["GlobalBuffer"]["energy_access_bits"] = 4096
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    quoted = library.load_architecture_spec(str(path))
    assert _run(point, quoted).energy_by[BUFFER[0]] == pytest.approx(base.energy_by[BUFFER[0]], rel=1e-12)


@pytest.mark.parametrize("clock_hz", [0.47e9, 1.88e9])
def test_a_clock_changed_alone_keeps_the_leak_power(point, tmp_path, clock_hz):
    base = _run(point, point.arch)
    leaks = [key for key in base.energy_by if key[1] == "leak"]
    runs = [_run(point, _derived(tmp_path, {"clock_hz": clock_hz})), _run(point, point.arch.with_changes(
        clock_hz=clock_hz))]
    columns = evaluate_columns(point.binding, point.analysis, point.arch, point.mapping, {"clock_hz": [clock_hz]})
    for run in (*runs, columns.result(0)):
        assert run.latency_s == pytest.approx(base.latency_s * 0.94e9 / clock_hz, rel=1e-12)
        for key in leaks:
            assert run.energy_by[key] / run.latency_s == pytest.approx(base.energy_by[key] / base.latency_s,
                                                                        rel=1e-12), key
    assert columns.energy_pj[0] == pytest.approx(runs[1].energy_pj, rel=1e-12)


def test_the_event_model_and_an_idle_array_keep_the_leak_power(point):
    """The event model charges the analytical leak over its own latency; a ring's waiting array draws the leak
    power (`ArrayCompute.idle_w`): neither moves with the clock."""
    fast = point.arch.with_changes(clock_hz=1.88e9)
    runs = [simulate(point.binding, point.analysis, arch, point.mapping).result for arch in (point.arch, fast)]
    for key in (("GlobalBuffer", "leak"), ("RF", "leak")):
        assert runs[1].energy_by[key] / runs[1].latency_s == pytest.approx(runs[0].energy_by[key] / runs[0].latency_s,
                                                                           rel=1e-12)
    idle = [ArrayCompute(ArrayDevice(arch, point.mapping, None, "t.yaml"), 1, 1, 1, 64).idle_w
            for arch in (point.arch, fast)]
    assert idle[1] == pytest.approx(idle[0], rel=1e-12)


def test_a_leak_restated_with_a_clock_is_taken_as_given(point, tmp_path):
    buffer = point.arch.memory("GlobalBuffer")
    leak = buffer.energy.actions_pj["leak"]
    run = _run(point, _derived(tmp_path, {"clock_hz": 1.88e9, "memories": {"GlobalBuffer": {
        "energy": {"actions_pj": {"leak": leak}}}}}))
    assert run.energy_by[("GlobalBuffer", "leak")] == pytest.approx(leak * run.latency_s * 1.88e9, rel=1e-12)
    other = _run(point, point.arch.with_changes(**{"clock_hz": 1.88e9,
                                                   "memories.GlobalBuffer.energy.actions_pj.leak": leak}))
    assert other.energy_by[("GlobalBuffer", "leak")] == pytest.approx(leak * run.latency_s * 1.88e9, rel=1e-12)


def test_the_quoted_width_and_clock_round_trip_and_a_restate_of_both_is_one_rule(point):
    arch = point.arch.with_changes(clock_hz=1.88e9, **{"memories.GlobalBuffer.access_bits": 1024})
    buffer = arch.memory("GlobalBuffer")
    assert (buffer.energy_access_bits, buffer.leak_clock_hz) == (4096, 0.94e9)
    assert arch.with_changes() == arch
    columns = evaluate_columns(point.binding, point.analysis, arch, point.mapping, {"clock_hz": np.array([0.94e9])})
    assert columns.energy_pj[0] == pytest.approx(_run(point, arch.with_changes(clock_hz=0.94e9)).energy_pj, rel=1e-12)
    half = point.arch.with_changes(**{"memories.GlobalBuffer.energy_access_bits": 2048})
    base = _run(point, point.arch)
    assert _run(point, half).energy_by[BUFFER[0]] == pytest.approx(2 * base.energy_by[BUFFER[0]], rel=1e-12)
    columns = evaluate_columns(point.binding, point.analysis, point.arch, point.mapping,
                               {"memories.GlobalBuffer.energy_access_bits": [2048]})
    assert columns.result(0).energy_by[BUFFER[0]] == pytest.approx(2 * base.energy_by[BUFFER[0]], rel=1e-12)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("energy_access_bits", 0, "expected the width in bits read and write are quoted at (a positive integer)"),
    ("leak_clock_hz", "fast", "expected the clock in Hz leak is quoted at (a positive number)"),
])
def test_a_bad_quoted_at_field_is_one_line_exit_2(tmp_path, invoke, field, value, says):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"base": "fusemax", "name": "bad",
                                    "memories": {"GlobalBuffer": {field: value}}}, sort_keys=False))
    code, out = invoke("check", str(path))
    assert code == 2 and out.count("\n") == 1, out
    assert out.startswith(f"error: {path}: memories.GlobalBuffer.{field}: {says}"), out
