"""Systems-layer defects a fuzzing round found (/tmp/gfuzz2), each fixed and checked here:

1. The NPU and the bank-PIM timed every op at their presets' FP16 words: a Llama3-8B-shaped workload with
   `word_bytes` 1, 2 or 4 took the same decode step on neupims and npu+pim, at FP32 streaming 1.8 TB/s of weights
   from a 1.02 TB/s HBM. Now the bytes moved are the op's own words.
2. `schedule.sub_batches` was validated and never read (3 or 8 gave NeuPIMs' two): any count but 2 is refused.
3. A chip without a power figure (tpu-* presets) reported 0 J per token, and lamina-tpu-v6e counted its TPU pool at
   0 J: unknown energy is now NaN, carried through the sums, printed n/a (null in JSON).
4. The embedding table and the LM head were left out of the weights per device, the fit check and the KV room:
   8 x TPU v5e (137.4 GB) served Llama3-70B (141.1 GB at FP16), an A100 40 GB at memory_utilization 0.35 served
   Llama3-8B (16.06 GB). They now count, vocab-parallel over TP.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems import npu as npu_model
from archsim.systems import pim as pim_model
from archsim.systems.chip import load_chip
from archsim.systems.chip_device import ChipDevice
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.npu import NPUSpec
from archsim.systems.serving import energy_per_token_j
from archsim.systems.sharding import vocab_tables
from archsim.systems.step import WEIGHTS, Step, layer_op, lm_head_op
from archsim.systems.system_spec import load_system, system_from_dict, with_fields

LLAMA3_8B = library.load_workload_spec("llama3-8b")
LLAMA3_70B = library.load_workload_spec("llama3-70b")
DENSE_OPS = ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"]


def _words(workload, word_bytes: int):
    return replace(workload, params={**workload.params, "word_bytes": word_bytes})


def _decode_s(system: str, workload, contexts=(512,) * 16) -> float:
    return system_model(load_system(system), workload).iteration(Batch((), contexts)).time_s


# ---------------------------------------------------------------- 1. word size on the NPU and the bank-PIM
def test_npu_gemm_streams_the_ops_words_and_keeps_the_array_time():
    npu, bandwidth = NPUSpec(), 1e12
    fp16, fp32 = (npu_model.gemm_time(npu, 16, 4096, 4096, bandwidth, word_bytes=w) for w in (2, 4))
    assert fp32.memory_s == 2 * fp16.memory_s and fp32.hbm_bytes == 4096 * 4096 * 4
    assert fp32.array_s == fp16.array_s  # one MAC a PE a cycle at any word size (npu.py's assumption)
    assert npu_model.gemm_time(npu, 16, 4096, 4096, bandwidth) == fp16  # the preset's FP16 by default


@pytest.mark.parametrize("system", ["npu-only", "npu+pim", "neupims"])
def test_a_decode_step_follows_the_word_size_and_stays_under_the_hbm_bandwidth(system):
    """Weight streaming binds a 16-request decode step: FP32 at least 1.7x FP16, FP8 at most 0.65x, and the
    weights per device never cross the HBM faster than its bandwidth (they did at 1.8 TB/s)."""
    steps = {w: _decode_s(system, _words(LLAMA3_8B, w)) for w in (1, 2, 4)}
    assert steps[4] > 1.7 * steps[2] and steps[1] < 0.65 * steps[2]
    model = system_model(load_system(system), _words(LLAMA3_8B, 4))
    bandwidth = model.devices["npu"].bandwidth_bytes_per_s
    assert model.layer_weight_bytes_per_device / steps[4] <= bandwidth


def test_bank_pim_gemvs_follow_the_word_size():
    """A COMP reads a 32-byte column: 8 FP32 MACs, 32 FP8; a request's GEMVs take longer at FP32."""
    pim = load_system("neupims").devices["pim"].spec
    assert (pim_model.at_word_bytes(pim, 4).macs_per_bank, pim_model.at_word_bytes(pim, 1).macs_per_bank) == (8, 32)
    assert pim_model.at_word_bytes(pim, 2) is pim
    model = system_model(load_system("neupims"), LLAMA3_8B)
    device = model.devices["pim"]
    times = {}
    for w in (2, 4):
        op = layer_op(model.shard if w == 2 else _words(model.shard, w), Step("decode", 1, 2048), "llama",
                      "attention")
        times[w] = device.cost([op]).time_s
    assert times[4] > 1.5 * times[2]


def test_bank_pim_refuses_words_that_do_not_divide_its_column():
    model = system_model(load_system("neupims"), LLAMA3_8B)
    op = layer_op(_words(model.shard, 3), Step("decode", 1, 64), "llama", "attention")
    with pytest.raises(SpecError) as info:
        model.devices["pim"].cost([op])
    assert info.value.where == "devices.pim" and "32-byte columns" in info.value.message


# ---------------------------------------------------------------- 2. schedule.sub_batches
@pytest.mark.parametrize("count", [3, 8])
def test_sub_batches_other_than_the_modelled_two_are_refused(count):
    with pytest.raises(SpecError) as info:
        with_fields(load_system("neupims"), {"schedule.sub_batches": count})
    assert info.value.where == "schedule.sub_batches" and info.value.message.startswith("expected 2")


def test_simulate_exits_2_on_three_sub_batches(cli, tmp_path: Path):
    spec = yaml.safe_load(Path(load_system("neupims").source).read_text())
    spec["schedule"]["sub_batches"] = 3
    path = tmp_path / "sbi3.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = cli("simulate", "-s", str(path), "-w", "gpt3-7b", "--rate", "5", "--requests", "3", expect=2)
    assert "schedule.sub_batches" in result.output and result.output.count("\n") == 1


# ---------------------------------------------------------------- 3. unknown energy
def test_a_chip_without_power_has_unknown_energy():
    chip = ChipDevice("tpu", load_chip("tpu-v5e"), 0.6, 0.8)
    assert chip.spec.power_w is None
    op = layer_op(LLAMA3_8B, Step("decode", 4, 1), "llama", "qkv")
    assert math.isnan(chip.cost([op]).energy_j)


def test_energy_per_token_is_unknown_when_the_energy_is():
    assert math.isnan(energy_per_token_j(math.nan, 10)) and energy_per_token_j(5.0, 10) == 0.5
    assert math.isnan(energy_per_token_j(0.0, 0))  # no token: no per-token figure (a 0 would rank as the best)


def test_a_tpu_attention_pool_makes_lamina_energy_unknown_and_h20_keeps_it():
    batch = Batch((), (1024,) * 8)
    tpu = system_model(load_system("lamina-tpu-v6e"), LLAMA3_70B).iteration(batch)
    h20 = system_model(load_system("lamina"), LLAMA3_70B).iteration(batch)
    assert math.isnan(tpu.energy_j) and h20.energy_j > 0


def _tpu_system(count: int, preset: str = "tpu-v5e") -> dict:
    return {"name": f"{count}x{preset}", "description": "t", "source": "t",
            "devices": {"tpu": {"kind": "chip", "count": count, "preset": preset, "matmul_efficiency": 0.6,
                                "memory_efficiency": 0.8}},
            "links": {"tp": "tpu-v4-ici"}, "parallelism": {"tp": count, "pp": 1},
            "placement": [{"op": DENSE_OPS, "device": "tpu"}], "schedule": {"kind": "blocked"}}


def test_simulate_prints_na_and_null_for_unknown_energy(cli, tmp_path: Path):
    path = tmp_path / "tpu.yaml"
    path.write_text(yaml.safe_dump(_tpu_system(4)))
    args = ("simulate", "-s", str(path), "-w", "llama3-8b", "--rate", "5", "--requests", "3")
    assert "energy      n/a" in cli(*args).output
    assert json.loads(cli(*args, "--json").output)["energy_per_token_j"] is None


# ---------------------------------------------------------------- 4. embedding table and LM head
def test_vocab_tables_are_cut_by_tp_and_split_over_pp_stages():
    table = LLAMA3_8B.params["vocab"] * LLAMA3_8B.params["hidden"] * LLAMA3_8B.params["word_bytes"]
    assert lm_head_op(LLAMA3_8B, 1).bytes_by_role[WEIGHTS] == table
    assert lm_head_op(LLAMA3_8B, 1, 4).bytes_by_role[WEIGHTS] == table / 4
    assert vocab_tables(1, 2) == (2,) and vocab_tables(2, 2) == (1, 1)  # first stage embeds, last heads
    assert vocab_tables(1, 1) == (1,)  # tied: the LM head is the embedding
    assert vocab_tables(3, 2) == vocab_tables(3, 1) == (1, 0, 1)


def test_weights_per_device_count_the_vocab_tables_and_the_kv_room_loses_them():
    model = system_model(load_system("vllm-h100"), LLAMA3_8B)
    vocab = model.weight_bytes_per_device - model.layer_weight_bytes_per_device
    assert vocab == pytest.approx(2 * 128256 * 4096 * 2 / 4, rel=1e-12)
    assert model.kv_capacity_bytes == pytest.approx(
        model.devices_counted * (model.memory_bytes_per_device - model.weight_bytes_per_device), rel=1e-12)


def test_eight_tpu_v5e_refuse_llama3_70b():
    """137.4 GB of HBM cannot hold 141.1 GB of FP16 weights (the decoder layers alone are 136.9 GB)."""
    with pytest.raises(SpecError) as info:
        system_model(system_from_dict(_tpu_system(8)), LLAMA3_70B)
    assert "parallelism" in info.value.where and "17.6 GB of weights" in info.value.message


def test_an_a100_at_a_third_of_its_memory_refuses_llama3_8b():
    system = system_from_dict({
        "name": "a100-0.35", "description": "t", "source": "t",
        "devices": {"gpu": {"kind": "gpu", "count": 1, "preset": "a100-40gb-sxm4", "memory_utilization": 0.35,
                            "attention_kernel": "PyTorch eager attention"}},
        "parallelism": {"tp": 1, "pp": 1}, "placement": [{"op": DENSE_OPS, "device": "gpu"}],
        "schedule": {"kind": "blocked"}})
    with pytest.raises(SpecError) as info:
        system_model(system, LLAMA3_8B)
    assert "16.1 GB of weights" in info.value.message


def test_a_memory_pool_runs_decode_attention_only(tmp_path) -> None:
    """A vllm-h100 whose GPUs were made `memory-pool` served every op on them, as a GPU would (found by fuzzing
    serving on unseen systems); the README says a memory pool runs decode attention only, under attention
    offloading alone, which a blocked schedule is not: the kind is refused, with that reason, before the rules."""
    path = tmp_path / "mp.yaml"
    path.write_text("base: vllm-h100\nname: mp\ndevices: {gpu: {kind: memory-pool}}\n")
    with pytest.raises(SpecError) as error:
        load_system(str(path))
    assert error.value.where == "devices.gpu.kind"
    assert "runs decode attention under attention offloading, which needs a ping-pong or staggered schedule; this " \
        "one is blocked" in error.value.message
