"""`archsim parallel` on arrays (issue 18: the analytical model on arrays), two gaps closed: a grouped-query model's
full blocks (llama3-8b, the issue's headline shape, had been refused naming `device.mapping`: fusemax maps MHA
attention only) now run under `fusemax-gqa-noncausal` (the `attention-1pass-gqa` cascade, fusemax-gqa's dataflow
without the causal mask), and the arrays' energy (NaN before) is every device's blocks' energies plus its
memories' leakage while it waits, as a GPU's is its power over the whole layer on every device."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from archsim import library
from archsim.point import run_point
from archsim.systems.topology import load_topology

ARRAYS = "fusemax-ici-8"
N = 16384  # c = 2048 tokens per device at P = 8: whole 256-key tiles
PJ_PER_J = 1e12


def _points(cli, workload: str, *args: str) -> list[dict]:
    return json.loads(cli("parallel", "-w", workload, "--topology", ARRAYS, *args, "--json").output)["points"]


def _run(mapping: str, workload: str, seq_len: int, **sets: int):
    return run_point(mapping, workload=workload, sets={"seq_len": seq_len, "batch": 1, **sets})


def _full_block(workload: str, seq_len: int):
    """A ring's full (off-diagonal) block of `workload`, as `archsim parallel` costs it: its shapes on the unmasked
    mapping, without the decoder block that `archsim run` reads as a causal prefill (`check_causal_form`)."""
    shapes = replace(library.load_workload_spec(workload), block=None)
    return run_point("fusemax-gqa-noncausal", workload=shapes, sets={"seq_len": seq_len, "batch": 1})


def _leak_w() -> float:
    """FuseMax's leakage, by hand from its preset: every memory's leak pJ per cycle x its instances, at its clock
    (the analytical model's leakage; its compute units carry none)."""
    arch = library.load_architecture_spec("fusemax")
    per_cycle_pj = sum(m.energy.actions_pj.get("leak", 0.0) * m.instances for m in arch.memories)
    return per_cycle_pj * arch.clock_hz / PJ_PER_J


def test_the_preset_costs_full_blocks_under_the_grouped_query_mapping() -> None:
    device = load_topology(ARRAYS).gpu
    assert device.mapping.name == "fusemax-gqa-noncausal" and device.mapping.cascade == "attention-1pass-gqa"
    assert device.causal_mapping.name == "fusemax-gqa"


@pytest.mark.parametrize("seq_len, batch, heads", [(256, 1, 12), (4096, 3, 12), (2048, 2, 3)])
def test_an_mha_block_costs_under_the_gqa_mapping_what_it_does_under_fusemax(seq_len, batch, heads) -> None:
    """An MHA block is G = H groups of R = 1 query head: the GQA mapping's tiles and dataflow are fusemax's, so the
    same time and energy (one mapping serves both kinds of model)."""
    sets = {"batch": batch, "heads": heads, "kv_heads": heads}
    mha = _run("fusemax", "bert-base", seq_len, **sets)
    gqa = _run("fusemax-gqa-noncausal", "bert-base", seq_len, **sets)
    assert gqa.latency_s == mha.latency_s and gqa.energy_pj == pytest.approx(mha.energy_pj, rel=1e-12)


def test_llama3_8b_ring_runs_on_arrays(cli) -> None:
    """The issue's headline shape: a causal ring of 8 arrays over llama3-8b (32 query heads over 8 K/V heads). The
    last device runs its causal diagonal block (fusemax-gqa) and 7 earlier devices' full c x c blocks
    (fusemax-gqa-noncausal), so its compute is those points' latencies, as `archsim run` gives them."""
    c = N // 8
    [point] = _points(cli, "llama3-8b", "--scheme", "ring", "--devices", "8", "--seq-len", str(N))
    expected = _run("fusemax-gqa", "llama3-8b", c).latency_s + 7 * _full_block("llama3-8b", c).latency_s
    assert point["feasible"] and point["compute_s"] == pytest.approx(expected, rel=1e-12)
    out = cli("parallel", "--scheme", "ring", "--devices", "8", "--workload", "llama3-8b", "--seq-len", "64K",
              "--topology", ARRAYS).output
    assert "fusemax-gqa-noncausal, fusemax-gqa (causal)" in out and "error" not in out


def test_an_mha_mapping_still_refuses_a_grouped_query_block(cli, tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: t\nsource: test\ndevice: {mapping: fusemax, causal_mapping: fusemax-gqa}\n"
                    "levels:\n  - {link: tpu-v3-ici, devices: 8}\n")
    out = cli("parallel", "-w", "llama3-8b", "--topology", str(path), "--scheme", "ring", "--devices", "8",
              "--seq-len", str(N), expect=2).output
    assert "device.mapping" in out and "grouped-query" in out


def test_energy_of_a_full_ring_is_its_blocks(cli) -> None:
    """A non-causal ring of 4: every device runs 4 full c x c blocks back to back (compute-bound, nothing idle),
    so the layer's energy is 16 of those points' energies (bert-base's MHA block: fusemax's)."""
    [point] = _points(cli, "bert-base", "--scheme", "ring", "--devices", "4", "--seq-len", str(N), "--no-causal")
    block = _run("fusemax", "bert-base", N // 4)
    assert point["latency_s"] == pytest.approx(4 * block.latency_s, rel=1e-12)
    assert point["energy_pj"] == pytest.approx(16 * block.energy_pj, rel=1e-12)


def test_energy_of_a_causal_ring_adds_the_waiting_devices_leakage(cli) -> None:
    """A causal ring of 8 (llama3-8b): device d runs its diagonal block and d full blocks, then waits for the
    last device's 7 (compute-bound: the time is the last device's compute): 8 diagonal and 28 full blocks'
    energies, plus FuseMax's leakage over the 28 full blocks' time the devices wait in all."""
    c = N // 8
    [point] = _points(cli, "llama3-8b", "--scheme", "ring", "--devices", "8", "--seq-len", str(N))
    diagonal, full = _run("fusemax-gqa", "llama3-8b", c), _full_block("llama3-8b", c)
    assert point["exposed_comm_s"] == 0
    waiting_s = 28 * full.latency_s
    expected_pj = 8 * diagonal.energy_pj + 28 * full.energy_pj + _leak_w() * waiting_s * PJ_PER_J
    assert point["energy_pj"] == pytest.approx(expected_pj, rel=1e-12)
    assert _leak_w() * waiting_s * PJ_PER_J > 0


def test_energy_counts_every_tp_rank(cli) -> None:
    """tp 2 splits each rank's heads over two arrays: each array runs the same blocks at half the heads (6 of
    bert-base's 12), each head its own tiles, in half the time, so 8 arrays spend what 4 did (a block's energy and
    the waiting arrays' leakage both halve per array); without the x tp it would be half."""
    [one] = _points(cli, "bert-base", "--scheme", "zigzag", "--devices", "4", "--seq-len", str(N))
    [two] = _points(cli, "bert-base", "--scheme", "zigzag", "--devices", "4", "--tp", "2", "--seq-len", str(N))
    assert two["latency_s"] == pytest.approx(one["latency_s"] / 2, rel=1e-12)
    assert one["energy_pj"] > 0 and two["energy_pj"] == pytest.approx(one["energy_pj"], rel=1e-12)


@pytest.mark.parametrize("scheme, causal", [(s, c) for s in ("ring", "zigzag", "stripe", "allgather", "ulysses",
                                                             "usp", "megatron-sp") for c in (True, False)])
def test_each_devices_blocks_give_the_schemes_busiest_compute(scheme: str, causal: bool) -> None:
    """The blocks the energy sums per device (`seqpar._device_blocks`) are the scheme's: their busiest device's time
    is the scheme's `compute_s` (for llama3-8b on 4 arrays; usp with u = 2)."""
    from archsim.systems.seqpar import _compute, _device_blocks, parallel_time
    from archsim.systems.seqpar_spec import ParallelSpec

    spec = ParallelSpec(scheme=scheme, devices=4, gpu=load_topology(ARRAYS).gpu,
                        workload=library.load_workload_spec("llama3-8b"), seq_len=N, causal=causal,
                        topology=load_topology(ARRAYS), ulysses=2 if scheme == "usp" else None)
    result = parallel_time(spec, reference=False)
    compute = _compute(spec)
    busy = [sum(n * compute.attention_s(*block) for block, n in blocks.items()) for blocks in
            _device_blocks(spec, compute)]
    assert len(busy) == 4 and max(busy) == pytest.approx(result.compute_s, rel=1e-12)
    assert 0 < result.energy_j < float("inf")
