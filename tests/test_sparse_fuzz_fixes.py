"""What fuzzing `archsim sparse` found (issue 19): attention timed in bf16 beside a workload's fp8 or fp32 GEMMs; a
prefill whose weights alone exceed the GPU moving its KV cache to the host; Quest's two dense layers in a model of
one or two; TokenSelect's default top-k refused below its own selection; pattern maps refusing zeros the models
take; MInference's vertical columns counted inside the band's first tile (more tiles than the causal kernel)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.model.gpu_sparse import BLOCK, SparsePattern, kept_fraction, key_tiles
from archsim.systems import kv_selection as ks
from archsim.systems.sparse_points import SparseMethod, flex_point, method_points
from archsim.systems.sparse_prefill import kv_on_host
from archsim.workload_patterns import pattern_map_from_dict

LLAMA8_FILE = Path(__file__).resolve().parents[1] / "workloads" / "llama3-8b.yaml"
LLAMA8 = library.load_workload_spec("llama3-8b")
H100 = load_gpu("h100-sxm5")
KV_BYTES_PER_TOKEN_LAYER = 2 * 8 * 128 * 2  # Llama-3-8B: K and V x 8 KV heads x 128 x 2 B


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def llama8_with(tmp_path: Path, **params: int) -> Path:
    """A copy of workloads/llama3-8b.yaml with `params` changed."""
    data = yaml.safe_load(LLAMA8_FILE.read_text())
    data["params"] |= params
    path = tmp_path / "l8.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- 1. one word size: the kernels' 16 bits ------------------------------------------------------------------------
@pytest.mark.parametrize("word_bytes", [1, 4])
@pytest.mark.parametrize("method", [["--method", "flexprefill", "--density", "0.1"],
                                    ["--method", "minference", "--patterns", "llama3-8b-262k-minference"],
                                    ["--method", "quest", "--budget", "512"],
                                    ["--method", "duoattention", "--retrieval-fraction", "0.5"],
                                    ["--method", "tokenselect"]], ids=lambda m: m[1])
def test_a_word_size_the_kernels_lack_is_refused_naming_the_workload(tmp_path, method, word_bytes) -> None:
    """fp8 prefill ran (fp8 GEMMs and memory beside bf16 attention), fp32 prefill blamed `<python>`, decode blamed
    --gpu: now every method names the file's params.word_bytes and the 2 its 16-bit kernels need."""
    path = llama8_with(tmp_path, word_bytes=word_bytes)
    code, output = run(*method, "--gpu", "h100-sxm5", "-w", str(path), "--context", "32K")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert output.startswith(f"error: {path}: params.word_bytes: expected 2 (16-bit words)"), output
    assert output.rstrip().endswith(f"got {word_bytes}"), output


# --- 2. weights over the GPU: an OOM row, no host copy -------------------------------------------------------------
def test_weights_alone_over_the_gpu_make_an_oom_row_with_no_host_copy() -> None:
    """Llama-3-405B's weights (405e9 x 2 B, about 810 GB) exceed an 80 GB H100: moving 1000 tokens' KV to the host
    frees nothing that matters, so there is no copy (was 0.008 s of PCIe) and the row does not fit; a prefill the
    GPU cannot hold has no attention time, either side (since s36: `sparse_prefill.prefill_fits`), nor other ops
    (since s38)."""
    workload = library.load_workload_spec("llama3-405b")
    assert ks.weight_bytes(workload) > 800e9 > H100.dram_bytes
    assert not kv_on_host(workload, H100, 1000)
    point = flex_point(workload, H100, 1000, 0.1)
    assert math.isnan(point["kv_host_s"]) and not point["fits"] and not point["dense_fits"]  # no run: no copy
    assert math.isnan(point["attention_s"]) and math.isnan(point["dense_attention_s"])
    assert math.isnan(point["other_ops_s"])


def test_weights_over_a_gpu_without_host_link_print_an_oom_row() -> None:
    """Grok-1's weights exceed the B200's 193 GB: was exit 2 blaming b200.yaml's missing host_link."""
    code, output = run("--method", "flexprefill", "--gpu", "b200", "-w", "grok-1-314b", "--context", "1000",
                       "--density", "0.1", "--json")
    assert code == 0, output
    (point,) = json.loads(output)["points"]
    assert point["kv_host_s"] is None and point["fits"] is False  # no run, no copy (and no host link asked for)


# --- 3. Quest in a model of one or two layers ----------------------------------------------------------------------
@pytest.mark.parametrize("layers", [1, 2])
def test_quest_with_no_sparse_layer_is_dense(tmp_path, layers) -> None:
    """Quest's first two layers are dense, so a model of one or two has no sparse layer: the attention row, the
    token and the memory are dense (was: an error on `dense_layers` for 1; for 2, a sparse row and page metadata)."""
    workload = library.load_workload_spec(str(llama8_with(tmp_path, layers=layers)))
    result = ks.quest_decode(workload, H100, 1024, 16)
    assert result.attention_s == result.dense_attention_s
    assert result.time_s == pytest.approx(result.dense_time_s, rel=1e-12)
    assert result.memory_bytes == result.dense_memory_bytes


def test_quest_keeps_page_metadata_for_its_sparse_layers_only(tmp_path) -> None:
    """Three layers, one sparse: 1024 tokens are 64 pages, each with a min and a max row of one token's K and V
    (4096 B a layer): 64 x 4096 = 262144 B beyond dense (was three layers' worth)."""
    workload = library.load_workload_spec(str(llama8_with(tmp_path, layers=3)))
    result = ks.quest_decode(workload, H100, 1024, 16)
    assert result.memory_bytes - result.dense_memory_bytes == pytest.approx(64 * KV_BYTES_PER_TOKEN_LAYER,
                                                                           rel=1e-12)
    assert result.attention_s != result.dense_attention_s


# --- 4. TokenSelect's default top-k on a short cache ---------------------------------------------------------------
@pytest.mark.parametrize("context", [1000, 2688])
def test_tokenselect_default_covering_the_cache_is_dense(context) -> None:
    """2048 + 128 sinks + 512 local = 2688 tokens cover a cache of 1000 or 2688: every token attended, nothing
    scored, exactly dense (was: `--top-k` refused though never given)."""
    result = ks.tokenselect_decode(LLAMA8, H100, context)
    assert (result.time_s, result.attention_s) == (result.dense_time_s, result.dense_attention_s)


def test_a_tokenselect_sweep_from_a_short_context_runs_and_a_given_top_k_is_still_checked() -> None:
    code, output = run("--method", "tokenselect", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "1000,32K",
                       "--json")
    assert code == 0, output
    short, _, long, _ = json.loads(output)["points"]  # attention, decode at each context
    # its default top-k selects the whole 1000-token cache (`budget`: the tokens selected, at most the context)
    assert short["time_s"] == short["dense_time_s"] and short["budget"] == 1000
    assert long["time_s"] == ks.tokenselect_decode(LLAMA8, H100, 32768).attention_s != long["dense_time_s"]  # scored
    code, output = run("--method", "tokenselect", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "1000",
                       "--top-k", "2048")
    assert code == 2 and output.startswith("error: --top-k: expected a top-k at most the context (1000), got "
                                           "2048"), output


# --- 5. pattern maps take the zeros the models take ----------------------------------------------------------------
def _map(head_kind: str, heads: int, *patterns: dict) -> dict:
    return {"name": "m", "model": "llama3-8b", "layers": 32, "heads": heads, "head_kind": head_kind,
            "patterns": list(patterns)}


def test_a_streaming_head_without_sinks_and_a_dense_head_run_duoattention() -> None:
    """{streaming, sinks 0, recent 10} is a plain sliding window; `dense` (full KV) is a retrieval head: 64 of 256
    KV heads, so the map's points are DuoAttention's at r = 0.25 with that window."""
    data = _map("kv", 8, {"pattern": "dense", "heads": 64}, {"pattern": "streaming", "sinks": 0, "recent": 10,
                                                             "heads": 192})
    pattern_map = pattern_map_from_dict(data, "duo.yaml")
    found = method_points(SparseMethod("duoattention", pattern_map=pattern_map), LLAMA8, H100, [32768])
    want = ks.duo_decode(LLAMA8, H100, 32768, 0.25, sinks=0, recent=10)
    assert [p["time_s"] for p in found] == [want.attention_s, want.time_s]


def test_zero_verticals_and_zero_sinks_are_accepted_and_an_empty_window_is_not() -> None:
    """k_v 0 is a slash-only head and an A-shape without sinks a sliding window, as SparsePattern takes them;
    a streaming head of 0 sinks and 0 recent attends to nothing."""
    data = _map("query", 32, {"pattern": "vertical_slash", "k_v": 0, "k_s": 800, "heads": 1000},
                {"pattern": "a_shape", "sinks": 0, "window": 64, "heads": 24})
    assert pattern_map_from_dict(data, "m.yaml").patterns[0].settings == {"k_v": 0, "k_s": 800}
    empty = _map("kv", 8, {"pattern": "streaming", "sinks": 0, "recent": 0, "heads": 256})
    with pytest.raises(SpecError) as error:
        pattern_map_from_dict(empty, "m.yaml")
    assert (error.value.source, error.value.where) == ("m.yaml", "patterns[0].recent")


# --- 6. never more tiles than the causal kernel --------------------------------------------------------------------
@pytest.mark.parametrize(("n", "k_v", "k_s"), [(1000, 3500, 100), (64, 1, 0), (100_000, 10**7, 64)])
def test_verticals_beyond_the_context_cost_the_causal_kernel(n, k_v, k_s) -> None:
    """Every key left of the band gathered: query block i visits its i + 1 causal tiles, no more (was 1.10 and 2.0
    of causal for the first two: a column inside the band's first tile counted again)."""
    unmasked, masked = key_tiles(SparsePattern("vertical_slash", k_v=k_v, k_s=k_s), n)
    assert np.array_equal(unmasked + masked, np.arange(math.ceil(n / BLOCK)) + 1)
    assert kept_fraction(SparsePattern("vertical_slash", k_v=k_v, k_s=k_s), n) == 1.0


def test_no_query_block_visits_more_tiles_than_causal() -> None:
    for k_v in (0, 1, 63, 64, 65, 1000, 3500):
        for k_s in (0, 1, 63, 64, 65, 100, 6096):
            unmasked, masked = key_tiles(SparsePattern("vertical_slash", k_v=k_v, k_s=k_s), 10_000)
            assert np.all(unmasked + masked <= np.arange(math.ceil(10_000 / BLOCK)) + 1), (k_v, k_s)
