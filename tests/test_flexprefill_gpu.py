"""FlexPrefill's prefill on a GPU (`archsim.model.gpu_flexprefill`, `sparse_prefill.flex_prefill`) and
`archsim sparse --method flexprefill`: the key blocks the kernel visits at a density, the estimation's share, and
bad input. Expected values are hand counts of the placement (stated in each test) and the model's own dense
FlashAttention-2 beside it."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.model.gpu import ctas_per_sm
from archsim.model.gpu_flexprefill import FLEX_BLOCK, key_tiles, layer_launches
from archsim.systems.sparse_prefill import dense_prefill, flex_prefill


@pytest.fixture(scope="module")
def llama3():
    return library.load_workload_spec("llama3-8b")


def test_key_blocks_at_half_density_by_hand() -> None:
    """8 query blocks of 128, density 0.5, no min_budget: causal 1..8 blocks, kept 0.5 x (i + 1) rounded half up,
    at least the first and the diagonal: 1, 2, 2, 2, 3, 3, 4, 4 = 21 of 36; the diagonal one masked in each row.
    (FlexPrefill's default min_budget of 512 tokens keeps all eight rows whole: `test_sparse_prefill_memory_s36`.)"""
    unmasked, masked = key_tiles(0.5, 8 * FLEX_BLOCK, 0)
    assert list(unmasked + masked) == [1, 2, 2, 2, 3, 3, 4, 4]
    assert list(masked) == [1] * 8


def test_density_one_visits_the_causal_blocks() -> None:
    unmasked, masked = key_tiles(1.0, 100 * FLEX_BLOCK)
    assert np.array_equal(unmasked + masked, np.arange(1, 101))


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_a_density_outside_zero_one_is_refused(density: float) -> None:
    with pytest.raises(SpecError) as error:
        key_tiles(density, 1024)
    assert error.value.where == "density"


def test_attention_grows_with_the_density_and_stays_under_dense(llama3) -> None:
    """At 128K on an A100: more kept blocks, more kernel time; at 10 % the attention is several times faster than
    dense FlashAttention-2 (the kernel's tiles are a tenth of causal; its estimation and Triton efficiency add)."""
    gpu = load_gpu("a100-80gb-sxm4")
    times = [flex_prefill(llama3, gpu, 131072, d)[0].attention_s for d in (0.05, 0.1, 0.2, 0.5)]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert dense_prefill(llama3, gpu, 131072).attention_s / times[1] > 3


def test_the_estimation_share_falls_with_the_context(llama3) -> None:
    """The estimation is O(n) per head (128 queries against n keys, n verticals and slashes) and O((n/128)^2)
    pooled; the kernel at a fixed density is O(n^2): its share of the attention falls as the prompt grows."""
    gpu = load_gpu("h100-sxm5")
    shares = []
    for n in (32768, 131072, 524288):
        prefill, estimate_s = flex_prefill(llama3, gpu, n, 0.1)
        shares.append(estimate_s / prefill.attention_s)
    assert shares[0] > shares[1] > shares[2]


def test_the_estimation_gemms_are_the_cascades_estimation_einsums_and_the_masked_half_cublas_computes() -> None:
    """The estimation's two GEMMs are written as launches (cuBLAS computes whole rectangles) and checked here
    against the library cascade `flexprefill` at the same sizes: q[-128:]·Kᵀ is the cascade's EQK (the causal
    estimate) plus the upper triangle of the last query block that the mask then discards; the pooled Q̂·K̂ᵀ is
    BQK (the block-causal pairs) plus the pairs above the diagonal."""
    n, heads, kv_heads, d = 1024, 4, 2, 16
    binding = bind(library.load_cascade_spec("flexprefill"),
                   {"seq_len": n, "heads": heads, "kv_heads": kv_heads, "head_dim": d, "block": FLEX_BLOCK})
    points = analyze(binding).points
    eager, _ = layer_launches(0.5, n, heads, kv_heads, d, load_gpu("h100-sxm5"), "bf16", 2)
    gemm_macs = {launch.name: launch.mma_flops / 2 for launch in eager if hasattr(launch, "mma_flops")}
    triangle = FLEX_BLOCK * (FLEX_BLOCK - 1) // 2 * heads * d  # keys after each of the last 128 queries
    assert gemm_macs[f"estimate q[-{FLEX_BLOCK}:]·Kᵀ"] == points["EQK"] + triangle
    blocks = n // FLEX_BLOCK
    above = blocks * (blocks - 1) // 2 * heads * d
    assert gemm_macs["pooled Q̂·K̂ᵀ"] == points["BQK"] + above


def test_a_small_shared_memory_runs_one_stage() -> None:
    """A 128 x 128 tile of head_dim 128 with two K/V stages needs 128 KB of shared memory: over an RTX 4090's
    100 KB, so the kernel runs one stage (64 KB) there and two on an A100 (164 KB)."""
    for name, smem in (("rtx-4090", 64 * 1024), ("a100-80gb-sxm4", 128 * 1024)):
        gpu = load_gpu(name)
        _, (kernel,) = layer_launches(0.1, 8192, 32, 8, 128, gpu, "bf16", 2)
        assert kernel.smem_bytes == smem and ctas_per_sm(kernel, gpu) >= 1


def test_the_cli_prints_flexprefill_beside_dense() -> None:
    result = CliRunner().invoke(main, ["sparse", "--method", "flexprefill", "--gpu", "h100-sxm5", "-w", "llama3-8b",
                                       "--context", "32K,128K", "--density", "0.1", "--json"])
    assert result.exit_code == 0, result.output
    points = json.loads(result.output)["points"]
    assert [p["context"] for p in points] == [32768, 131072]
    assert all(p["method"] == "FlexPrefill" and p["phase"] == "prefill" and p["density"] == 0.1 for p in points)
    assert all(p["time_s"] < p["dense_time_s"] and 0 < p["estimate_s"] < p["attention_s"] for p in points)


@pytest.mark.parametrize(("extra", "named"), [((), "--density"), (("--density", "2"), "--density"),
                                               (("--density", "0.1", "--budget", "512"), "--budget")])
def test_bad_flexprefill_input_exits_2_naming_the_option(extra: tuple, named: str) -> None:
    result = CliRunner().invoke(main, ["sparse", "--method", "flexprefill", "--gpu", "h100-sxm5", "-w", "llama3-8b",
                                       "--context", "32K", *extra])
    assert result.exit_code == 2 and named in result.output, result.output
