"""`archsim parallel` on arrays (issue 18, "Costs": the analytical model on arrays). A topology may name arrays in
place of a GPU (`device: {mapping, causal_mapping}`, `topology.ArrayDevice`); each block a scheme runs is then a
design point of the analytical model under the array's mappings (`seqpar_compute.ArrayCompute`), so a block costs
what `archsim run -m MAPPING` prints for its sizes. Before, `--gpu fusemax` was "not a GPU preset" and a topology
could hold only a GPU. What has no array form (the backward, decode, a layer's other ops, LASP) is refused, exit 2
naming the option, never timed on a GPU instead."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.systems.topology import load_topology

ARRAYS = "fusemax-ici-8"  # eight FuseMax arrays over TPU v3 ICI
POINT = ("parallel", "-w", "bert-base", "--topology", ARRAYS)
N = 16384  # c = 2048 tokens per device at P = 8: whole 256-key tiles, zigzag's half chunks too


def _points(cli, *args: str) -> list[dict]:
    return json.loads(cli(*POINT, *args, "--json").output)["points"]


def _run_s(cli, mapping: str, seq_len: int, batch: int = 1) -> float:
    """`archsim run`'s latency of bert-base's attention under `mapping` at `seq_len` tokens and `batch` sequences."""
    out = cli("run", "-m", mapping, "-w", "bert-base", "--set", f"seq_len={seq_len}", "--set", f"batch={batch}",
              "--json").output
    return json.loads(out)["latency_s"]


def test_the_preset_holds_fusemax_arrays_over_tpu_ici() -> None:
    topology = load_topology(ARRAYS)
    device = topology.gpu
    assert device.name == "fusemax" and device.mapping.name == "fusemax-gqa-noncausal"
    assert device.causal_mapping.name == "fusemax-gqa" and topology.capacity() == 8
    assert topology.levels[0].link.name == "tpu-v3-ici" and math.isnan(device.dram_bytes)


@pytest.mark.parametrize("causal, mapping", [(True, "fusemax-gqa"), (False, "fusemax-gqa-noncausal")])
def test_one_array_is_archsim_run_of_the_mapping(cli, causal: bool, mapping: str) -> None:
    """One device runs the whole sequence as one block: the causal one under fusemax-gqa, a full one under
    fusemax-gqa-noncausal, the same number as `archsim run` gives for those sizes."""
    flags = () if causal else ("--no-causal",)
    for batch in (1, 4):
        [point] = _points(cli, "--scheme", "ring", "--devices", "1", "--seq-len", str(N), "--batch", str(batch),
                          *flags)
        assert point["latency_s"] == pytest.approx(_run_s(cli, mapping, N, batch), rel=1e-12)
        assert point["gpu"] == "fusemax" and "fusemax-gqa (causal)" in point["kernel"]


def test_ring_blocks_are_the_mappings_blocks(cli) -> None:
    """The last device of a causal ring of 8 runs its causal diagonal block and 7 full c x c blocks: its compute is
    those points' latencies under the two mappings; the ICI link hides under them (compute-bound)."""
    c = N // 8
    [point] = _points(cli, "--scheme", "ring", "--devices", "8", "--seq-len", str(N))
    expected = _run_s(cli, "fusemax-gqa", c) + 7 * _run_s(cli, "fusemax-gqa-noncausal", c)
    assert point["compute_s"] == pytest.approx(expected, rel=1e-12)
    assert point["link"] == "tpu-v3-ici" and point["exposed_comm_s"] == 0 and point["comm_s"] > 0


def test_causal_ring_is_bounded_by_its_imbalance_and_zigzag_is_not(cli) -> None:
    """As the model computes them on arrays: the basic causal ring near half of ideal, zigzag and stripe closer."""
    points = _points(cli, "--scheme", "ring,zigzag,stripe", "--devices", "1,4,8", "--seq-len", str(N))
    eff = {(p["scheme"], p["devices"]): p["efficiency"] for p in points}
    assert all(eff[(s, 1)] == pytest.approx(1.0) for s in ("ring", "zigzag", "stripe"))
    for p in (4, 8):
        assert eff[("ring", p)] < 0.6
        assert eff[("zigzag", p)] > 0.85 and eff[("stripe", p)] > eff[("ring", p)]
    ideal = {p["devices"]: p["ideal_s"] for p in points if p["scheme"] == "ring"}
    assert ideal[8] == pytest.approx(_run_s(cli, "fusemax-gqa", N) / 8, rel=1e-12)


def test_allgather_ulysses_usp_megatron_run_on_arrays(cli) -> None:
    points = _points(cli, "--scheme", "allgather,ulysses,usp,megatron-sp", "--ulysses", "2", "--devices", "4",
                     "--seq-len", str(N))
    assert all(p["feasible"] and p["latency_s"] > 0 for p in points), points
    ulysses = next(p for p in points if p["scheme"] == "ulysses")
    # a quarter of the heads over all N tokens: the causal point of fusemax-gqa at 3 heads
    out = cli("run", "-m", "fusemax-gqa", "-w", "bert-base", "--set", f"seq_len={N}", "--set", "batch=1", "--set",
              "heads=3", "--set", "kv_heads=3", "--json").output
    assert ulysses["compute_s"] == pytest.approx(json.loads(out)["latency_s"], rel=1e-12)


def test_memory_is_not_modelled_on_unbounded_arrays(cli) -> None:
    """FuseMax's DRAM has no size: no memory per device nor largest context (null); the energy is the blocks'
    (tests/test_array_parallel_gqa_energy.py)."""
    [point] = _points(cli, "--scheme", "zigzag", "--devices", "8", "--seq-len", str(N))
    assert point["feasible"] and point["memory_bytes"] is None and point["max_context_tokens"] is None
    assert point["energy_pj"] > 0


@pytest.mark.parametrize("args, option", [
    (("--direction", "fwd+bwd"), "--direction"),
    (("--direction", "decode"), "--direction"),
    (("--scope", "layer"), "--scope"),
    (("--kernel", "FlashAttention-2"), "--kernel"),
])
def test_what_arrays_do_not_model_is_refused_naming_the_option(cli, args: tuple[str, ...], option: str) -> None:
    out = cli(*POINT, "--scheme", "ring", "--devices", "8", "--seq-len", str(N), *args, expect=2).output
    assert out.startswith(f"error: {option}")
    assert "not modelled on arrays" in out or "GPU kernel" in out


def test_lasp_is_refused_on_arrays_naming_scheme(cli) -> None:
    out = cli("parallel", "-w", "linear-llama3-1b", "--topology", ARRAYS, "--scheme", "lasp2", "--devices", "8",
              "--seq-len", str(N), expect=2).output
    assert out.startswith("error: --scheme") and "not modelled on arrays" in out


def test_gpu_topologies_are_unchanged() -> None:
    assert load_topology("dgx-a100").gpu.name == "a100-80gb-sxm4"


def _topology(tmp_path: Path, device: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nsource: test\n{device}\nlevels:\n  - {{link: tpu-v3-ici, devices: 8}}\n")
    return path


@pytest.mark.parametrize("device, field", [
    ("gpu: h100-sxm5\ndevice: {mapping: fusemax}", "gpu"),
    ("", "gpu"),
    ("device: {mapping: fusemax-gqa}", "device.mapping"),
    ("device: {mapping: fusemax, causal_mapping: fusemax}", "device.causal_mapping"),
    ("device: {mapping: fusemax, causal_mapping: fusemax-gqa, speed: 2}", "device.speed"),
    ("device: {mapping: no-such-mapping}", "device.mapping"),
    ("device: {causal_mapping: fusemax-gqa}", "device"),
])
def test_bad_device_entries_name_the_field(tmp_path: Path, device: str, field: str) -> None:
    with pytest.raises(SpecError) as error:
        load_topology(_topology(tmp_path, device))
    assert error.value.where == field


def test_without_a_causal_mapping_a_causal_block_is_refused(cli, tmp_path: Path) -> None:
    path = _topology(tmp_path, "device: {mapping: fusemax}")
    out = cli("parallel", "-w", "bert-base", "--topology", str(path), "--scheme", "ring", "--devices", "4",
              "--seq-len", str(N), expect=2).output
    assert "device.causal_mapping" in out
    [full] = json.loads(cli("parallel", "-w", "bert-base", "--topology", str(path), "--scheme", "ring", "--devices",
                            "4", "--seq-len", str(N), "--no-causal", "--json").output)["points"]
    assert full["compute_s"] == pytest.approx(4 * _run_s(cli, "fusemax", N // 4), rel=1e-12)


def test_a_block_shorter_than_the_tile_is_padded_once_not_per_square() -> None:
    """FuseMax pads a block to its 256-token tiles once: a 128 x 256 block is one padded 256 x 256 square (so it
    costs what the 256 x 256 block does), not two squares of 128 each padded to 256; a 384 x 1024 block is two
    512 x 512 squares, as 512 x 1024 is."""
    from archsim.systems.seqpar_compute import ArrayCompute

    compute = ArrayCompute(load_topology(ARRAYS).gpu, 1, 12, 12, 64)
    full = compute.attention_s(256, 256, False)
    assert compute.attention_s(128, 256, False) == full == compute.attention_s(256, 128, False)
    assert compute.attention_s(384, 1024, False) == compute.attention_s(512, 1024, False)
    assert compute.attention_s(1024, 384, False) == compute.attention_s(512, 1024, False)


def test_tp_beyond_the_arrays_counts_arrays() -> None:
    """tp splits a rank's heads over arrays, as over GPUs in attention scope; more than the topology holds is
    refused, counting arrays."""
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, ["parallel", "--scheme", "ring", "--devices", "8", "--tp", "2", "--workload",
                                       "bert-base", "--seq-len", "16K", "--topology", ARRAYS])
    assert result.exit_code == 2 and "8 devices x tp 2 = 16 arrays, beyond the 8 of topology" in result.output
