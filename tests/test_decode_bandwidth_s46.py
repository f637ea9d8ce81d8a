"""Why Lamina's H20 pool reads its KV cache at 0.38 of the bandwidth at batch 20 in the model, where the paper
measures > 70 % (pim.md §3.3): the attribution in README's "Attention offloading" bullet on "Flash-Decoding (16-row
tiles)".

LLaMA3-70B on the `lamina` preset: 4 H20s, head-partitioned (§3.4), so a pool GPU holds 64 / 4 = 16 query heads on
8 / 4 = 2 KV heads, and batch 20 is 40 (request, KV head) pairs. The share is the KV bytes one pool GPU reads
(20 requests x 2048 keys x 2 KV heads x K and V x 128 x 2 B = 41.9 MB) over the layer's `attention_s` and the H20's
4.0 TB/s (pim.md §3.2). The call is two launches (the split-KV kernel, its combine); its time is their launch
overheads (`launch_s`, fa2's 4 us prior), one CTA's fixed overhead (fa2's `cta_overhead_cycles`, fitted on A100
prefill rows, and one DRAM latency), the main loop of the busiest CTA (tensor-paced on the H20: 3 CTAs share an SM's
mma.sync rate) and the combine's bytes. FlashInfer's split plan keeps every SM busy and no other split count reaches
70 %.
"""

import math

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import (
    AttentionCase,
    cta_overhead_s,
    ctas_per_sm,
    dram_efficiency,
    launch_time,
    step_time_s,
    tile_times_s,
)
from archsim.model.gpu_flash_plans import split_decode_launches, uniform_splits
from archsim.model.gpu_kernels import plans
from archsim.systems import offload
from archsim.systems.system_spec import load_system

PAPER_SHARE = 0.70  # pim.md §3.3: "Bandwidth utilization stays above 70% even at batch 20, on H100 and on H20"
BATCH, CONTEXT = 20, 2048
HEAD_DIM, BLOCK_N, TILE_ROWS = 128, 128, 16  # FA2's split-KV key block at head_dim 128; the 16-row tile


@pytest.fixture(scope="module")
def pool():
    """(model, GPU device, the call's case) of LLaMA3-70B's decode attention on one `lamina` pool GPU."""
    workload = library.load_workload_spec("llama3-70b")
    model = offload.offload_model(load_system("lamina"), workload)
    b = model.pool_devices
    case = AttentionCase("decode", BATCH, int(workload.params["heads"]) // b, int(workload.params["kv_heads"]) // b,
                         HEAD_DIM, CONTEXT, False, "bf16")
    return model, model.pool_device, case


def _share(case: AttentionCase, time_s: float, peak_bytes_per_s: float) -> float:
    return case.kv_bytes() / time_s / peak_bytes_per_s


def _call_s(case: AttentionCase, gpu, params, splits: int) -> float:
    launches = split_decode_launches(case, gpu, TILE_ROWS, BLOCK_N, 1, 1, "sync",
                                     uniform_splits(lambda grid, blocks: splits),
                                     False, False, HEAD_DIM)
    return sum(launch_time(launch, gpu, params).time_s for launch in launches)


def test_pool_gpu_holds_two_kv_heads_and_reads_below_the_paper(pool):
    model, device, case = pool
    assert device.spec.name == "h20" and device.spec.sm_count == 78  # NVIDIA's H20: 78 SMs
    assert device.kernel == "Flash-Decoding (16-row tiles)"
    assert (case.heads, case.kv_heads) == (16, 2)
    assert case.kv_bytes() == BATCH * CONTEXT * 2 * 2 * HEAD_DIM * 2
    attention_s = offload._layer(model, (CONTEXT,) * BATCH).attention_s
    launches = plans(device.kernel, case, device.spec)[0].launches
    assert attention_s == pytest.approx(sum(launch_time(x, device.spec, device.kernel_params).time_s
                                            for x in launches), rel=1e-12)
    assert len(launches) == 2  # split-KV, combine
    assert _share(case, attention_s, device.spec.dram_bytes_per_s) < PAPER_SHARE  # the gap the README attributes


def test_split_plan_fills_the_sms_and_no_split_count_closes_the_gap(pool):
    """FlashInfer's plan by hand: the CTA (16 rows x 128 keys, one warp, one stage: (16 + 2 x 128) x 128 x 2 B =
    69,632 B of shared memory) fits 3 to an H20 SM (228 KB), so the grid may hold 3 x 78 = 234 CTAs; the least chunk
    c of 16 key blocks with 40 (request, KV head) pairs x ceil(16 / c) <= 234 is 4 blocks (ceil(16 / 3) = 6 chunks
    would be 240): 4 splits, 160 CTAs on 78 SMs."""
    _, device, case = pool
    main = plans(device.kernel, case, device.spec)[0].launches[0]
    assert ctas_per_sm(main, device.spec) == 3
    assert main.name == "decode split-KV (4 splits)"
    assert main.ctas == 4 * BATCH * case.kv_heads >= device.spec.sm_count  # no SM idles
    key_blocks = math.ceil(CONTEXT / BLOCK_N)
    forced = [_call_s(case, device.spec, device.kernel_params, s) for s in range(1, key_blocks + 1)]
    chosen = _call_s(case, device.spec, device.kernel_params, 4)
    assert max(_share(case, t, device.spec.dram_bytes_per_s) for t in forced) < PAPER_SHARE
    assert chosen <= 1.01 * min(forced)  # more splits add CTAs, each paying the fixed overhead


def test_terms_sum_to_attention_s(pool):
    """attention_s = 2 launches x launch_s + one CTA's overhead + the busiest CTA's 4 key tiles (16 / 4 splits) at
    the step of 3 CTAs per SM (160 CTAs on 78 SMs) + the combine's bytes at the DRAM efficiency."""
    model, device, case = pool
    gpu, params = device.spec, device.kernel_params
    calibration = load_calibration()
    assert params["launch_s"] == 4e-6 and "launch_s" not in calibration.fitted["fa2"]  # a prior, not measured
    assert "cta_overhead_cycles" in calibration.fitted["fa2"]
    main, combine = plans(device.kernel, case, gpu)[0].launches
    tile = main.segments[0].tile
    mma_s, softmax_s = tile_times_s(tile, main, gpu, params["mma_efficiency_fwd"])
    # the 16 x 128 tile's QK^T and PV at the H20's 148 TFLOPS x mma.sync's 0.5 x the efficiency, one SM's share
    assert mma_s == pytest.approx(2 * 2 * TILE_ROWS * BLOCK_N * HEAD_DIM
                                  / (148e12 * 0.5 * params["mma_efficiency_fwd"] / 78), rel=1e-9)
    step_s = step_time_s(tile, main, gpu, params["mma_efficiency_fwd"], 3)
    assert step_s == pytest.approx(3 * mma_s + softmax_s, rel=1e-12)  # tensor-paced, not latency-bound
    launches_s = 2 * params["launch_s"]
    overhead_s = cta_overhead_s(main, gpu, params["cta_overhead_cycles"])
    loop_s = math.ceil(16 / 4) * step_s
    combine_s = combine.dram_bytes / (gpu.dram_bytes_per_s * dram_efficiency(gpu))
    attention_s = offload._layer(model, (CONTEXT,) * BATCH).attention_s
    assert launches_s + overhead_s + loop_s + combine_s == pytest.approx(attention_s, rel=1e-9)
    main_dram_s = main.dram_bytes / (gpu.dram_bytes_per_s * dram_efficiency(gpu))
    assert loop_s > main_dram_s  # the loop alone outlasts the split-KV launch's DRAM bound
    # beyond the KV read at 4.0 TB/s: the launches, the CTA overhead, the loop's tensor pacing past its DRAM bound,
    # the DRAM efficiency and the partials (main_dram_s against the KV alone), the combine; the launches the largest
    read_s = case.kv_bytes() / gpu.dram_bytes_per_s
    beyond = [launches_s, overhead_s, loop_s - main_dram_s, main_dram_s - read_s, combine_s]
    assert sum(beyond) == pytest.approx(attention_s - read_s, rel=1e-9)
    assert launches_s == max(beyond)
    # over half of the time past the paper's share, but not all of it
    paper_s = case.kv_bytes() / (PAPER_SHARE * gpu.dram_bytes_per_s)
    assert 0.5 < launches_s / (attention_s - paper_s) < 1
    assert _share(case, attention_s - launches_s, gpu.dram_bytes_per_s) < PAPER_SHARE
    assert _share(case, loop_s + combine_s, gpu.dram_bytes_per_s) < PAPER_SHARE  # tensor pacing alone, too


def test_on_an_h100_the_launches_are_the_whole_gap(pool):
    """The same call on an H100 SXM5 (132 SMs, 3.35 TB/s): the split-KV launch is bound by its DRAM bytes (at the
    measured 0.9 copy efficiency), so the call's share is under 70 % with the two launches and over it without."""
    _, device, case = pool
    h100 = load_gpu("h100-sxm5")
    params = device.kernel_params
    launches = plans(device.kernel, case, h100)[0].launches
    results = [launch_time(x, h100, params) for x in launches]
    assert results[0].bound == "dram"
    time_s = sum(r.time_s for r in results)
    assert _share(case, time_s, h100.dram_bytes_per_s) < PAPER_SHARE
    assert _share(case, time_s - len(results) * params["launch_s"], h100.dram_bytes_per_s) >= PAPER_SHARE
