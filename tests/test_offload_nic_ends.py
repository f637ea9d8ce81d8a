"""Attention offloading's NICs per end (issue 16): each compute device has a NIC of the link `attention` and each
memory device one of the link `attention_pool` (the same link when the spec names none), so a message between a
replica (tp NICs) and the pool (b NICs) moves at min(tp x r_compute, b x r_memory) (pim.md §3.2, §3.5). Before, one
rate (the slower end's) was charged over min(tp, b) NICs: `lamina-tpu-v6e`, 2 H100 (400 Gb/s NICs) and 4 TPU v6e
(200 Gb/s), ran at 2 x 17.75 GB/s and a served LLaMA3-70B run was refused at alpha 0.2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, bw_min_bytes_per_s, bw_min_per_nic_bytes_per_s, link_feasibility
from archsim.systems.system_spec import load_system, with_fields

LLAMA3_70B = library.load_workload_spec("llama3-70b")
H100_NIC, TPU_NIC = 35.5e9, 17.75e9  # host-driven paths: 71 % of 400 and of 200 Gb/s (lamina-nccl-400g, nic-200g-host)
TPU_ARGS = ["-s", "lamina-tpu-v6e", "-w", "llama3-70b", "--rate", "20", "--requests", "300", "--lengths",
            "azure-code", "--alpha", "0.2", "--max-batch", "2000", "--json"]


def _model(name: str, **fields) -> OffloadModel:
    system = load_system(name)
    model = system_model(with_fields(system, fields) if fields else system, LLAMA3_70B)
    assert isinstance(model, OffloadModel)
    return model


def test_the_tpu_pool_names_each_ends_nic_and_a_message_moves_at_the_slower_end() -> None:
    """2 H100 NICs at 35.5 GB/s against 4 TPU NICs at 17.75: min(71, 71) GB/s, not min(2, 4) x 17.75."""
    model = _model("lamina-tpu-v6e")
    assert (model.link.name, model.pool_link.name) == ("lamina-nccl-400g", "nic-200g-host")
    assert model.nic_bytes_per_s == pytest.approx(min(2 * H100_NIC, 4 * TPU_NIC))
    layer = model.layer((1024,) * 32)
    one = model.pool.attention("decode", 1).tensor_bytes
    q_bytes = 4 * 32 * one["Q"]  # b memory devices' query heads, 32 requests
    assert layer.q_wire_s == pytest.approx(q_bytes / min(2 * H100_NIC, 4 * TPU_NIC), rel=1e-12)
    assert layer.latency_s == pytest.approx(3.33e-5)  # both ends' host path


def test_the_memory_end_limits_a_message_when_its_nics_are_slower() -> None:
    """The pool's 4 NICs at 10 GB/s (40 in all) against the replica's 2 at 35.5 (71): a message moves at 40 GB/s,
    the memory end's NICs carry it, and BW_min per NIC is that end's, the bytes over b."""
    model = _model("lamina-tpu-v6e", **{"links.attention_pool.bytes_per_s_per_direction": 10e9})
    assert model.nic_bytes_per_s == pytest.approx(4 * 10e9) and model.message_nics == 4
    contexts = [1000] * 64
    compute, memory = bw_min_per_nic_bytes_per_s(model, contexts, 0.2)
    assert compute == pytest.approx(2 * memory) and bw_min_bytes_per_s(model, contexts, 0.2) == memory
    layer = model.layer(contexts)
    assert layer.kv_wire_s == pytest.approx(model.layer_kv_bytes(64) / 40e9, rel=1e-12)


def test_the_served_tpu_run_of_the_issue_is_feasible_per_end() -> None:
    """The issue's run: BW_min 28.12 GB/s per compute NIC (tp = 2), 14.06 per memory NIC (b = 4), against 35.5 and
    17.75: feasible, where one 17.75 GB/s rate over 2 NICs was not (27.99 before the compute replica's memory
    deferred some of its prompts)."""
    run = CliRunner().invoke(main, ["simulate", *TPU_ARGS])
    assert run.exit_code == 0, run.output
    link = json.loads(run.output)["link"]
    assert link["feasible"] is True, link["reason"]
    assert link["bw_min_compute_nic_bytes_per_s"] == pytest.approx(2 * link["bw_min_memory_nic_bytes_per_s"])
    assert link["bw_min_compute_nic_bytes_per_s"] < link["compute_nic_bytes_per_s"] == H100_NIC
    assert link["bw_min_memory_nic_bytes_per_s"] < link["memory_nic_bytes_per_s"] == TPU_NIC
    assert 28.0e9 < link["bw_min_compute_nic_bytes_per_s"] < 28.2e9


def test_an_end_below_its_bw_min_is_named_in_the_reason() -> None:
    model = _model("lamina-tpu-v6e", **{"links.attention_pool.bytes_per_s_per_direction": 5e9})
    record = link_feasibility(model, [1754] * 223, 0.2)
    assert not record.feasible
    assert "nic-200g-host: 5.0 GB/s per NIC is below BW_min" in record.reason
    assert "per memory NIC (4 of them)" in record.reason and "lamina-nccl-400g" not in record.reason


def test_one_nic_kind_at_both_ends_keeps_the_old_numbers() -> None:
    """`lamina` names one link: both ends' NICs are it, a message moves over min(tp, b) = 2 of them."""
    model = _model("lamina")
    assert model.pool_link is model.link
    assert model.message_nics == 2 and model.nic_bytes_per_s == 2 * 45.7e9
    assert model.message_link.name == "2 x lamina-gpu-initiated-400g"
    contexts = [128] * 300
    compute, memory = bw_min_per_nic_bytes_per_s(model, contexts, 0.2)
    assert bw_min_bytes_per_s(model, contexts, 0.2) == compute == 2 * memory


@pytest.mark.parametrize(("pool_bytes_per_s", "lanes"), [(50e9, 2), (25e9, 1), (12.5e9, 1)])
def test_lanes_count_the_messages_the_pools_nics_carry_at_once(pool_bytes_per_s: float, lanes: int) -> None:
    """Staggered, 2 replicas of tp 2 at 50 GB/s a NIC, 4 memory devices: at 50 GB/s the pool's 200 carry two
    messages of 100 at once; at 25 (100 in all) one; at 12.5 one message at the pool's 50."""
    model = _model("lamina", **{
        "schedule": {"kind": "staggered", "micro_batches": 3, "divide_and_conquer": True},
        "devices.compute.count": 4, "links.attention.bytes_per_s_per_direction": 50e9,
        "links.attention_pool": {"name": "pool-nic", "source": "test", "latency_s": 1.65e-5,
                                 "bytes_per_s_per_direction": pool_bytes_per_s}})
    assert model.link_lanes == lanes
    assert model.nic_bytes_per_s == min(2 * 50e9, 4 * pool_bytes_per_s)


def test_a_pool_nic_without_attention_offloading_is_refused() -> None:
    with pytest.raises(SpecError) as error:
        with_fields(load_system("vllm-h100"), {"links.attention_pool": "nic-200g-host"})
    assert error.value.where == "links.attention_pool" and "attention offloading" in error.value.message
