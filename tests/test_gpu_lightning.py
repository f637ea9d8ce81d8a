"""The GPU model of archsim's Lightning Attention-2 kernel (kernels/lightning.py): its tile from the cascade, its
chained block step, the plan's refusals and pipeline depth, and its use for LASP's linear-attention chunks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import AttentionCase, tile_times_s
from archsim.model.gpu_kernels import plans, predict
from archsim.model.gpu_tiles import lightning_tile
from archsim.systems.seqpar_compute import LINEAR_KERNEL, DeviceCompute

KERNEL = "archsim Lightning Attention-2 (Triton)"
ROOT = Path(__file__).resolve().parents[1]


def _case(seqlen: int = 4096, causal: bool = True, kv_heads: int = 32, head_dim: int = 128,
          attention: str = "linear") -> AttentionCase:
    return AttentionCase("fwd", 4, 32, kv_heads, head_dim, seqlen, causal, "bf16", attention)


def test_a_block_step_computes_four_whole_products_for_its_value_columns():
    """S = Q·Kᵀ over all head_dim (every program recomputes it), OI = S·V, OX = Q·KV and KVB = Kᵀ·V over the
    program's 64 value columns; S and OI as whole 64 x 64 tiles though the cascade counts their causal half."""
    block, d, f = 64, 128, 64
    tile = lightning_tile(block, d, f, 8, False, 2)
    assert tile.mma_flops == 2 * (block * block * d + block * block * f + block * d * f + d * block * f)
    assert tile.exp_ops == 0
    assert tile.load_bytes == (2 * block * d + 2 * block * f) * 2  # Q, K, V in and the output block out


def test_the_chained_step_adds_its_smem_staging_to_its_products():
    """A block's products read each other (S feeds OI, the state feeds OX), so SMEM staging and MMAs do not overlap:
    the MMA phase is their sum, against the larger of the two for FlashAttention's tile."""
    gpu = load_gpu("h200-sxm")
    (plan,) = plans(KERNEL, _case(), gpu)
    (launch,) = plan.launches
    tile = launch.segments[0].tile
    chained, _ = tile_times_s(tile, launch, gpu, 0.7)
    overlapped, _ = tile_times_s(tile, replace(launch, chained_mma=False), gpu, 0.7)
    assert launch.chained_mma and chained > overlapped


def test_the_plan_is_causal_multi_head_and_one_program_per_head_and_64_value_columns():
    gpu = load_gpu("h200-sxm")
    (plan,) = plans(KERNEL, _case(), gpu)
    assert plan.launches[0].ctas == 4 * 32 * 2
    for case in (_case(causal=False), _case(kv_heads=8)):
        assert "causal, with a K and V per query head" in plans(KERNEL, case, gpu)
    assert "head_dim 16, 32, 64, 128 (what its launcher runs) and 256 (extrapolated), got 96" in plans(
        KERNEL, _case(head_dim=96), gpu)


def test_a_gpu_with_less_shared_memory_runs_a_shallower_pipeline():
    """Three stages of Q, K and V buffers need 120 KB; an RTX 4090's SM has 100 KB, so two stages run there."""
    h200, ada = load_gpu("h200-sxm"), load_gpu("rtx-4090")
    (deep,) = plans(KERNEL, _case(), h200)
    (shallow,) = plans(KERNEL, _case(), ada)
    assert deep.launches[0].smem_bytes > ada.smem_bytes_per_sm >= shallow.launches[0].smem_bytes
    assert predict(KERNEL, _case(), ada, load_calibration().family_params("archsim")).feasible


def test_the_time_grows_linearly_with_the_sequence():
    """Linear attention: doubling a long sequence doubles the block loop (within the fixed costs)."""
    gpu, params = load_gpu("h200-sxm"), load_calibration().family_params("archsim")
    t8, t16 = (predict(KERNEL, _case(n), gpu, params).time_s for n in (8192, 16384))
    assert t16 / t8 == pytest.approx(2.0, rel=0.05)


def test_lasp_chunks_are_this_kernels_calls():
    """`DeviceCompute.linear_chunk_s` is one call of the kernel on the device's heads; fwd+bwd three times it."""
    gpu = load_gpu("a100-80gb-sxm4")
    fwd = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 128, "fwd")
    both = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 128, "fwd+bwd")
    case = AttentionCase("fwd", 1, 16, 16, 128, 8192, True, "bf16", "linear")
    direct = predict(LINEAR_KERNEL, case, gpu, load_calibration().family_params("archsim")).time_s
    assert fwd.linear_chunk_s(8192) == direct and both.linear_chunk_s(8192) == 3 * direct


def test_a_kernel_runs_only_the_attention_it_computes():
    """Lightning Attention-2 computes linear attention, FlashAttention-2 softmax: each refuses the other's case."""
    gpu = load_gpu("h200-sxm")
    softmax, linear = _case(attention="softmax"), _case()
    assert plans(KERNEL, softmax, gpu) == f"{KERNEL} computes linear attention, not softmax attention"
    assert plans("FlashAttention-2", linear, gpu) == ("FlashAttention-2 computes softmax attention, not linear "
                                                      "attention")
    assert isinstance(plans(KERNEL, linear, gpu), tuple)


def test_linear_attention_flops_are_the_right_products():
    """4·B·H·N·d² forward (Q·KV and Kᵀ·V per token), linear in N: the roofline is then a lower bound of the
    measured 2.135 ms at 32K on the H200 (it was 35.6 ms with the softmax convention's 4·B·H·N²·d / 2)."""
    case = _case(32768)
    assert case.flops() == 4.0 * 4 * 32 * 32768 * 128**2
    gpu = load_gpu("h200-sxm")
    roofline_s = max(case.flops() / gpu.tensor_peak_flops_per_s("bf16"), case.operand_bytes() /
                     gpu.dram_bytes_per_s)
    assert roofline_s < 2.135e-3


def test_parallel_refuses_the_linear_kernel_for_softmax_schemes_and_labels_lasp_rows(cli):
    result = cli("parallel", "--scheme", "ring", "--devices", "1", "--workload", "llama2-7b", "--seq-len", "32K",
                 "--kernel", KERNEL, expect=2)
    assert result.output.startswith(f"error: --kernel: {KERNEL}: computes linear attention (LASP's chunks run it); "
                                    "expected a softmax attention kernel for ring")
    lasp_only = cli("parallel", "--scheme", "lasp1,lasp2", "--devices", "8", "--workload", "linear-llama3-1b",
                    "--seq-len", "64K", "--topology", "dgx-a100", "--kernel", KERNEL, "--json").stdout
    assert all(row["feasible"] for row in json.loads(lasp_only)["points"])
    rows = json.loads(cli("parallel", "--scheme", "lasp2", "--devices", "8", "--workload", "linear-llama3-1b",
                          "--seq-len", "64K", "--topology", "dgx-a100", "--json").stdout)["points"]
    assert [row["kernel"] for row in rows] == [LINEAR_KERNEL]


def test_lasp_pads_a_head_to_a_power_of_two_and_refuses_one_wider_than_a_program_holds(tmp_path, cli):
    """head_dim 96 runs as 128 (tl.arange takes powers of two); 512 is refused naming the workload's field."""
    base = yaml.safe_load((ROOT / "workloads" / "linear-llama3-1b.yaml").read_text())
    gpu = load_gpu("a100-80gb-sxm4")
    narrow = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 96, "fwd")
    padded = DeviceCompute(gpu, "FlashAttention-2", 1, 16, 16, 128, "fwd")
    assert narrow.linear_chunk_s(8192) == padded.linear_chunk_s(8192)
    wide = tmp_path / "wide.yaml"
    wide.write_text(yaml.safe_dump({**base, "params": {**base["params"], "head_dim": 512, "hidden": 8192}}))
    result = cli("parallel", "--scheme", "lasp2", "--devices", "8", "--workload", str(wide), "--seq-len", "64K",
                 "--topology", "dgx-a100", expect=2)
    assert result.output.startswith(f"error: {wide}: params.head_dim: expected at most 256 for lasp2")


def test_a_sweeps_gpu_kernel_computes_the_workloads_attention(tmp_path, cli):
    """GPU points time the workload's attention (its `attention` field), so their kernel must compute it: the
    Lightning kernel for a softmax model and FlashAttention-2 for a linear one are both refused, naming gpus.kernel."""
    for workload, cascade, kernel, computes, wanted in (
            ("llama2-7b", "lightning-attention-2", KERNEL, "linear", "softmax"),
            ("linear-llama3-1b", "attention-1pass-causal", "FlashAttention-2", "softmax", "linear")):
        spec = {"name": "lsw", "mapping": "fusemax", "cascade": cascade, "workload": workload,
                "axes": {"workload.seq_len": [4096]}, "objectives": ["latency_s", "energy_pj"],
                "gpus": {"presets": ["h200-sxm"], "kernel": kernel, "causal": True, "precision": "bf16"}}
        path = tmp_path / f"{workload}.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = cli("sweep", str(path), "--db", str(tmp_path / f"{workload}.sqlite"), "--local", expect=2)
        assert result.output.startswith(f"error: {path}: gpus.kernel: {kernel} computes {computes} attention, but "
                                        f"workload {workload} computes {wanted} attention")


def test_a_one_stage_pipeline_waits_a_dram_latency_every_block():
    """Where two stages do not fit an SM, the one left loads nothing ahead: each block step is its work plus one
    DRAM latency, longer than the two-stage step on the same GPU (a user GPU with 50 KB of shared memory)."""
    from archsim.model.gpu import step_time_s
    from archsim.model.gpu_baseline_plans import _archsim_lightning

    gpu = replace(load_gpu("h200-sxm"), smem_bytes_per_sm=50_000)
    one = _archsim_lightning(_case(), gpu, 1)
    two = _archsim_lightning(_case(), load_gpu("h200-sxm"), 2)
    assert one.in_flight_tiles == 0 and two.in_flight_tiles == 1
    (plan,) = plans(KERNEL, _case(), gpu)
    assert plan.launches[0].smem_bytes == one.smem_bytes <= 50_000
    tile = one.segments[0].tile
    mma_s, softmax_s = tile_times_s(tile, one, gpu, 0.7)
    assert step_time_s(tile, one, gpu, 0.7, 1) == pytest.approx(mma_s + softmax_s + gpu.dram_latency_s, rel=1e-12)
    assert step_time_s(tile, one, gpu, 0.7, 1) > step_time_s(tile, two, gpu, 0.7, 1)


def test_a_decode_point_names_and_keys_the_kernel_it_runs(cli):
    """A decode step runs Flash-Decoding: its row names it, with --kernel Flash-Decoding or none; another --kernel,
    the linear one too, it would not run, so it is refused naming the option (it was accepted and unused)."""
    decode = ("parallel", "--scheme", "ring", "--devices", "2", "--workload", "llama3-8b", "--seq-len", "32K",
              "--direction", "decode")
    for named in ((), ("--kernel", "Flash-Decoding")):
        rows = json.loads(cli(*decode, *named, "--json").stdout)["points"]
        assert [row["kernel"] for row in rows] == ["Flash-Decoding"]
    assert cli(*decode, "--kernel", KERNEL, expect=2).output.startswith(f"error: archsim parallel: --kernel {KERNEL!r} "
                                                                        "sets the softmax schemes' prefill kernel")


def test_a_sweeps_gpu_kernel_computes_the_cascades_attention_too(tmp_path, cli):
    """A softmax kernel for a cascade that takes no exp (Lightning Attention-2's) is refused, naming gpus.kernel,
    though the workload is a softmax model: the architecture points would compute linear attention."""
    spec = {"name": "lin", "mapping": "fusemax", "cascade": "lightning-attention-2", "workload": "llama2-7b",
            "axes": {"workload.seq_len": [4096]}, "objectives": ["latency_s", "energy_pj"],
            "gpus": {"presets": ["h200-sxm"], "kernel": "FlashAttention-2", "causal": True, "precision": "bf16"}}
    path = tmp_path / "lin.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = cli("check", str(path), expect=2)
    assert ("gpus.kernel: FlashAttention-2 computes softmax attention, but cascade lightning-attention-2 takes no "
            "exp") in result.output


def test_a_calibration_written_before_the_linear_efficiency_says_how_to_mend_it(tmp_path):
    """The packaged v2 less `mma_efficiency_linear` (a file written before it existed) is refused naming the
    parameter, with the two ways out: refit, or write in the prior."""
    from archsim.errors import SpecError

    data = yaml.safe_load((ROOT / "archsim" / "gpu" / "calibration" / "v2.yaml").read_text())
    del data["families"]["archsim"]["params"]["mma_efficiency_linear"]
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"families\.archsim\.params\.mma_efficiency_linear: missing: .* refitted by "
                                        r"`archsim calibrate`, or takes the prior 0\.8 written in"):
        load_calibration(str(old))
