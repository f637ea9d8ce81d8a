"""Session 32's sparse fixes: DuoAttention's prefill judged by the prefill memory rule (its dense run as the other
prefills', its host copy only of the KV it keeps), FlexPrefill's effective density where the first and diagonal
blocks raise it, and a PIM system's KV room counted as the per-request bytes are (each KV head once)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.sparse_points import SparseMethod, flex_point, phase_point, system_points
from archsim.systems.system_spec import load_system

LLAMA8, LLAMA2 = library.load_workload_spec("llama3-8b"), library.load_workload_spec("llama2-7b")
A100, RTX = load_gpu("a100-80gb-sxm4"), load_gpu("rtx-4090")
MEGA = 1 << 20  # the CLI's 1M
GB = 1e9


def _duo_prefill(workload, gpu, context: int, fraction: float) -> dict:
    return phase_point(SparseMethod("duoattention", retrieval_fraction=fraction), workload, gpu, context, "prefill")


def test_duo_prefills_dense_run_fits_as_the_other_prefills_dense_run() -> None:
    """Llama-3-8B at 1M on an 80 GiB A100 (85.9 GB): the dense KV cache (32 layers x 8 KV heads x 128 x 2 (K, V) x
    2 B = 131072 B a token, 137 GB) exceeds it beside the 16.1 GB of weights, so the dense prefill keeps it on the host
    and holds the weights and one layer's K and V (4.3 GB): 20.4 GB, it fits, as FlexPrefill's point says. The same
    dense run under DuoAttention's prefill point fits too, with the same time."""
    duo, flex = _duo_prefill(LLAMA8, A100, MEGA, 0.5), flex_point(LLAMA8, A100, MEGA, 0.1)
    assert kv_selection.weight_bytes(LLAMA8) + kv_selection.dense_kv_bytes(LLAMA8, MEGA) / 32 < 21 * GB
    assert flex["dense_fits"] and duo["dense_fits"]
    assert duo["dense_time_s"] == flex["dense_time_s"]
    assert duo["dense_kv_host_s"] == flex["kv_host_s"] > 0


def test_duo_prefill_copies_to_the_host_only_the_kv_it_keeps() -> None:
    """At 1M on the A100 (r 0.5: 4 of 8 KV heads a layer whole, 4 at 128 + 256 tokens), the GPU would hold the
    weights (16.06 GB), the kept KV (68.7 GB) and the layer being computed at its full K and V (4.29 GB, of which its
    kept 2.15 GB already counted): 86.9 GB > 85.9 GB, so the kept KV goes to the host, a copy per layer of its
    (4 x 1M + 4 x 384) tokens x 512 B over PCIe 4 x16, about half dense's copy (the decode rows' memory, 84.8 GB,
    stays the point's memory)."""
    point = _duo_prefill(LLAMA8, A100, MEGA, 0.5)
    per_layer = (4 * MEGA + 4 * 384) * 128 * 2 * 2
    assert point["kv_host_s"] == pytest.approx(32 * load_link("pcie4-x16").transfer_s(per_layer), rel=1e-12)
    assert 0.49 < point["kv_host_s"] / point["dense_kv_host_s"] < 0.51
    assert point["fits"] and point["memory_bytes"] == pytest.approx(84.8 * GB, rel=1e-3)
    assert point["time_s"] == pytest.approx(point["other_ops_s"] + point["attention_s"] + point["kv_host_s"])


def test_duo_prefill_whose_kept_kv_fits_is_not_charged_a_host_copy() -> None:
    """Llama-2-7B at 64K on an RTX 4090 (25.8 GB), r 0.25: weights 13.48 GB, kept KV 256 whole heads x 65536 tokens
    x 512 B (8.59 GB) and 768 streaming heads x 384 tokens x 512 B (0.15 GB), the layer being computed at its full
    1.07 GB instead of its kept 0.27 GB: 23.0 GB, on the GPU, no host copy; dense's 34.4 GB of KV goes to the host
    (1.09 s) and its run fits by the prefill rule (weights and one layer's K and V), so a sweep's speed-up exists."""
    point = _duo_prefill(LLAMA2, RTX, 65536, 0.25)
    assert point["kv_host_s"] == 0.0 < point["dense_kv_host_s"]
    assert point["fits"] and point["dense_fits"]
    assert point["time_s"] == pytest.approx(point["other_ops_s"] + point["attention_s"])


def test_duo_prefill_peak_decides_the_host_copy() -> None:
    """The GPU's memory between the kept KV and the kept KV plus the computed layer's full K and V: a GPU of
    weights + kept + 0.5 x (full layer - kept layer) sends the kept KV to the host (it cannot hold the peak), one of
    weights + kept + 2 x that keeps it; a retrieval fraction of 1 (every head kept) is dense's rule exactly."""
    from dataclasses import replace

    from archsim.systems.sparse_prefill import layer_working_bytes

    retrieval = kv_selection.retrieval_heads_per_layer(LLAMA8, 0.5)
    kept = kv_selection.duo_kv_bytes(LLAMA8, 200_000, retrieval)
    gap = kv_selection.dense_kv_bytes(LLAMA8, 200_000) / 32 - kv_selection.duo_kv_bytes(LLAMA8, 200_000, (4,))
    # the layer's working set (its input, normed copy, Q and O) sits beside the KV on the GPU either way
    weights = kv_selection.weight_bytes(LLAMA8) + layer_working_bytes(LLAMA8, 200_000)
    tight, roomy = (replace(A100, dram_bytes=weights + kept + k * gap) for k in (0.5, 2.0))
    assert _duo_prefill(LLAMA8, tight, 200_000, 0.5)["kv_host_s"] > 0
    assert _duo_prefill(LLAMA8, roomy, 200_000, 0.5)["kv_host_s"] == 0.0
    dense_edge = replace(A100, dram_bytes=weights + kv_selection.dense_kv_bytes(LLAMA8, 200_000))
    whole = _duo_prefill(LLAMA8, dense_edge, 200_000, 1.0)
    assert whole["kv_host_s"] == whole["dense_kv_host_s"] == 0.0


@pytest.mark.parametrize(("model", "map_name", "context", "dense_copies"),
                         [("llama2-7b", "llama2-7b-duo-25", 100_000, False),
                          ("llama3-8b", "llama3-8b-duo-50", 500_000, True)])
def test_reproductions_duo_prefill_rows_keep_their_kv_on_the_gpu(model: str, map_name: str, context: int,
                                                                  dense_copies: bool) -> None:
    """`reproduce sparse`'s DuoAttention "up to" contexts on the A100: DuoAttention's KV stays on the GPU and both
    fit. Dense's whole cache beside the weights and the layer's working set (input, normed copy, Q, O: 2 x 2 x
    (hidden + hidden) B a token) fits at Llama-2-7B's 100K (13.5 GB + 100K x (0.52 + 0.03) MB = 69.2 GB), not at
    Llama-3-8B's 500K (16.1 GB + 500K x (0.13 + 0.03) MB = 98.0 GB > 85.9 GB), whose dense run copies it to the
    host."""
    from archsim.workload_patterns import load_pattern_map

    method = SparseMethod("duoattention", pattern_map=load_pattern_map(map_name))
    point = phase_point(method, library.load_workload_spec(model), A100, context, "prefill")
    assert point["kv_host_s"] == 0.0 and point["fits"] and point["dense_fits"]
    assert (point["dense_kv_host_s"] > 0) == dense_copies


def test_flexprefill_reports_the_density_its_first_and_diagonal_blocks_force() -> None:
    """At 4K tokens (32 blocks of 128, 1 + 2 + ... + 32 = 528 causal block pairs) every row keeps its floor: min_budget
    512 tokens as 4 vertical blocks (the first among them) and 4 slash blocks (the diagonal among them), so
    min(i + 1, 8) blocks: 1 + ... + 8 + 24 x 8 = 228; density 0.02, 0.05 or 0.1 (0.1 x 32 + 0.5 rounds to 3) rounds
    no row above that: 228 / 528 = 0.432. At 128K (1024 blocks) 0.1 keeps 0.1 within 1 % (the floor binds only in
    rows below 75 of 1024, where 0.1 x 75 + 0.5 first rounds to 8). (Before FlexPrefill's min_budget was modelled,
    the floor was the first and the diagonal block: 63 / 528 at 0.02.)"""
    for density in (0.02, 0.05, 0.1):
        assert flex_point(LLAMA8, A100, 4096, density)["effective_density"] == pytest.approx(228 / 528, rel=1e-12)
    assert flex_point(LLAMA8, A100, 131072, 0.1)["effective_density"] == pytest.approx(0.1, rel=1e-2)


def test_flexprefill_cli_prints_the_kept_density_and_a_note_when_raised() -> None:
    """The JSON has `effective_density`; the table a kept column, and a note naming the density asked and kept
    where the floor (min_budget 512 tokens as vertical and slash blocks) raises it a tenth or more (none where it
    does not)."""
    args = ["sparse", "--method", "flexprefill", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--density"]
    low = CliRunner().invoke(main, [*args, "0.02", "--context", "4K", "--json"])
    assert low.exit_code == 0, low.output
    assert json.loads(low.output)["points"][0]["effective_density"] == pytest.approx(228 / 528)  # the test above
    table = CliRunner().invoke(main, [*args, "0.02", "--context", "4K"])
    assert table.exit_code == 0, table.output
    assert "kept" in table.output and "0.432" in table.output
    assert any(line.startswith("Note:") and "0.02" in line and "0.432" in line for line in table.output.splitlines())
    # 0.1 kept within 1 % at 128K; at 32K the floor's 8 blocks in rows below 75 of 256 raise it under a tenth: no note
    for context in ("128K", "32K"):
        high = CliRunner().invoke(main, [*args, "0.1", "--context", context])
        assert high.exit_code == 0 and "Note:" not in high.output, high.output


TP16_PIM = """
name: npu-pim-tp16
description: an NPU + bank-PIM system at tp 16, more ranks than Llama-3-8B's 8 KV heads
source: a test system (NeuPIMs' devices, tests/test_sparse_s32.py)
devices:
  npu: {kind: npu, count: 16}
  pim: {kind: bank-pim, count: 16, row_buffers: 2, channel_policy: greedy}
parallelism: {tp: 16, pp: 1}
placement:
  - {op: attention, phase: decode, device: pim}
  - {op: [attn_norm, qkv, attention, out_proj, attn_residual, ffn_norm, ffn, moe, ffn_residual], device: npu}
schedule: {kind: blocked}
"""


def test_pim_kv_room_counts_replicated_kv_heads_as_the_requests_do(tmp_path) -> None:
    """tp 16 over Llama-3-8B's 8 KV heads: each rank holds one KV head, each head on 2 ranks, so a 32K request takes
    2 x 131072 B x 32768 of the system's KV room (`SystemModel.kv_bytes_per_token`), and the room holds
    floor(room / that) requests dense, not twice as many: a batch of that many + 1 does not fit."""
    path = tmp_path / "tp16.yaml"
    path.write_text(TP16_PIM)
    system = load_system(str(path))
    model = system_model(system, LLAMA8)
    assert model.kv_bytes_per_token == 2 * kv_selection.dense_kv_bytes(LLAMA8, 1)
    holds = math.floor(model.kv_capacity_bytes / (2 * 131072 * 32768))
    method = SparseMethod("quest", budgets=(2048,))
    over = system_points(method, LLAMA8, system, holds + 1, [32768])[0]
    assert not over["dense_fits"] and over["dense_time_s"] is None
    assert f"holds {holds} requests of 32768 tokens dense" in over["reason"]
    assert system_points(method, LLAMA8, system, holds, [32768])[0]["dense_fits"]
