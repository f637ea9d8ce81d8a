"""Lamina with a TPU v6e attention pool (`lamina-tpu-v6e`, issue 16: "TPU v6e as presets with price per hour"): the
pool is a `chip` device, a roofline (archsim.systems.chip_device), so its decode attention and capacity follow from
the chip preset (pim.md §3.2 Table 1) and the system's efficiencies, by closed form."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel
from archsim.systems.system_spec import load_system, with_fields

LLAMA3_70B = library.load_workload_spec("llama3-70b")
TPU_V6E_BYTES, TPU_V6E_BYTES_PER_S = 2**35, 1.64e12  # Table 1: 32 GB (taken as GiB), 1.64 TB/s


@pytest.fixture(scope="module")
def model() -> OffloadModel:
    return system_model(load_system("lamina-tpu-v6e"), LLAMA3_70B)


def test_the_pool_is_four_tpu_chips_holding_the_kv_cache(model) -> None:
    assert model.pool_device.kind == "chip" and model.pool_devices == 4
    assert model.kv_capacity_bytes == 4 * TPU_V6E_BYTES
    assert model.price_per_hour == pytest.approx(2 * 11.06 + 4 * 2.70)


def test_decode_attention_on_a_chip_is_its_bandwidth_roofline(model) -> None:
    """One request at context c on one chip's 2 of 8 KV heads (G = 8: 16 query heads): the KV cache read
    (2 x c x 2 heads x 128 x 2 B) plus q and the output, at 70 % of 1.64 TB/s; GQA's Op/B ~8 is far below the
    chip's ridge, so the matrix term does not bind."""
    context = 4096
    kv_bytes = 2 * context * 2 * 128 * 2
    q_and_out_bytes = 2 * 16 * 128 * 2  # 16 query heads per chip, q in and the output out
    expected_s = (kv_bytes + q_and_out_bytes) / (TPU_V6E_BYTES_PER_S * 0.7)
    assert model.attention_cost([context]).time_s == pytest.approx(expected_s, rel=0.01)


def test_it_serves_an_iteration_and_its_link_is_the_200g_nic(model) -> None:
    # a message moves at the slower end: 2 H100 NICs on NCCL's 400 Gb/s path against 4 TPU NICs on the 200 Gb/s one
    assert model.nic_bytes_per_s == pytest.approx(min(2 * 35.5e9, 4 * 17.75e9))
    layer = model.layer((1024,) * 32)
    # the critical path holds the pool's attention and both one-way latencies of the host path (33.3 us each)
    assert layer.cycle_s(True) > layer.pool_s(True) + 2 * 3.33e-5


def test_a_gpu_pool_device_is_refused_naming_both_pool_kinds() -> None:
    gpu = {"kind": "gpu", "count": 4, "preset": "h20", "attention_kernel": "FlashAttention-2", "price_per_hour": 4.63}
    with pytest.raises(SpecError) as error:
        with_fields(load_system("lamina-tpu-v6e"), {"devices.memory": gpu})
    assert error.value.where == "placement" and "memory-pool or chip device" in error.value.message
