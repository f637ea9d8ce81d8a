"""Defects a fuzzing round of `archsim parallel` found (scratch /tmp/fz/par), each pinned:

- a long context was refused because the one-device reference's kernel call did not fit one GPU, though every
  device's calls did (zigzag on 16 H100s at 6M; eager PyTorch ring on 8 A100s at 32K);
- non-causal zigzag was always refused (the memory model asked for 2P chunks, the timing for P);
- LASP's largest context was a length whose chunks are not whole 64-token blocks, which LASP then refused;
- head-parallel (megatron-sp) decode asked for a length that is a multiple of P, though it cuts heads;
- an efficiency above 1 (a kernel that computes the masked scores on one device) was printed without a word;
- allgather on one device was not the one-device run, and its reference changed with P;
- usp with u = 1 or r = 1 held an all-to-all buffer or a K, V block that nothing moves;
- a tp beyond the KV heads was refused, though tensor parallelism repeats a KV head;
- megatron-sp's refusal of the query heads spoke of repeating KV heads; `--scheme` help left out distattention;
  parallel.csv wrote max_context_tokens as a float.
"""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.library import load_workload_spec
from archsim.systems.seqpar import _compute, parallel_time
from archsim.systems.seqpar_compute import LINEAR_BLOCK
from archsim.systems.seqpar_memory import inference_memory
from archsim.systems.seqpar_spec import ParallelSpec, token_multiple
from archsim.systems.topology import load_topology

LLAMA8 = load_workload_spec("llama3-8b")
MQA8 = replace(LLAMA8, name="mqa8b", params={**LLAMA8.params, "kv_heads": 1})  # one KV head
LINEAR = load_workload_spec("linear-llama3-1b")
HGX, DGX = load_topology("hgx-h100"), load_topology("dgx-a100")
A100, RTX = load_gpu("a100-80gb-sxm4"), load_gpu("rtx-4090")
EAGER = "PyTorch standard attention"
M = 1024 * 1024


def _spec(scheme: str, devices: int, workload, seq_len: int, topology=HGX, gpu=None, **changes) -> ParallelSpec:
    return ParallelSpec(scheme, devices, workload, seq_len, gpu or topology.gpu, topology, **changes)


# --- 1. the one-device reference is timed beyond the GPU's DRAM ---------------------------------------------------


def test_zigzag_at_6m_on_16_h100s_is_timed_though_one_gpu_cannot_hold_it() -> None:
    """6M tokens of Llama-3-8B: Q and O are 6291456 x 32 x 128 x 2 B = 51.5 GB each, K and V 12.9 GB: 128.8 GB,
    beyond an H100's 85.9 GB, so FlashAttention-2 cannot run the one-device call; each of 16 devices holds 393K
    tokens and fits (80.5 GB). The reference is still timed: FA2's causal call is compute bound and quadratic, so
    the one-device time at 6M is (6 / 1)^2 = 36 times that at 1M, within 1 %."""
    at_6m = parallel_time(_spec("zigzag", 16, LLAMA8, 6 * M))
    at_1m = parallel_time(_spec("zigzag", 16, LLAMA8, M))
    assert at_6m.feasible and at_6m.time_s > 0
    assert at_6m.ideal_s / at_1m.ideal_s == pytest.approx(36, rel=0.01)
    with pytest.raises(SpecError, match=r"128\.8 GB"):  # a device's own call must still fit
        _compute(_spec("zigzag", 1, LLAMA8, 6 * M)).attention_s(6 * M, 6 * M, True)


def test_eager_ring_on_8_a100s_at_32k_is_timed() -> None:
    """Eager PyTorch holds at least two 32 x 32K x 32K bf16 score matrices (137 GB) for one device's call; each
    of 8 devices' 4K x 4K blocks holds 2.1 GB. The point was refused by its reference; it is timed now."""
    result = parallel_time(_spec("ring", 8, LLAMA8, 32 * 1024, topology=DGX, gpu=A100, kernel=EAGER))
    assert result.feasible and result.ideal_s > 0


# --- 2. non-causal zigzag ------------------------------------------------------------------------------------------


def test_non_causal_zigzag_is_ring_layout_and_takes_multiples_of_p() -> None:
    """Without the mask every block is a full c x c call whatever the chunk pairing, so non-causal zigzag times
    and holds what the ring does, with N a multiple of P (32K on 4 devices was refused asking for a multiple of 8
    of the 4 tokens the context search probed)."""
    zigzag = parallel_time(_spec("zigzag", 4, LLAMA8, 32 * 1024, causal=False))
    ring = parallel_time(_spec("ring", 4, LLAMA8, 32 * 1024, causal=False))
    assert token_multiple(_spec("zigzag", 4, LLAMA8, 32 * 1024, causal=False)) == 4
    assert (zigzag.time_s, zigzag.memory_bytes, zigzag.max_context_tokens) == (
        ring.time_s, ring.memory_bytes, ring.max_context_tokens)


# --- 3. LASP's largest context -------------------------------------------------------------------------------------


def test_lasp_max_context_is_a_length_lasp_takes() -> None:
    """LASP's chunks run Lightning Attention-2 in 64-token blocks, so its largest context on 2 devices is a
    multiple of 2 x 64 = 128 tokens (it was 2202406, chunks of 1101203 tokens, which LASP refused), and it is timed."""
    for scheme in ("lasp1", "lasp2"):
        found = parallel_time(_spec(scheme, 2, LINEAR, 48 * 1024, gpu=RTX)).max_context_tokens
        assert found % (2 * LINEAR_BLOCK) == 0 and found > 2_000_000
        at_max = parallel_time(_spec(scheme, 2, LINEAR, found, gpu=RTX))
        assert at_max.feasible and at_max.max_context_tokens == found


# --- 4. head-parallel decode takes any length ----------------------------------------------------------------------


def test_megatron_sp_decode_takes_a_length_not_a_multiple_of_p() -> None:
    """Head-parallel decode gives each of 2 devices 16 query and 4 KV heads over all 100001 cached tokens: its
    cache is 32 layers x 4 heads x 128 x (K, V) x 2 B x 100001 tokens, and its largest context is searched over
    every length (the memory at it fits, one token more does not)."""
    result = parallel_time(_spec("megatron-sp", 2, LLAMA8, 100001, direction="decode"))
    memory = inference_memory(LLAMA8, "megatron-sp", 2, 100001, decode=True)
    assert result.feasible and memory.kv_cache_bytes == 32 * 4 * 128 * 2 * 2 * 100001
    assert memory.activations_bytes == 0 and result.memory_bytes == memory.total_bytes
    found, capacity = result.max_context_tokens, result.spec.gpu.dram_bytes
    assert inference_memory(LLAMA8, "megatron-sp", 2, found, decode=True).total_bytes <= capacity
    assert inference_memory(LLAMA8, "megatron-sp", 2, found + 1, decode=True).total_bytes > capacity
    with pytest.raises(SpecError, match="seq_len"):  # the prefill still cuts the sequence
        parallel_time(_spec("megatron-sp", 2, LLAMA8, 100001))


# --- 5. efficiency above 1 is explained ----------------------------------------------------------------------------


def test_efficiency_above_one_carries_a_note_naming_the_masked_scores() -> None:
    """Eager PyTorch computes every score of a causal call and builds the mask (its causal call costs more than a
    full one), while the ring skips the blocks above the diagonal: 8 A100s at 16K run faster than 1/8 of one
    device. FlashAttention-2 skips masked tiles on one device too: efficiency below 1 and no note."""
    eager = parallel_time(_spec("ring", 8, LLAMA8, 16 * 1024, topology=DGX, gpu=A100, kernel=EAGER))
    flash = parallel_time(_spec("ring", 8, LLAMA8, 16 * 1024, topology=DGX, gpu=A100))
    assert eager.efficiency > 1 and "computes the masked scores" in eager.note and EAGER in eager.note
    assert eager.record().extras["note"] == eager.note
    assert flash.efficiency < 1 and flash.note == ""


def test_efficiency_note_is_printed_under_the_table(cli) -> None:
    out = cli("parallel", "-w", "llama3-8b", "--scheme", "ring", "--devices", "8", "--seq-len", "16K", "--gpu",
              "a100-80gb-sxm4", "--topology", "dgx-a100", "--kernel", EAGER).output
    assert "note: ring P=8 N=16384: efficiency above 1" in out


# --- 6. allgather on one device ------------------------------------------------------------------------------------


def test_allgather_on_one_device_is_the_one_device_run() -> None:
    """One device gathers nothing and runs one causal call: its time is ring's on one device (21.51 vs 20.79 ms
    before), and every P's reference is that time / P."""
    h200 = load_gpu("h200-sxm")
    ring, alone = (parallel_time(_spec(scheme, 1, LLAMA8, 30000, gpu=h200)) for scheme in ("ring", "allgather"))
    assert alone.time_s == ring.time_s and alone.efficiency == 1.0
    # and holds what the one-device run holds, so its largest context is ring's (it counted a gathered K, V copy)
    assert alone.memory_bytes == ring.memory_bytes and alone.max_context_tokens == ring.max_context_tokens
    same_n = [parallel_time(_spec("allgather", p, LLAMA8, 32 * 1024)) for p in (1, 2, 4)]
    assert [r.ideal_s * r.spec.devices for r in same_n] == pytest.approx([same_n[0].time_s] * 3, rel=1e-12)


# --- 7. usp holds only what it moves -------------------------------------------------------------------------------


@pytest.mark.parametrize(("ulysses", "alike"), [(1, "zigzag"), (4, "ulysses")])
def test_usp_with_one_group_or_one_ring_holds_what_its_reduction_holds(ulysses: int, alike: str) -> None:
    """usp on 4 devices with u = 1 is zigzag (no all-to-all), with u = 4 (r = 1) ulysses (no ring): the same
    bytes per device."""
    usp = inference_memory(LLAMA8, "usp", 4, 32 * 1024, ulysses_degree=ulysses)
    assert usp == inference_memory(LLAMA8, alike, 4, 32 * 1024)


def test_a_ring_of_one_device_holds_no_block_in_flight() -> None:
    """Llama-7B (MHA, its attention the peak) at 32K: a ring of 2 devices holds per token of its chunk the layer
    input h and Q, K, V, O and the next K, V (Table 1's 6·c·h): 7 h words; a ring of one passes nothing on and
    holds BPT's 1 + 4 = 5 h words."""
    llama7 = load_workload_spec("llama-7b")
    per_token = 4096 * 2  # h words of 2 B

    def words(devices: int, scheme: str = "ring") -> float:
        return inference_memory(llama7, scheme, devices, 32768).activations_bytes / (32768 / devices * per_token)

    assert (words(2), words(1), words(1, "memeff-attn-ffn")) == (7, 5, 5)


# --- 8. tp beyond the KV heads -------------------------------------------------------------------------------------


def test_tp_beyond_the_kv_heads_repeats_the_kv_head() -> None:
    """One KV head over tp 2: each rank keeps 16 query heads and the KV head (repeated, as Megatron TP does), so
    a ring device's cache over 32K / 2 tokens is 32 layers x 1 x 128 x (K, V) x 2 B x 16384."""
    result = parallel_time(_spec("ring", 2, MQA8, 32 * 1024, tp=2))
    compute = _compute(_spec("ring", 2, MQA8, 32 * 1024, tp=2))
    assert result.feasible and (compute.heads, compute.kv_heads) == (16, 1)
    assert inference_memory(MQA8, "ring", 2, 32 * 1024, tp=2).kv_cache_bytes == 32 * 1 * 128 * 2 * 2 * 16384
    assert parallel_time(_spec("megatron-sp", 2, MQA8, 32 * 1024, tp=2)).feasible


def test_tp_neither_dividing_nor_a_multiple_of_the_kv_heads_exits_2_naming_tp(cli, tmp_path) -> None:
    """24 query heads over 3 KV heads: tp 2 divides the query heads but neither divides 3 KV heads nor is a
    multiple of them (a rank would hold a KV head and a half)."""
    model = tmp_path / "odd.yaml"
    model.write_text("\n".join(["name: odd", "block: llama", "params:",
                                 *(f"  {k}: {v}" for k, v in {**LLAMA8.params, "heads": 24, "kv_heads": 3}.items())]))
    out = cli("parallel", "-w", str(model), "--scheme", "ring", "--devices", "2", "--seq-len", "32K", "--tp", "2",
              expect=2).output
    assert out.count("\n") == 1
    assert out.startswith("error: --tp: expected a divisor of heads 24 that divides kv_heads 3")


# --- 9. cosmetics --------------------------------------------------------------------------------------------------


def test_megatron_sp_refusing_query_heads_does_not_speak_of_kv_heads() -> None:
    with pytest.raises(SpecError, match=r"params\.heads") as refused:
        parallel_time(_spec("megatron-sp", 3, LLAMA8, 3 * 1024))
    assert "KV head" not in str(refused.value)


def test_scheme_help_names_distattention() -> None:
    from archsim.commands.parallel_cmd import parallel_cmd

    scheme = next(option for option in parallel_cmd.params if option.name == "schemes")
    assert "distattention" in scheme.help


def test_parallel_csv_writes_max_context_as_a_whole_number(cli, tmp_path) -> None:
    cli("parallel", "-w", "llama3-8b", "--scheme", "ring", "--devices", "2,3", "--seq-len", "32K", "--out",
        str(tmp_path))
    rows = list(csv.DictReader((tmp_path / "parallel.csv").open()))
    assert [row["max_context_tokens"] for row in rows] == ["852524", ""]
