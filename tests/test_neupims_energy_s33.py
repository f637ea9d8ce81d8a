"""Energy of one NeuPIMs decode layer, hand-computed from pim.md §5's per-action energies: every arithmetic op at the
NPU's 0.32 pJ (a MAC two ops, on the arrays, the vector units or the PIM), every bit over the HBM interface at
3.59 pJ, a K/V element read inside its bank at 0.55 pJ a bit.

GPT-3 7B at TP 4 (per device: 8 heads of 128, hidden 4096, FFN 4096), FP16, B = 4 decodes at context c = 600 (two
512-token rows of V, the second part-filled). Before these tests, npu-only's decode attention MACs on the vector
units were free (only the arrays' MACs were priced) and the PIM's GWRITE/READRES bus bytes were timed, not priced.
"""

from __future__ import annotations

import math

import pytest

from archsim.systems import pim as pim_model
from archsim.systems import pim_device
from archsim.systems.neupims import system
from archsim.systems.system_model import layer_phases

OP_PJ, OFFCHIP_PJ_PER_BIT, BANK_PJ_PER_BIT = 0.32, 3.59, 0.55
HIDDEN, HEADS, HEAD_DIM, TP, WORD_BYTES = 4096, 8, 128, 4, 2  # heads per device
B, CONTEXT = 4, 600
ROW_WORDS = 512  # a 1 KB PIM row of FP16


def attention_macs() -> int:
    """q.K and p.V of every request: 2 x c x heads x head_dim MACs each."""
    return B * 2 * CONTEXT * HEADS * HEAD_DIM


def softmax_ops() -> int:
    """The cascade's non-MAC ops per request: max, exp and add of the numerator, the denominator's add (each
    heads x c), the division (heads x head_dim)."""
    return B * (4 * HEADS * CONTEXT + HEADS * HEAD_DIM)


def dense_pj() -> float:
    """The layer's dense ops on the NPU, the same in every mode: QKV, output projection and FFN on the arrays with
    their weights streamed once; the new K and V written; two layernorms (7 x hidden + 4 ops a token: sum, mean,
    centring, sum of squares as MACs, rsqrt, scale and shift; their gain and bias read), two residual adds and
    GELU on the vector units."""
    weights = 12 * HIDDEN * HIDDEN // TP
    array_pj = 2 * B * weights * OP_PJ + (weights + 2 * 2 * HIDDEN) * WORD_BYTES * 8 * OFFCHIP_PJ_PER_BIT
    kv_written_pj = B * 2 * HEADS * HEAD_DIM * WORD_BYTES * 8 * OFFCHIP_PJ_PER_BIT
    vector_ops = B * (2 * (7 * HIDDEN + 4) + 2 * HIDDEN + 4 * HIDDEN // TP)
    return array_pj + kv_written_pj + vector_ops * OP_PJ


def npu_only_attention_pj() -> float:
    """K and V read from HBM; every MAC (two ops) and softmax op on the vector units."""
    kv_bytes = B * 2 * CONTEXT * HEADS * HEAD_DIM * WORD_BYTES
    return kv_bytes * 8 * OFFCHIP_PJ_PER_BIT + (2 * attention_macs() + softmax_ops()) * OP_PJ


def pim_bus_bytes() -> int:
    """What crosses the HBM bus per request: GWRITE q (heads x head_dim) and the probabilities (heads x c) in,
    READRES the logits (heads x c, one per head of a key's 512-word slice) and the outputs (head_dim per head and
    512-token row of V, ceil(600 / 512) = 2 rows) out."""
    words = HEADS * HEAD_DIM + 2 * HEADS * CONTEXT + HEADS * HEAD_DIM * math.ceil(CONTEXT / ROW_WORDS)
    return B * words * WORD_BYTES


def pim_attention_pj() -> float:
    """Each MAC reads its K/V element in its bank and costs two ops; the host's softmax ops; the bus bytes."""
    return (attention_macs() * (8 * WORD_BYTES * BANK_PJ_PER_BIT + 2 * OP_PJ) + softmax_ops() * OP_PJ
            + pim_bus_bytes() * 8 * OFFCHIP_PJ_PER_BIT)


def test_pim_bus_bytes_by_hand() -> None:
    """4 x (1024 + 9600 + 2048) words x 2 B = 101,376 B."""
    assert pim_bus_bytes() == 4 * (8 * 128 + 2 * 8 * 600 + 8 * 128 * 2) * 2 == 101_376


@pytest.mark.parametrize("mode, attention_pj", [("npu-only", npu_only_attention_pj),
                                                ("npu+pim", pim_attention_pj), ("neupims", pim_attention_pj)])
def test_decode_layer_energy_by_hand(mode, attention_pj) -> None:
    """The model's attention and whole-layer energy equal the hand sums: the vector units' MACs and the PIM's bus
    bytes are priced like the arrays' MACs and the NPU's HBM stream."""
    phases = layer_phases(system(mode, "gpt3-7b"), [CONTEXT] * B)
    assert phases.attention.energy_j == pytest.approx(attention_pj() * 1e-12, rel=1e-9)
    assert phases.total.energy_j == pytest.approx((dense_pj() + attention_pj()) * 1e-12, rel=1e-9)


def test_attention_energy_gap_is_the_banks_not_the_path() -> None:
    """npu-only and npu+pim price the same MACs and softmax ops alike: their attention energies differ by the K/V
    read (off chip at 3.59 pJ/b against in-bank 0.55 pJ/b) less the PIM's bus bytes, nothing else."""
    only = layer_phases(system("npu-only", "gpt3-7b"), [CONTEXT] * B).attention.energy_j
    pim = layer_phases(system("npu+pim", "gpt3-7b"), [CONTEXT] * B).attention.energy_j
    kv_bits = attention_macs() * WORD_BYTES * 8
    expected_pj = kv_bits * (OFFCHIP_PJ_PER_BIT - BANK_PJ_PER_BIT) - pim_bus_bytes() * 8 * OFFCHIP_PJ_PER_BIT
    assert (only - pim) * 1e12 == pytest.approx(expected_pj, rel=1e-9)


def test_fused_mha_prices_the_same_ops() -> None:
    """The artifact's FusedMHA (`--as-artifact`'s npu-only) changes the time, not the work: its MACs on the arrays
    and its softmax on the vector units cost what the default's vector units do."""
    fused = system("npu-only", "gpt3-7b", {"devices.npu.attention_timing": "artifact-fused-mha"})
    phases = layer_phases(fused, [CONTEXT] * B)
    assert phases.attention.energy_j == pytest.approx(npu_only_attention_pj() * 1e-12, rel=1e-9)


def test_bus_words_of_grouped_and_fp32_passes() -> None:
    """GQA: each of heads / kv_heads passes moves a kv_heads-head pass's words (2 KV heads of 128: one 256-word
    slice of q, 2 logits a key); FP32: a 1 KB row holds 256 words, so q is 4 slices of 2 heads (8 logits a key)
    and V's outputs come once per 256 tokens (3 rows at 600)."""
    pim = system("neupims", "gpt3-7b").devices["pim"].spec
    assert pim_device.bus_words(pim, 600, 2, 128) == 2 * 128 + 600 * 2 + 2 * (600 + 128 * 2)
    fp32 = pim_model.at_word_bytes(pim, 4)
    assert pim_device.bus_words(fp32, 600, 8, 128) == 8 * 128 + 600 * 8 + 8 * (600 + 128 * 3)
