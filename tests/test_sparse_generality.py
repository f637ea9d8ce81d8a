"""`archsim sparse` on workloads and GPUs beyond the reproduction's (issue 19 audit): MInference's 64 x 64 kernel on
a GPU whose shared memory does not hold two K/V stages of its head_dim; a dense baseline the GPU cannot hold at one
context of a sweep; a head_dim no GPU runs, or one this GPU does not; Quest's loaded fraction when no layer
selects."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.model.gpu import ctas_per_sm
from archsim.model.gpu_sparse import SparsePattern, head_launches
from archsim.systems import kv_selection as ks

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"
RTX_4090_DRAM_BYTES = 24 * 2**30  # 25.8 GB


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def workload_file(tmp_path: Path, **params: int) -> Path:
    """A user workload modelled on the auditor's files: 4 layers of 16 heads of 128 (MHA), `params` changed."""
    sizes = {"batch": 1, "seq_len": 4096, "hidden": 2048, "heads": 16, "kv_heads": 16, "head_dim": 128,
             "ffn_dim": 8192, "layers": 4, "vocab": 32000, "word_bytes": 2} | params
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"name": "user-model", "description": "a user's model", "block": "llama",
                                    "params": sizes}))
    return path


def pattern_map_file(tmp_path: Path, layers: int, heads: int, patterns: list[dict]) -> Path:
    path = tmp_path / "patterns.yaml"
    path.write_text(yaml.safe_dump({"name": "user-map", "model": "user-model", "description": "a user's map",
                                    "source": "test",
                                    "layers": layers, "heads": heads, "head_kind": "query", "patterns": patterns}))
    return path


def gpu_file(tmp_path: Path, preset: str, **fields: int) -> Path:
    data = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text()) | {"name": "small-smem", **fields}
    path = tmp_path / "small-smem.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- 1. MInference's kernel runs as many K/V stages as shared memory holds ---------------------------------------
def test_minference_runs_one_kv_stage_where_two_exceed_shared_memory(tmp_path: Path) -> None:
    """A 64 x 64 tile of head_dim 256 with two K/V stages takes 2 x 2 x 64 x 256 x 2 B = 131072 B of shared memory:
    over an L40S's 100 KB per SM (was 0 CTAs per SM and a ZeroDivisionError), so the kernel runs one stage
    (65536 B) there and keeps two on an H100 (228 KB)."""
    pattern = SparsePattern("a_shape", sinks=128, window=1024)
    for preset, smem_bytes in (("l40s", 65536), ("h100-sxm5", 131072)):
        gpu = load_gpu(preset)
        _, (kernel,) = head_launches(pattern, 4096, 256, gpu, "bf16", 2)
        assert kernel.smem_bytes == smem_bytes and ctas_per_sm(kernel, gpu) >= 1
    model = workload_file(tmp_path, hidden=4096, heads=16, kv_heads=4, head_dim=256, layers=21)
    patterns = pattern_map_file(tmp_path, 21, 16, [{"pattern": "vertical_slash", "k_v": 1000, "k_s": 6096,
                                                    "heads": 300},
                                                   {"pattern": "a_shape", "sinks": 128, "window": 1024, "heads": 36}])
    code, output = run("--method", "minference", "--gpu", "l40s", "-w", str(model), "--context", "4K",
                       "--patterns", str(patterns), "--json")
    assert code == 0, output
    (point,) = json.loads(output)["points"]
    assert point["time_s"] > point["other_ops_s"] > 0


def test_a_gpu_holding_no_sparse_tile_is_refused_naming_its_shared_memory(tmp_path: Path) -> None:
    """16 KB of shared memory per SM: MInference's 64 x 64 tile of head_dim 128 needs 2 x 64 x 128 x 2 = 32768 B
    with one K/V stage (was exit 1, a ZeroDivisionError), FlexPrefill's 128 x 128 tile 65536 B: both refused by
    the one helper, naming the file's smem_bytes_per_sm, the tile, the head_dim and the bytes."""
    gpu = gpu_file(tmp_path, "l40s", smem_bytes_per_sm=16384)
    model = workload_file(tmp_path)
    patterns = pattern_map_file(tmp_path, 4, 16, [{"pattern": "a_shape", "sinks": 128, "window": 1024,
                                                   "heads": 64}])
    for method, tile, smem_bytes in ((["--method", "minference", "--patterns", str(patterns)], 64, 32768),
                                     (["--method", "flexprefill", "--density", "0.1"], 128, 65536)):
        code, output = run(*method, "--gpu", str(gpu), "-w", str(model), "--context", "4K")
        assert code == 2 and len(output.strip().splitlines()) == 1, output
        assert output.startswith(f"error: {gpu}: smem_bytes_per_sm: small-smem cannot hold a {tile} x {tile} tile "
                                 "of head_dim 128 with 1 K/V stage"), output
        assert f"a CTA needs {smem_bytes} B of shared memory; small-smem has 16384 B per SM" in output, output


# --- 2. a dense baseline the GPU cannot hold at a context is a row, not a refusal --------------------------------
def test_a_dense_decode_beyond_the_gpu_is_a_row_with_no_dense_time() -> None:
    """Llama-2-7B at 2M tokens: one layer's K and V are 2 x 32 heads x 128 x 2 B x 2^21 = 34.4 GB, over an RTX 4090's
    25.8 GB, so dense Flash-Decoding has no time (was exit 2); DuoAttention with no retrieval head keeps 128 + 256
    tokens a head and is timed, within the card (weights 13.5 GB)."""
    llama2, rtx_4090 = library.load_workload_spec("llama2-7b"), load_gpu("rtx-4090")
    assert 2 * 32 * 128 * 2 * 2**21 > rtx_4090.dram_bytes == RTX_4090_DRAM_BYTES
    result = ks.duo_decode(llama2, rtx_4090, 2**21, 0.0)
    assert math.isnan(result.dense_time_s) and math.isnan(result.dense_attention_s) and not result.dense_fits
    assert 0 < result.attention_s < result.time_s and result.fits
    code, output = run("--method", "duoattention", "--gpu", "rtx-4090", "-w", "llama2-7b", "--context", "2M",
                       "--retrieval-fraction", "0", "--json")
    assert code == 0, output
    points = json.loads(output)["points"]
    assert [p["phase"] for p in points] == ["attention", "decode"]
    assert all(p["dense_time_s"] is None and not p["dense_fits"] and p["time_s"] > 0 and p["fits"] for p in points)


def test_a_dense_prefill_beyond_the_gpu_is_a_row_and_the_sweep_goes_on() -> None:
    """FlashAttention-2's one call over 1M tokens of Llama-2-7B holds Q, K, V and O: 4 x 32 x 128 x 2 B x 2^20 =
    34.4 GB, over the RTX 4090's 25.8 GB; at 1M and 2M the dense side is n/a (null in JSON, NaN in Python), and so
    is FlexPrefill's attention, whose one call over the layer's heads holds the same tensors (it had been timed);
    the rows are printed (was exit 2, and nothing at all for 1M,2M); the keys are a feasible point's. A run that
    cannot happen copies no KV to the host either (n/a there too since s36), nor runs its other ops (since s38)."""
    code, output = run("--method", "flexprefill", "--gpu", "rtx-4090", "-w", "llama2-7b", "--context", "4K,1M,2M",
                       "--density", "0.01", "--json")
    assert code == 0, output
    feasible, *beyond = json.loads(output)["points"]
    assert feasible["dense_time_s"] > 0 and feasible["dense_fits"]
    assert [p["context"] for p in beyond] == [2**20, 2**21]
    for p in beyond:
        assert p.keys() == feasible.keys()
        assert p["dense_time_s"] is None and p["dense_attention_s"] is None and not p["dense_fits"]
        assert p["time_s"] is None and p["attention_s"] is None and not p["fits"] and p["other_ops_s"] is None
    code, output = run("--method", "flexprefill", "--gpu", "rtx-4090", "-w", "llama2-7b", "--context", "1M,2M",
                       "--density", "0.01")
    rows = output.strip().splitlines()[2:-1]  # the last: the calibration
    assert code == 0 and len(rows) == 2 and all(row.count("n/a") == 8 for row in rows), output  # KV copy, other ops


# --- 3. a head_dim no GPU runs is the workload's error; one this GPU does not run names the head_dim ---------------
@pytest.mark.parametrize("method", [["--method", "quest", "--budget", "64"],
                                    ["--method", "duoattention", "--retrieval-fraction", "0.5"],
                                    ["--method", "flexprefill", "--density", "0.1"]])
def test_a_head_dim_no_gpu_runs_is_refused_naming_the_workload(tmp_path: Path, method: list[str]) -> None:
    """FlashAttention-2 (every method's dense baseline, and its Flash-Decoding kernels) compiles head dims up to
    256: 512 was blamed on --gpu (decode) or the H100's shared memory (FlexPrefill); 256 runs."""
    model = workload_file(tmp_path, heads=8, kv_heads=8, head_dim=512, hidden=4096)
    code, output = run(*method, "--gpu", "h100-sxm5", "-w", str(model), "--context", "4K")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert output.startswith(f"error: {model}: params.head_dim: expected at most 256"), output
    assert output.rstrip().endswith("got 512"), output
    model = workload_file(tmp_path, heads=16, kv_heads=16, head_dim=256, hidden=4096)
    code, output = run(*method, "--gpu", "h100-sxm5", "-w", str(model), "--context", "4K")
    assert code == 0, output


def test_a_head_dim_this_gpu_cannot_hold_names_the_gpu_and_the_head_dim(tmp_path: Path) -> None:
    """16 KB of shared memory per SM holds no split-KV decode tile of head_dim 256 (an L40S's 100 KB does): a --gpu
    error, now stating the head_dim it failed at."""
    gpu = gpu_file(tmp_path, "l40s", smem_bytes_per_sm=16384)
    model = workload_file(tmp_path, heads=16, kv_heads=4, head_dim=256, hidden=4096)
    code, output = run("--method", "quest", "--budget", "64", "--gpu", str(gpu), "-w", str(model), "--context", "4K")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert output.startswith("error: --gpu: Flash-Decoding (16-row tiles) cannot decode 4096 keys on small-smem at "
                             "head_dim 256: "), output
    assert "16384 B per SM" in output, output


# --- 4. Quest's loaded fraction with no selecting layer ---------------------------------------------------------
def test_quest_loads_every_kv_byte_of_a_model_with_no_sparse_layer(tmp_path: Path) -> None:
    """Quest keeps its first min(2, layers) layers dense: with 1 or 2 layers none selects and every KV byte is
    loaded (was 1/16 + K/pages = 0.0635 at 1M tokens and a 1024 budget); with 3 the selecting layer loads its page
    minima and maxima (2 per 16 tokens over K and V: 1/16) and K of the pages, 1024 / 2^20."""
    context, budget = 2**20, 1024
    for layers, fraction in ((1, 1.0), (2, 1.0), (3, 1 / 16 + budget / context)):
        model = library.load_workload_spec(str(workload_file(tmp_path, layers=layers)))
        assert ks.quest_loaded_fraction(model, context, budget) == pytest.approx(fraction, rel=1e-12)
    code, output = run("--method", "quest", "--gpu", "h100-sxm5", "-w", str(workload_file(tmp_path, layers=1)),
                       "--context", "1M", "--budget", "1024", "--json")
    assert code == 0, output
    assert [p["loaded_fraction"] for p in json.loads(output)["points"]] == [1.0, 1.0]


def test_an_attention_call_beyond_the_row_limit_names_context(monkeypatch) -> None:
    """Llama-3-405B's 8 KV heads at 16M tokens are 1.3e8 keys, over a limit of 2^26 on one call: the message named
    `<python>: AttentionCase.seqlen`, a field no user wrote; --context sets it."""
    monkeypatch.setenv("ARCHSIM_MAX_GPU_ROWS", str(2**26))
    code, output = run("--method", "quest", "--gpu", "h100-sxm5", "-w", "llama3-405b", "--context", "16M",
                       "--budget", "1024")
    assert code == 2
    assert "error: --context: batch x kv_heads x seqlen = 1 x 8 x 16777216" in output
