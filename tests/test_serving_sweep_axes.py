"""Axes of a serving sweep over Lamina's design (the attention-offloading audit): the memory pool's and the compute
devices' counts move with the parallel degree each must equal, as linked axes setting `system.` fields; a field
of a link the system names by preset (`links.attention: lamina-gpu-initiated-400g`) is an axis; a boolean field
takes true/false values. Each bad value still exits 2 with one line naming the sweep file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.spec import load_sweep
from archsim.dse.sweep import run_sweep
from archsim.systems.links import load_link
from archsim.systems.system_spec import load_system, with_fields

BANDWIDTH = "system.links.attention.bytes_per_s_per_direction"
DIVIDE = "system.schedule.divide_and_conquer"
MEMORY = {"system.devices.memory.count": "memory_gpus", "system.parallelism.attention_pool": "memory_gpus"}
COMPUTE = {"system.devices.compute.count": "compute_gpus", "system.parallelism.tp": "compute_gpus"}


def _sweep(tmp_path: Path, axes: dict, **change) -> tuple[int, str, Path]:
    """`archsim sweep` of Lamina serving 5 requests at one batch over `axes`: (exit code, output, spec path)."""
    data = {"name": "lamina-axes", "system": "lamina", "workload": "llama3-70b",
            "serving": {"rate_per_s": 5.0, "requests": 5, "lengths": "azure-conv", "seed": 0, "max_batch": 64},
            "axes": axes, "objectives": ["throughput_tok_s", "cost_per_token_usd"], **change}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = CliRunner().invoke(main, ["sweep", str(path), "--db", str(tmp_path / "sweep.sqlite"), "--local"])
    return result.exit_code, result.output.strip().removeprefix("error: "), path


def _refused(tmp_path: Path, axes: dict, **change) -> str:
    """The one line a sweep over `axes` exits 2 with, its sweep file's path dropped; no store is written."""
    code, output, path = _sweep(tmp_path, axes, **change)
    assert code == 2 and "\n" not in output and output.startswith(f"{path}: "), output
    assert not (tmp_path / "sweep.sqlite").exists()
    return output.removeprefix(f"{path}: ")


def test_linked_axes_sweep_the_dop_each_count_with_the_degree_it_must_equal(tmp_path):
    """A memory count alone was refused at load (it must equal parallelism.attention_pool): a linked axis sets
    both from one value, and two such axes are Lamina's DOP (compute GPUs, memory GPUs) grid."""
    axes = {"linked.compute_gpus": {"values": [2, 4], "set": COMPUTE},
            "linked.memory_gpus": {"values": [2, 4], "set": MEMORY}}
    code, output, path = _sweep(tmp_path, axes)
    assert code == 0 and "4 points (4 new, 0 reused), 4 feasible" in output, output
    spec = load_sweep(path)
    assert spec.fields({"linked.compute_gpus": 4, "linked.memory_gpus": 2}) == {
        "system.devices.compute.count": 4, "system.parallelism.tp": 4,
        "system.devices.memory.count": 2, "system.parallelism.attention_pool": 2}
    df = run_sweep(spec, tmp_path / "sweep.sqlite")
    # more compute GPUs run the weights faster; more memory GPUs cost more per hour
    by_dop = df.set_index(["linked.compute_gpus", "linked.memory_gpus"])
    assert by_dop.throughput_tok_s[(4, 4)] > by_dop.throughput_tok_s[(2, 4)]
    assert by_dop.cost_per_token_usd[(2, 4)] > by_dop.cost_per_token_usd[(2, 2)]


@pytest.mark.parametrize("axes, field, message", [
    # a value the fields refuse: the field is named, as the value sets several
    ({"linked.memory_gpus": {"values": [2, 0], "set": MEMORY}}, "axes.linked.memory_gpus.values[1]",
     "devices.memory.count: expected a device count per node"),
    # a count linked without the degree it must equal
    ({"linked.memory_gpus": {"values": [2], "set": {"system.devices.memory.count": "memory_gpus"}}},
     "axes.linked.memory_gpus.values[0]",
     "devices.memory.count: expected parallelism.attention_pool = 4 memory devices, got 2"),
    ({"linked.memory_gpus": {"values": [2], "set": {"system.devices.pool.count": "memory_gpus"}}},
     "axes.linked.memory_gpus.set.system.devices.pool.count", "not a field of this system: it has no devices.pool"),
    ({"linked.memory_gpus": {"values": [2], "set": {"arch.units.array2d.shape": "memory_gpus"}}},
     "axes.linked.memory_gpus.set.arch.units.array2d.shape", "a linked field of a sweep of a system starts with "
                                                             "'system.'"),
    ({"linked.memory_gpus": {"values": [2], "set": MEMORY}, "system.devices.memory.count": [2]},
     "axes.system.devices.memory.count", "also set by axes.linked.memory_gpus.set.system.devices.memory.count"),
    # a plain axis of the degree alone: the count it no longer matches is named
    ({"system.parallelism.attention_pool": [2]}, "axes.system.parallelism.attention_pool[0]",
     "devices.memory.count: expected parallelism.attention_pool = 2 memory devices, got 4"),
])
def test_a_bad_linked_system_axis_exits_2_naming_the_sweep_file_and_field(tmp_path, axes, field, message):
    output = _refused(tmp_path, axes)
    assert output.startswith(f"{field}: {message}"), output


def test_a_linked_degree_the_workloads_entry_shadows_is_never_read(tmp_path):
    """duplex-gpu runs Mixtral at its parallelism.by_workload entry: a linked template of the top-level tp is
    refused at the template, as a plain axis of it is."""
    axes = {"linked.tp": {"values": [2], "set": {"system.parallelism.tp": "tp"}}}
    output = _refused(tmp_path, axes, system="duplex-gpu", workload="mixtral-8x7b",
                      objectives=["throughput_tok_s", "tbt_p99_s"])
    assert output.startswith("axes.linked.tp.set.system.parallelism.tp: never read: "), output


def test_a_field_of_a_link_named_by_preset_is_an_axis(tmp_path):
    """The serving sweep docstring's example axis (system.links.tp.bytes_per_s_per_direction) was refused, as the
    link is a preset name: the preset is written inline with the one field changed."""
    code, output, _ = _sweep(tmp_path, {BANDWIDTH: [2.0e+10, 4.57e+10]})
    assert code == 0 and "2 points (2 new, 0 reused), 2 feasible" in output, output
    lamina, preset = load_system("lamina"), load_link("lamina-gpu-initiated-400g")
    link = with_fields(lamina, {"links.attention.bytes_per_s_per_direction": 2.0e+10}).links["attention"]
    assert link.bytes_per_s_per_direction == 2.0e+10
    assert (link.name, link.latency_s, link.citation) == (preset.name, preset.latency_s, preset.citation)
    assert with_fields(lamina, {"links.tp.latency_s": 0.0}).links["tp"].latency_s == 0.0


@pytest.mark.parametrize("axes, field, message", [
    ({BANDWIDTH: [2.0e+10, 0]}, f"axes.{BANDWIDTH}[1]", "expected a bandwidth in bytes/s per direction"),
    ({"system.links.attention.bandwidth": [2.0e+10]}, "axes.system.links.attention.bandwidth", "unknown key"),
    ({"system.links.ep.latency_s": [1.0e-6]}, "axes.system.links.ep.latency_s", "no links.ep"),
])
def test_a_bad_link_field_axis_exits_2_naming_the_sweep_file_and_field(tmp_path, axes, field, message):
    output = _refused(tmp_path, axes)
    assert output.startswith(f"{field}: ") and message in output, output


def test_a_boolean_field_takes_true_and_false(tmp_path):
    code, output, _ = _sweep(tmp_path, {DIVIDE: [True, False]})
    assert code == 0 and "2 points (2 new, 0 reused), 2 feasible" in output, output
    for value in (True, False):  # the value reaches the system each point builds
        system = with_fields(load_system("lamina"), {DIVIDE.removeprefix("system."): value})
        assert system.schedule.divide_and_conquer is value


@pytest.mark.parametrize("axes, field, message", [
    ({DIVIDE: [True, "yes"]}, f"axes.{DIVIDE}[1]", "expected true or false, got 'yes'"),
    ({"system.devices.memory.count": [True]}, "axes.system.devices.memory.count[0]", "expected a number, got True"),
])
def test_a_value_of_the_wrong_kind_for_its_field_exits_2(tmp_path, axes, field, message):
    assert _refused(tmp_path, axes) == f"{field}: {message}"
