"""System specs an audit found accepted and modelled wrong (specs in the audit's notes; each case below rebuilds one
from a preset): each is now refused at load, exit 2 with one line naming the file and the field.

1. A `memory-pool` device (or the link named attention) under a schedule that does not offload attention: the
   pool's count, memory and link were never read and the KV cache sat on the compute GPUs.
2. An Op/B threshold on the rule placing offloaded decode attention: the pool is chosen once per model, so it was
   read at context 1 only.
3. Prefill/decode disaggregation (no device runs ops of both phases): modelled as one engine, no KV transfer.
4. A gpu or memory-pool device given attention without `attention_kernel`: PyTorch eager attention was substituted.
5. A compute GPU's `memory_utilization` that leaves out the weights: the error named the device count.
6. An inline link needs its `name` and `source`, as a link file does.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.gpu_device import ACTIVATION_RESERVE_BYTES, ATTENTION_KERNEL
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, system_from_dict, system_names

ALL_OPS = ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe", "ffn_residual"]
H100_FA2 = {"kind": "gpu", "count": 2, "preset": "h100-sxm5", "attention_kernel": "FlashAttention-2"}
H20_POOL = {"kind": "memory-pool", "count": 4, "preset": "h20", "attention_kernel": "Flash-Decoding (16-row tiles)"}
LAMINA_RULES = [{"op": "attention", "phase": "decode", "device": "memory"}, {"op": ALL_OPS, "device": "compute"}]


def _spec(devices: dict, placement: list, schedule: dict, links: dict | None = None, **parallelism) -> dict:
    return {"name": "audit", "description": "t", "source": "t", "devices": devices,
            "links": links or {"tp": "nvlink4-h100"}, "parallelism": {"tp": 2, "pp": 1, **parallelism},
            "placement": placement, "schedule": schedule}


def _refused(data: dict) -> SpecError:
    with pytest.raises(SpecError) as info:
        system_from_dict(data, "audit.yaml")
    return info.value


def _derived(tmp_path: Path, base: str, **over) -> Path:
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump({"base": base, "name": "derived", **over}))
    return path


# 1. memory pool and attention link under a schedule without offloading


@pytest.mark.parametrize("schedule", [{"kind": "blocked"}, {"kind": "co-processing"}])
def test_a_memory_pool_under_a_schedule_without_offloading_is_refused(schedule):
    error = _refused(_spec({"compute": H100_FA2, "memory": H20_POOL}, LAMINA_RULES, schedule,
                           {"tp": "nvlink4-h100", "attention": "nic-400g"}))
    assert error.where == "devices.memory.kind"
    assert "attention offloading, which needs a ping-pong or staggered schedule" in error.message


def test_the_attention_link_under_a_schedule_without_offloading_is_refused():
    """Decode attention on a second GPU (a `gpu`, not a pool) runs blocked; the attention link is never read."""
    second = {**H100_FA2, "count": 4}
    data = _spec({"compute": H100_FA2, "memory": second}, LAMINA_RULES, {"kind": "blocked"},
                 {"tp": "nvlink4-h100", "attention": "nic-400g"})
    error = _refused(data)
    assert error.where == "links.attention" and "needs a ping-pong or staggered schedule" in error.message
    del data["links"]["attention"]
    error = _refused(data)  # without the link: decode attention on a gpu that holds no weights, refused too
    assert error.where.startswith("placement[") and "puts decode attention on memory" in error.message


def test_check_exits_2_with_one_line_on_a_pool_under_blocked(cli, tmp_path):
    path = tmp_path / "pool-blocked.yaml"
    path.write_text(yaml.safe_dump(_spec({"compute": H100_FA2, "memory": H20_POOL}, LAMINA_RULES,
                                         {"kind": "blocked"}, {"tp": "nvlink4-h100", "attention": "nic-400g"})))
    out = cli("check", str(path), expect=2).output.strip()
    assert len(out.splitlines()) == 1 and "pool-blocked.yaml: devices.memory.kind" in out


# 2. an Op/B threshold on the rule placing offloaded decode attention


@pytest.mark.parametrize("schedule", [{"kind": "ping-pong"}, {"kind": "staggered", "micro_batches": 3}])
def test_an_op_per_byte_threshold_on_offloaded_decode_attention_is_refused(schedule):
    """An Op/B of 2 on the rule putting decode attention on the H20 pool was read at context 1 alone."""
    compute = {**H100_FA2, "count": 2 * ((schedule.get("micro_batches") or 2) - 1)}
    placement = [{**LAMINA_RULES[0], "op_per_byte_below": 2.0}, *LAMINA_RULES]
    error = _refused(_spec({"compute": compute, "memory": H20_POOL}, placement, schedule,
                           {"tp": "nvlink4-h100", "attention": "nic-400g"}, attention_pool=4))
    assert error.where == "placement[0].op_per_byte_below"
    assert "once per model, not per op" in error.message


def test_an_op_per_byte_threshold_on_a_rule_of_both_phases_is_refused():
    """A TPU pool given attention of both phases below an Op/B (the pool runs decode attention only): it can place
    decode attention, so it is refused as well."""
    tpu = dict(load_system("lamina-tpu-v6e").data)
    placement = [{"op": "attention", "op_per_byte_below": 2.0, "device": "memory"}, *tpu["placement"]]
    assert _refused({**tpu, "placement": placement}).where == "placement[0].op_per_byte_below"


def test_a_threshold_after_the_rule_deciding_decode_attention_is_not_refused_for_it():
    """A threshold on a rule for prefill attention alone cannot place decode attention."""
    placement = [LAMINA_RULES[0], {"op": "attention", "phase": "prefill", "op_per_byte_below": 2.0,
                                   "device": "compute"}, LAMINA_RULES[1]]
    system = system_from_dict(_spec({"compute": H100_FA2, "memory": H20_POOL}, placement, {"kind": "ping-pong"},
                                    {"tp": "nvlink4-h100", "attention": "nic-400g"}, attention_pool=4))
    assert system.placement[1].op_per_byte_below == 2.0


# 3. prefill/decode disaggregation


@pytest.mark.parametrize("swap", [False, True])
def test_prefill_decode_disaggregation_is_refused(swap):
    a100 = {"kind": "gpu", "count": 8, "preset": "a100-80gb-sxm4", "attention_kernel": "FlashAttention-2"}
    devices = {"pre": {**H100_FA2, "count": 8}, "dec": a100}
    first, second = ("dec", "pre") if swap else ("pre", "dec")
    placement = [{"op": ALL_OPS, "phase": "prefill", "device": first},
                 {"op": ALL_OPS, "phase": "decode", "device": second}]
    data = _spec(devices, placement, {"kind": "blocked"})
    data["parallelism"]["tp"] = 8
    error = _refused(data)
    assert error.where == "placement"
    assert f"prefill runs on {first} and decode on {second}" in error.message
    assert "prefill/decode disaggregation is not modelled" in error.message


@pytest.mark.parametrize("name", system_names())
def test_every_shipped_system_still_loads(name):
    """Each preset has a device running both phases (NeuPIMs' NPU, Duplex's xPU under its Op/B dispatch, Lamina's
    compute GPUs, the GPU baselines), and names the attention kernel of each GPU it gives attention."""
    system = load_system(name)
    # Every Op/B region of the placement: below every threshold, and at each one (rules at or under it stop matching).
    op_per_bytes = {0.0, *(r.op_per_byte_below for r in system.placement if r.op_per_byte_below is not None)}
    placed = {phase: {system.device_for(op, phase, x).name for op in ALL_OPS for x in op_per_bytes}
              for phase in ("prefill", "decode")}
    assert placed["prefill"] & placed["decode"], placed
    for device in system.devices.values():
        if device.kind in ("gpu", "memory-pool") and any("attention" in r.ops and r.device == device.name
                                                         for r in system.placement):
            assert device.attention_kernel is not None


# 4. attention_kernel required where attention is placed on a GPU


def test_a_gpu_given_attention_without_a_kernel_is_refused():
    bare = {k: v for k, v in H100_FA2.items() if k != "attention_kernel"}
    error = _refused(_spec({"compute": bare}, [{"op": ALL_OPS, "device": "compute"}], {"kind": "blocked"}))
    assert error.where == "devices.compute.attention_kernel" and error.message.startswith("missing: placement[0]")
    assert "FlashAttention-2" in error.message and ATTENTION_KERNEL in error.message  # the kernels it lists


def test_a_kernel_on_a_gpu_no_rule_gives_attention_is_refused_as_unread():
    """A second GPU running only the FFN: its attention_kernel was accepted and never read."""
    rules = [{"op": "ffn", "device": "ffn_gpu"}, {"op": ALL_OPS, "device": "compute"}]
    error = _refused(_spec({"compute": H100_FA2, "ffn_gpu": H100_FA2}, rules, {"kind": "blocked"}))
    assert error.where == "devices.ffn_gpu.attention_kernel" and "no placement rule puts" in error.message


def test_a_memory_pool_without_a_kernel_is_refused_with_the_decode_kernels(tmp_path):
    with pytest.raises(SpecError) as info:
        load_system(str(_derived(tmp_path, "lamina", devices={"memory": {"attention_kernel": None}})))
    assert info.value.where == "devices.memory.attention_kernel"
    assert "Flash-Decoding (16-row tiles)" in info.value.message  # a decode-only kernel, listed for a pool


def test_the_gpu_baseline_names_the_eager_kernel_it_ran_by_default():
    """The NeuPIMs GPU baseline ran PyTorch eager attention by default (neupims.py GPU_KERNEL); it now says so."""
    assert load_system("gpu").devices["gpu"].attention_kernel == ATTENTION_KERNEL == "PyTorch eager attention"


# 5. memory_utilization that leaves out the weights


def test_a_compute_share_too_small_for_the_weights_names_memory_utilization(tmp_path):
    """LLaMA-65B at TP2 puts W = 65.3 GB on each H100 (80 GiB); at memory_utilization 0.5 the engine holds
    0.5 x 80 GiB - 512 MiB = 42.4 GB, and the weights need (W + 512 MiB) / 80 GiB = 0.767 of the memory."""
    workload = library.load_workload_spec("llama-65b")
    weights = system_model(load_system("lamina"), workload).compute.weight_bytes_per_device
    needed = (weights + ACTIVATION_RESERVE_BYTES) / 85899345920
    assert needed == pytest.approx(0.767, abs=1e-3)
    system = load_system(str(_derived(tmp_path, "lamina", devices={"compute": {"memory_utilization": 0.5}})))
    with pytest.raises(SpecError) as info:
        system_model(system, workload)
    assert info.value.where == "devices.compute.memory_utilization"
    assert (f"of room at memory_utilization 0.5, 40 GiB less its 512 MiB activation reserve: expected at least "
            f"{math.ceil(needed * 1000) / 1000:g}") in info.value.message


def test_weights_beyond_the_whole_memory_still_name_the_count(tmp_path):
    """LLaMA3-405B at TP2 (405 GB per device) does not fit an 80 GiB H100 at any share: more devices are needed."""
    system = load_system(str(_derived(tmp_path, "lamina", devices={"compute": {"memory_utilization": 0.5}})))
    with pytest.raises(SpecError) as info:
        system_model(system, library.load_workload_spec("llama3-405b"))
    assert info.value.where == "devices.compute.count"


# 6. inline links


def test_an_inline_link_needs_its_name_and_source():
    link = {"name": "my-nic", "source": "t", "latency_s": 1.0e-5, "bytes_per_s_per_direction": 50.0e9}
    lamina = dict(load_system("lamina").data)
    system = system_from_dict({**lamina, "links": {**lamina["links"], "attention": link}})
    assert system.links["attention"].name == "my-nic"
    for key in ("name", "source"):
        bare = {k: v for k, v in link.items() if k != key}
        error = _refused({**lamina, "links": {**lamina["links"], "attention": bare}})
        assert "links.attention" in error.where and key in f"{error.where} {error.message}"


# per-action energy prices out of any device's range (audit helper-190: static_w 1e9 W printed 3.2e7 J/token)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("static_w", 1.0e9, "expected at most the board power of"),
    ("pj_per_flop", 1.0e6, "expected at most 1000 pJ"),
    ("hbm_pj_per_bit", 3900.0, "a value in fJ?"),
])
def test_a_per_action_price_no_device_pays_is_refused(tmp_path, key, value, says):
    with pytest.raises(SpecError) as info:
        load_system(str(_derived(tmp_path, "duplex", devices={"xpu": {key: value}})))
    assert info.value.where == f"devices.xpu.{key}" and says in info.value.message
