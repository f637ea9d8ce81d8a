"""DuoAttention's end-to-end prefill (`sparse_prefill.duo_prefill`; seqpar-sparse.md §3.3): retrieval heads as
FlashAttention-2, streaming heads as one static A-shape call, beside `archsim sparse`'s decode rows and in
`archsim reproduce sparse`'s "up to"."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.model.gpu_sparse import SparsePattern, head_parts_s, key_tiles
from archsim.systems.sparse_prefill import _sparse_params, dense_prefill, duo_prefill


@pytest.fixture(scope="module")
def llama3() -> tuple:
    return library.load_workload_spec("llama3-8b"), load_gpu("a100-80gb-sxm4")


def test_all_retrieval_heads_are_dense_prefill(llama3: tuple) -> None:
    """Retrieval fraction 1: every layer's retrieval call is dense's one call over all heads and no streaming call
    runs, so the prefill is dense_prefill's, exactly."""
    workload, gpu = llama3
    assert duo_prefill(workload, gpu, 100_000, 1.0) == dense_prefill(workload, gpu, 100_000)


def test_all_streaming_heads_are_dense_ops_and_streaming_calls(llama3: tuple) -> None:
    """Retrieval fraction 0: dense's other ops and KV copy, and per layer one A-shape call of 128 sinks + 256 recent
    tokens: 2 sink blocks + 4 recent blocks + the diagonal block = 7 of the 64 x 64 key tiles per query block (hand
    count), so its attention is a few 100ths of dense's (7 of ~782 causal tiles on average at 100K); and no
    estimation or pads: a layer's call takes less than MInference's A-shape heads one by one (pads, host ops)."""
    workload, gpu = llama3
    n, layers, heads = 100_000, int(workload.params["layers"]), int(workload.params["heads"])
    unmasked, masked = key_tiles(SparsePattern("a_shape", sinks=128, window=256), n)
    assert (unmasked + masked)[6:].tolist() == [7] * (len(unmasked) - 6)
    duo, dense = duo_prefill(workload, gpu, n, 0.0), dense_prefill(workload, gpu, n)
    assert (duo.other_ops_s, duo.kv_host_s) == (dense.other_ops_s, dense.kv_host_s)
    assert duo.time_s == duo.other_ops_s + duo.attention_s + duo.kv_host_s
    assert 0 < duo.attention_s < 0.02 * dense.attention_s
    minference_heads_s = heads * head_parts_s(SparsePattern("a_shape", sinks=128, window=256), n,
                                              int(workload.params["head_dim"]), gpu, _sparse_params())[0]
    assert duo.attention_s / layers < minference_heads_s


def test_prefill_grows_with_the_retrieval_fraction(llama3: tuple) -> None:
    """More retrieval heads, more full attention: the prefill rises strictly from all-streaming to dense."""
    workload, gpu = llama3
    times = [duo_prefill(workload, gpu, 200_000, r).time_s for r in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_a_window_holding_the_prompt_is_dense(llama3: tuple) -> None:
    """At 384 tokens 128 sinks + 256 recent hold the whole prompt: every head attends it all, dense's one call (as
    duo_decode)."""
    workload, gpu = llama3
    assert duo_prefill(workload, gpu, 384, 0.5) == dense_prefill(workload, gpu, 384)


def test_every_head_retrieval_skips_the_streaming_call(llama3: tuple) -> None:
    """A retrieval fraction of 1: every layer's heads in the FlashAttention-2 call and no streaming call, dense's
    attention."""
    workload, gpu = llama3
    whole = duo_prefill(workload, gpu, 50_000, 1.0)
    assert whole.attention_s == pytest.approx(dense_prefill(workload, gpu, 50_000).attention_s, rel=1e-12)


def test_a_negative_window_is_refused(llama3: tuple) -> None:
    workload, gpu = llama3
    with pytest.raises(SpecError, match="sinks"):
        duo_prefill(workload, gpu, 50_000, 0.5, sinks=-1)


def test_the_cli_prints_prefill_rows_beside_decode() -> None:
    """`archsim sparse --method duoattention --prefill`: a prefill point per context after its decode points, faster
    than dense, with the decode points' memory; the table prints the decode rows, then a prefill table. Without
    --prefill the points are decode only; --prefill is refused for another method (exit 2, one line)."""
    plain = ["sparse", "--method", "duoattention", "--gpu", "a100-80gb-sxm4", "-w", "llama2-7b", "--context",
             "50K,100K", "--retrieval-fraction", "0.25"]
    args = [*plain, "--prefill"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)["points"]
    assert [p["phase"] for p in points] == ["attention", "decode", "prefill"] * 2
    for decode, prefill in zip(points[1::3], points[2::3], strict=True):
        assert 0 < prefill["time_s"] < prefill["dense_time_s"]
        for key in ("context", "memory_bytes", "dense_memory_bytes", "fits", "dense_fits", "retrieval_fraction"):
            assert prefill[key] == decode[key], key
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert any(line.startswith("DuoAttention end-to-end prefill") for line in lines)
    assert [line.split()[0] for line in lines if line[:8].strip().isdigit()] == ["51200", "102400"]  # prefill rows
    decode_only = json.loads(CliRunner().invoke(main, [*plain, "--json"]).output)["points"]
    assert decode_only == [p for p in points if p["phase"] != "prefill"]
    refused = CliRunner().invoke(main, ["sparse", "--method", "quest", "--gpu", "rtx-4090", "-w", "llama2-7b",
                                        "--context", "8K", "--budget", "512", "--prefill"])
    assert refused.exit_code == 2 and "--prefill does not apply" in refused.output
    assert len(refused.output.strip().splitlines()) == 1


def test_reproduce_reads_the_prefill_up_to_as_memory_and_decode(sparse_cli) -> None:
    """`duo_up_to` has the prefill speed-up at the same longest context whose dense run fits, beside the README's
    1.73x (Llama-2-7B, 25 %) and 1.63x (Llama-3-8B, 50 %) (seqpar-sparse.md §3.3); the points stay decode only."""
    from archsim.systems import sparse_reproduce as sparse

    duo = sparse.duo_points(("decode", "prefill"))
    rows = {r["model"]: r for r in sparse.duo_up_to(duo)}
    assert {m: r["paper_prefill"] for m, r in rows.items()} == {"llama2-7b": 1.73, "llama3-8b": 1.63}
    for model, row in rows.items():
        assert row["prefill_context"] == row["context"]
        point = next(p for p in duo if p["model"] == model and p["phase"] == "prefill"
                     and p["context"] == row["context"])
        assert row["prefill"] == point["dense_time_s"] / point["time_s"] > 1
    assert {p["phase"] for p in sparse.duo_points()} == {"decode"}
    printed = CliRunner().invoke(main, ["reproduce", "sparse"])
    assert printed.exit_code == 0 and "prefill" in printed.output and "(README 1.63x)" in printed.output
