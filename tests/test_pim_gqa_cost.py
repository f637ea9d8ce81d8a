"""Grouped-query attention on NeuPIMs' bank-PIM (`archsim.systems.pim_device`): the cost the K layout of the artifact
gives, pinned by hand-computed cycles.

Layout (../shared/reference/neupims-artifact.md §5, `PIMTensor.cc`): a bank's row holds one token's key slice (all
the device's KV heads, up to 512 FP16 words), 32 tokens a tile; V holds one dimension per bank and 512 tokens a
row. Each query head of a group is one more pass. So the time tracks query heads x rows, not KV bytes: below
4 KV heads of 128 per device a pass opens as many rows as with 4, each part-filled, and there are more passes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from archsim import library
from archsim.arch.pim import PIMSpec
from archsim.systems import neupims
from archsim.systems import pim as pim_model
from archsim.systems.models import system_model

PIM = PIMSpec()
REFRESH = 3900 / 3640  # tREFI / (tREFI - tRFC) = 15/14


def neupims_llama3_8b(kv_heads: int):
    """NeuPIMs (TP4) serving Llama-3-8B with `kv_heads` KV heads: the system model and its PIM device, its channels
    not held to their capacity (the tests read the device's cost of many requests as a table)."""
    workload = library.load_workload_spec("llama3-8b")
    grouped = replace(workload, params={**workload.params, "kv_heads": kv_heads})
    model = neupims.without_channel_check(system_model(neupims.configure("neupims", None), grouped))
    return model, model.devices["pim"]


def test_tiles_of_part_filled_and_full_k_rows() -> None:
    """An all-bank tile (32 banks): 8 G_ACTs tRRD_S 4 apart, 4 per tFAW -> last at 30 + 3 x 4 = 42; + tRCD 14 = 56;
    + columns x tCCD_L 2; + CL 14 + result bytes / 32 B a cycle; + tRP 14.
    K of 1 KV head (128 words, 8 columns, 32 x 1 x 2 = 64 B):   56 + 16 + 14 + 2 + 14 = 102.
    K of 2 KV heads (256 words, 16 columns, 128 B):             56 + 32 + 14 + 4 + 14 = 120.
    K of 4 KV heads (a full 512-word row, 32 columns, 256 B):   56 + 64 + 14 + 8 + 14 = 156.
    V (32 dimensions x 512 tokens, 32 columns, 64 B):           56 + 64 + 14 + 2 + 14 = 150."""
    assert [int(pim_model.tile_cycles(PIM, 32, columns, result_bytes))
            for columns, result_bytes in ((8, 64), (16, 128), (32, 256), (32, 64))] == [102, 120, 156, 150]


def test_one_pass_at_2048_tokens() -> None:
    """One request's pass at L = 2048, head_dim 128, before refresh (x 15/14):
    K: per 512-word slice a 100-cycle GWRITE and 2048 / 32 = 64 tiles. 1 KV head: 100 + 64 x 102 = 6,628;
    2: 100 + 64 x 120 = 7,780 (not 2 x 6,628: the same 64 tiles, fuller); 8: 2 x (100 + 64 x 156) = 20,168.
    V per head: 2048 / 512 = 4 GWRITEs (400) + 128 / 32 = 4 dimension tiles x 4 token chunks x 150 = 2,800."""
    for kv_heads, logits in ((1, 6628), (2, 7780), (8, 20168)):
        parts = pim_model.gemv_parts_cycles(PIM, 2048, kv_heads, 128)
        assert [float(part) for part in parts] == pytest.approx([logits * REFRESH, kv_heads * 2800 * REFRESH],
                                                                rel=1e-12)


@pytest.mark.parametrize(("kv_heads", "device_kv_heads", "cycles"), [
    (32, 8, 42_568 * 15 / 14),  # MHA, 1 pass:    (20,168 + 8 x 2,800) x 15/14 = 42,568 x 15/14
    (8, 2, 53_520 * 15 / 14),   # 4 passes:       4 x (7,780 + 2 x 2,800) x 15/14 = 53,520 x 15/14
    (2, 1, 75_424 * 15 / 14),   # replicated, 8:  8 x (6,628 + 2,800) x 15/14 = 75,424 x 15/14
    (1, 1, 75_424 * 15 / 14),
])
def test_llama3_8b_decode_request_on_a_tp4_device(kv_heads: int, device_kv_heads: int, cycles: float) -> None:
    """Llama-3-8B (32 query heads, head_dim 128) with only kv_heads changed, on NeuPIMs' TP4 devices (8 query
    heads each): one request's GEMV time at a 2048-token context. 4x fewer KV bytes (kv 2 against kv 8) cost 1.41x
    the time, and GQA at kv 8 costs 1.26x MHA: the passes re-open rows that fewer KV heads do not shrink."""
    model, pim = neupims_llama3_8b(kv_heads)
    op = model.attention("decode", 2048)
    params = op.binding.params
    assert (params["heads"], params["kv_heads"], params["head_dim"]) == (8, device_kv_heads, 128)
    assert float(pim.placement([op]).request_s[0]) * PIM.clock_hz == pytest.approx(cycles, rel=1e-12)


def test_gqa_costs_at_least_mha_and_fewer_kv_heads_never_less() -> None:
    """At every context 1..4096, 8 query heads per device: 4 KV heads fill the 512-word row, so 2 passes of the
    4-head sequence are MHA's 2 row slices exactly; 2 and 1 KV heads open the same tiles per pass as 4, in 4 and
    8 passes, each with half the COMPs, so each costs more than the one above it."""
    contexts = np.arange(1, 4097)
    request_s = {}
    for kv_heads, device_kv_heads in ((32, 8), (16, 4), (8, 2), (1, 1)):
        model, pim = neupims_llama3_8b(kv_heads)
        op = model.attention("decode", 1)
        assert op.binding.params["kv_heads"] == device_kv_heads
        request_s[device_kv_heads] = pim.placement([op], contexts=contexts).request_s
    assert np.array_equal(request_s[4], request_s[8])
    assert np.all(request_s[2] > request_s[4]) and np.all(request_s[1] > request_s[2])
