"""FlashAttention v2.0.9's decode reads a KV slice from DRAM once per wave that reads it, not once per query head as
soon as its grid passes one wave (audit s48: H100, 64 query heads over 8 KV heads, d 128, 32K keys, 0.537 GB of
DRAM at batch 4 and 5.369 GB at batch 5), and once in all where the L2 holds the slices live between two reads.

Oracle: the grid's CTAs, a CTA per (batch, query head) with the batch fastest (FA2's grid (m_block, batch, head)),
cut into waves of `slots` CTAs, each wave reading the distinct (sequence, KV head) slices of its CTAs: counted
here one CTA at a time, apart from the model's closed form."""

import pytest

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import family_of, predict

KERNEL = "FlashAttention v2.0.9"


def _launch(case: AttentionCase, gpu_name: str):
    result = predict(KERNEL, case, load_gpu(gpu_name), load_calibration().family_params(family_of(KERNEL)))
    (launch,) = result.launches
    return launch


def _oracle_kv_bytes(case: AttentionCase, slots: int, l2_bytes: int) -> float:
    """KV bytes read from DRAM by the wave rule, counted CTA by CTA."""
    ctas = case.batch * case.heads
    waves = [{((cta // case.batch) // case.group, cta % case.batch) for cta in range(start, min(ctas, start + slots))}
             for start in range(0, ctas, slots)]
    slice_bytes = case.seqlen * case.head_dim * 2 * case.element_bytes
    live = max(case.batch, *(len(wave) for wave in waves)) * slice_bytes
    reads = case.batch * case.kv_heads if live <= l2_bytes else sum(len(wave) for wave in waves)
    return reads * slice_bytes


def _q_o_bytes(case: AttentionCase) -> float:
    return 2 * case.batch * case.heads * case.head_dim * case.element_bytes


@pytest.mark.parametrize(("gpu", "case"), [
    ("h100-sxm5", AttentionCase("decode", 5, 64, 8, 128, 32768, False, "fp16")),  # the audit's cliff, 2 waves
    ("h100-sxm5", AttentionCase("decode", 8, 64, 8, 128, 32768, False, "fp16")),
    ("h100-sxm5", AttentionCase("decode", 8, 64, 8, 128, 1024, False, "fp16")),  # live slices fit the L2
    ("l40s", AttentionCase("decode", 16, 16, 8, 256, 4096, False, "fp16")),  # gemma2-9b's heads, 2 waves
    ("l40s", AttentionCase("decode", 300, 32, 8, 128, 4096, False, "fp16")),  # siblings waves apart
    ("a100-80gb-sxm4", AttentionCase("decode", 3, 32, 32, 128, 8192, False, "fp16")),  # no grouping
])
def test_v209_decode_dram_is_the_wave_rule(gpu: str, case: AttentionCase) -> None:
    launch = _launch(case, gpu)
    slots = load_gpu(gpu).sm_count * launch.ctas_per_sm
    expected = _oracle_kv_bytes(case, slots, load_gpu(gpu).l2_bytes) + _q_o_bytes(case)
    assert launch.dram_bytes == pytest.approx(expected, rel=1e-12)


def test_v209_decode_has_no_cliff_past_one_wave() -> None:
    """One more sequence than a wave holds adds about its share of DRAM, not the group's factor (8x)."""
    per_sequence = [_launch(AttentionCase("decode", b, 64, 8, 128, 32768, False, "fp16"), "h100-sxm5").dram_bytes / b
                    for b in (4, 5)]
    assert per_sequence[1] < 1.2 * per_sequence[0], per_sequence
