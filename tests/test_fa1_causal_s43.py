"""FlashAttention v1's causal forward skips the key blocks past each row for its DRAM traffic too, as for its tiles:
its Q re-reads and fp32 output round trips had been a full call's, so where they bind (an L40S, an H100 PCIe) a
causal call cost as much as a full one and a P-device scheme's efficiency against it read up to 1.78 (audit
helper-509)."""

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import family_of, predict

FA1 = "FlashAttention (v1)"


def _fwd_s(gpu: str, causal: bool, seqlen: int = 16384) -> float:
    case = AttentionCase("fwd", 1, 16, 16, 128, seqlen, causal, "fp16")
    return predict(FA1, case, load_gpu(gpu), load_calibration().family_params(family_of(FA1))).time_s


@pytest.mark.parametrize("gpu", ["l40s", "rtx-4090", "h100-pcie", "h100-sxm5", "a100-80gb-sxm4"])
def test_a_causal_forward_takes_about_half_a_full_ones_time_on_every_gpu(gpu: str) -> None:
    """About half; on the RTX 4090 0.67: its 128 CTAs (16 heads x 8 row splits) fill its 128 SMs in one wave, whose
    time is the last split's, the rows visiting the most key blocks (the schedule bound)."""
    assert 0.45 < _fwd_s(gpu, True) / _fwd_s(gpu, False) < 0.7


def test_no_scheme_beats_its_devices_against_the_one_device_causal_call() -> None:
    result = CliRunner().invoke(main, ["parallel", "--scheme", "zigzag,allgather", "--devices", "6", "--workload",
                                       "llama2-7b", "--seq-len", "24576", "--kernel", FA1, "--topology", "hgx-h100",
                                       "--gpu", "l40s", "--json"])
    assert result.exit_code == 0, result.output
    import json

    efficiencies = [p["efficiency"] for p in json.loads(result.output)["points"]]
    assert efficiencies and all(e <= 1.05 for e in efficiencies), efficiencies


@pytest.mark.parametrize(("kernel", "label"), [
    (FA1, "FlashAttention v1"), ("FlashAttention Triton", "the FlashAttention Triton kernel"),
    ("Triton tutorial fused attention", "the Triton tutorial"),
    ("archsim naive 3-pass (Triton)", "archsim's naive 3-pass kernel"),
    ("archsim FlashAttention-2 (Triton)", "archsim's FlashAttention-2 kernel")])
def test_a_kernel_without_grouped_query_attention_refuses_a_gqa_case(kernel: str, label: str) -> None:
    """Their launchers take q, k and v of one head count; they had been timed on GQA cases with K and V read once per
    KV head, a kernel that does not exist (audit helper-513)."""
    gqa = AttentionCase("fwd", 1, 32, 8, 128, 4096, True, "fp16")
    result = predict(kernel, gqa, load_gpu("h100-sxm5"), load_calibration().family_params(family_of(kernel)))
    assert not result.feasible
    assert result.reason == f"{label} takes a K and V per query head (got 32 query heads over 8 KV heads)"


def test_flashattention2s_gqa_backward_writes_dk_dv_per_query_head_then_sums_them() -> None:
    """mha_bwd writes dK and dV per query head (dk_expanded, dv_expanded) and sums them over each KV group: a GQA
    backward moves more bytes than the MHA one, not fewer (it had charged dK and dV at the KV heads: 1.62 against
    2.02 GB on an H100 at 16K; audit helper-513)."""
    gpu, params = load_gpu("h100-sxm5"), load_calibration().family_params(family_of("FlashAttention-2"))
    mha, gqa = (predict("FlashAttention-2", AttentionCase("bwd", 1, 32, kv, 128, 16384, True, "fp16"), gpu, params)
                for kv in (32, 8))
    dram = [sum(launch.dram_bytes for launch in r.launches) for r in (mha, gqa)]
    expanded = 2 * 32 * 16384 * 128 * 2
    # K and V read at the KV heads (3/4 of them fewer), dK and dV written per query head as MHA's, then the sum reads
    # those and writes the KV heads'
    assert dram[1] == pytest.approx(dram[0] - 0.75 * expanded + expanded + expanded / 4)
    assert gqa.launches[-1].name == "bwd sum dK, dV over each group" and gqa.time_s > mha.time_s


def test_fa1s_full_forward_traffic_is_its_closed_form_at_a_ragged_length() -> None:
    """A full call of N = 4001 tokens (a last step of one row), d 128 (128-key blocks, kb of them): Q, K, V and O
    once, each row's fp32 O read and written per key block after its first, its Q re-read per key block. A causal
    call's K and V loads through L2 are about half the full call's (its CTAs stop at their last row's block)."""
    n, d, bh, e = 4001, 128, 16, 2
    kb = -(-n // 128)
    params = load_calibration().family_params(family_of(FA1))
    full, causal = (predict(FA1, AttentionCase("fwd", 1, 16, 16, d, n, c, "fp16"), load_gpu("l40s"), params)
                    .launches[0] for c in (False, True))
    assert full.dram_bytes == 4 * bh * n * d * e + bh * (kb - 1) * n * d * 2 * 4 + bh * kb * n * d * e
    assert full.l2_bytes - full.dram_bytes == full.ctas * kb * 2 * 128 * d * e  # each CTA loads every K, V block
    assert causal.l2_bytes - causal.dram_bytes < 0.6 * (full.l2_bytes - full.dram_bytes)


def test_the_efficiency_note_says_a_skipping_kernel_skips() -> None:
    """FA v1's causal call takes 0.57 of a full one on an H100 at 64K: the note above 1 says it skips most masked
    scores, not that it computes them (a threshold mutant said the latter: helper-514)."""
    import json

    result = CliRunner().invoke(main, ["parallel", "--scheme", "allgather", "--devices", "4", "-w", "llama2-7b",
                                       "--seq-len", "64K", "--kernel", FA1, "--gpu", "h100-sxm5", "--json"])
    note = json.loads(result.output)["points"][0]["note"]
    assert "of a full call's time (the kernel skips most masked scores" in note, note


def test_flashattention2s_gqa_backward_holds_its_expanded_gradients() -> None:
    """Its dK and dV per query head are live until their sum: the plan holds them beside the operands (the memory
    model and the DRAM check count them), an MHA backward or a GQA forward holds nothing more."""
    from archsim.model.gpu_kernels import plans

    def held(kv_heads: int, direction: str) -> float:
        case = AttentionCase(direction, 1, 32, kv_heads, 128, 16384, True, "fp16")
        return max(plan.held_bytes for plan in plans("FlashAttention-2", case, load_gpu("h100-sxm5")))

    assert held(8, "bwd") == held(8, "fwd+bwd") == 2 * 32 * 16384 * 128 * 2
    assert held(32, "bwd") == held(8, "fwd") == 0
