"""The xPU as Duplex models it (issue 15 part D4): a gpu device's `attention_kernel` and `energy_model` fields
(archsim/systems/system_spec.py, gpu_device.py, devices.py) and the Duplex presets that set them.

Prices come from ../shared/reference/pim.md §5 (AttAcc's config.py, from FGDRAM): an off-chip HBM access is
ACT 0.11 + cell 0.44 + column-to-BG mux 1.01 + BG-to-GIO 1.23 + TSV 0.5 + interposer 0.3 = 3.59 pJ/b; ALU 0.32 pJ
per op; L2 2.4 + L1 1.28 = 3.68 pJ per byte. Mixtral-8x7B at TP4: hidden 4096, 32 / 4 = 8 query heads, 8 / 4 = 2 KV
heads, head_dim 128."""

from __future__ import annotations

import copy

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.devices import device_models
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Step, layer_op
from archsim.systems.system_spec import load_system, system_from_dict, system_names, with_fields

HBM_PJ_PER_BIT = 0.11 + 0.44 + 1.01 + 1.23 + 0.5 + 0.3  # 3.59
SRAM_PJ_PER_BYTE = 2.4 + 1.28  # 3.68
PJ_PER_FLOP = 0.32
PRICES = ("hbm_pj_per_bit", "pj_per_flop", "sram_pj_per_byte", "static_w")


def _gpu_fields(system_name: str, device: str, **fields) -> dict:
    """The preset's data with the device's gpu fields replaced by `fields` (None drops one)."""
    data = copy.deepcopy(dict(load_system(system_name).data))
    entry = data["devices"][device]
    for key, value in fields.items():
        entry.pop(key, None)
        if value is not None:
            entry[key] = value
    return data


def _error(data: dict) -> SpecError:
    with pytest.raises(SpecError) as error:
        system_from_dict(data, "mine.yaml")
    return error.value


@pytest.mark.parametrize("kernel", ["FlashAttention-3", 7, "Flash-Decoding", "FlashAttention (v1)"])
def test_an_attention_kernel_without_decode_and_prefill_paths_is_refused(kernel) -> None:
    """Not a kernel of archsim.model.gpu_kernels, not text, or one with only a decode path (Flash-Decoding) or only
    a prefill path (FlashAttention v1): a GPU device runs both."""
    error = _error(_gpu_fields("gpu", "gpu", attention_kernel=kernel))
    assert (error.source, error.where) == ("mine.yaml", "devices.gpu.attention_kernel")
    assert "FlashAttention-2" in error.message  # the usable kernels are listed


def test_the_attention_kernel_is_a_gpu_and_memory_pool_field_only() -> None:
    """A memory pool runs decode attention only (Lamina), so a decode-only kernel is enough there; other kinds take
    no attention kernel. (A memory pool is read by attention offloading alone: Lamina's ping-pong.)"""
    data = copy.deepcopy(dict(load_system("lamina").data))
    data["devices"]["memory"]["attention_kernel"] = "Flash-Decoding"
    assert system_from_dict(data, "mine.yaml").devices["memory"].attention_kernel == "Flash-Decoding"
    data["devices"]["memory"]["kind"] = "gpu"
    assert "decode and prefill" in _error(data).message
    data = copy.deepcopy(dict(load_system("neupims").data))
    data["devices"]["npu"]["attention_kernel"] = "FlashAttention-2"
    assert _error(data).where.startswith("devices.npu")


@pytest.mark.parametrize("missing", PRICES)
def test_per_action_energy_without_a_price_is_refused_naming_it(missing: str) -> None:
    prices = {"hbm_pj_per_bit": 3.59, "pj_per_flop": 0.32, "sram_pj_per_byte": 3.68, "static_w": 140}
    prices[missing] = None
    error = _error(_gpu_fields("gpu", "gpu", energy_model="per-action", **prices))
    assert (error.source, error.where) == ("mine.yaml", f"devices.gpu.{missing}")
    assert "missing" in error.message


def test_energy_model_values_are_checked() -> None:
    assert _error(_gpu_fields("gpu", "gpu", energy_model="board")).where == "devices.gpu.energy_model"
    # a price under tdp would be silently unused
    assert _error(_gpu_fields("gpu", "gpu", pj_per_flop=0.32)).where == "devices.gpu.pj_per_flop"
    bad = _gpu_fields("duplex-gpu", "gpu", hbm_pj_per_bit=-1)
    assert _error(bad).where == "devices.gpu.hbm_pj_per_bit"
    bad = _gpu_fields("duplex-gpu", "gpu", sram_pj_per_byte="3.68 pJ")
    assert _error(bad).where == "devices.gpu.sram_pj_per_byte"
    bad = _gpu_fields("duplex-gpu", "gpu", static_w=-1)
    assert _error(bad).where == "devices.gpu.static_w"
    assert _error(_gpu_fields("gpu", "gpu", static_w=100)).where == "devices.gpu.static_w"  # tdp holds it already


def test_the_neupims_gpu_preset_is_unchanged() -> None:
    """No new field set but the attention kernel, now named (a gpu given attention has no default kernel): eager
    PyTorch attention, the default it ran before, GEMMs and attention at the eager family's calibrated parameters,
    board power for the time."""
    device = load_system("gpu").devices["gpu"]
    assert (device.attention_kernel, device.energy) == ("PyTorch eager attention", None)
    gpu = device_models(load_system("gpu"))["gpu"]
    assert gpu.kernel == "PyTorch eager attention"
    assert gpu.energy is None and gpu.kernel_params == gpu.params
    op = layer_op(library.load_workload_spec("gpt3-7b"), Step("decode", 16, 100), "gpt", "qkv")
    cost = gpu.cost([op])
    assert cost.energy_j == pytest.approx(gpu.spec.power_w * cost.time_s, rel=1e-12)


def test_every_duplex_gpu_is_flashattention_2_priced_per_action() -> None:
    duplex = [name for name in system_names() if name.startswith("duplex")]
    assert len(duplex) == 7
    for name in duplex:
        for device in load_system(name).devices.values():
            if device.kind != "gpu":
                continue
            assert device.attention_kernel == "FlashAttention-2", name
            energy = device.energy
            assert energy.hbm_pj_per_bit == pytest.approx(HBM_PJ_PER_BIT, rel=1e-12), name
            assert energy.sram_pj_per_byte == pytest.approx(SRAM_PJ_PER_BYTE, rel=1e-12), name
            assert energy.pj_per_flop == PJ_PER_FLOP, name
            assert energy.static_w == pytest.approx(0.2 * device.spec.power_w, rel=1e-12), name  # gpu.md §5


def test_static_power_is_drawn_over_every_iteration_on_every_rank() -> None:
    """A per-action device's `static_w` adds static_w x ranks x the iteration's wall time to its energy, whatever
    its ops do within it (Duplex's xPU idles while its Logic-PIM runs attention); at 0 W the energy is the ops'
    alone."""
    workload = library.load_workload_spec("mixtral-8x7b")
    batch = Batch((300,), (500,) * 31)
    for name in ("duplex-gpu", "duplex-pe-et"):
        system = load_system(name)
        quiet = system_from_dict(_gpu_fields(name, next(d for d in system.devices if system.devices[d].kind == "gpu"),
                                             static_w=0), "mine.yaml")
        model, dynamic = system_model(system, workload), system_model(quiet, workload)
        assert model.static_w == 140 * model.devices_counted and dynamic.static_w == 0
        cost, ops = model.iteration(batch), dynamic.iteration(batch)
        assert cost.time_s == ops.time_s
        assert cost.energy_j == pytest.approx(ops.energy_j + 140 * model.devices_counted * cost.time_s, rel=1e-12)


@pytest.fixture(scope="module")
def mixtral_gpu():
    model = system_model(load_system("duplex-gpu"), library.load_workload_spec("mixtral-8x7b"))
    return model, model.devices["gpu"]


def test_per_action_energy_of_a_gemm_op_is_the_hand_formula(mixtral_gpu) -> None:
    """out_proj of 32 decode tokens: one GEMM, (32 x 1024) @ (1024 x 4096) in FP16. DRAM: the weights, the input
    and the output once; FLOPs 2 x M x K x N."""
    model, gpu = mixtral_gpu
    op = next(o for o in model.ops("decode", 32, 1) if o.name == "out_proj")
    m, k, n = 32, 8 * 128, 4096
    dram_bytes = 2 * (k * n + m * k + m * n)
    flops = 2 * m * k * n
    assert op.flops == flops
    want_j = (dram_bytes * (8 * HBM_PJ_PER_BIT + SRAM_PJ_PER_BYTE) + flops * PJ_PER_FLOP) * 1e-12
    assert gpu.cost([op]).energy_j == pytest.approx(want_j, rel=1e-12)


def test_per_action_energy_of_an_elementwise_op_is_the_hand_formula(mixtral_gpu) -> None:
    """The residual add of 32 tokens: reads two 32 x 4096 FP16 tensors, writes one; one add per element."""
    model, gpu = mixtral_gpu
    op = next(o for o in model.ops("decode", 32, 1) if o.name == "attn_residual")
    dram_bytes, flops = 3 * 32 * 4096 * 2, 32 * 4096
    assert op.flops == flops
    want_j = (dram_bytes * (8 * HBM_PJ_PER_BIT + SRAM_PJ_PER_BYTE) + flops * PJ_PER_FLOP) * 1e-12
    assert gpu.cost([op]).energy_j == pytest.approx(want_j, rel=1e-12)


def test_flashattention_2_decode_reads_the_kv_cache_once(mixtral_gpu) -> None:
    """32 requests at 384 tokens: K and V of 2 KV heads x 128 x FP16 = 32 x 2 x 2 x 384 x 128 x 2 B = 12.6 MB.
    Eager PyTorch copies them per query head (repeat_kv) and round-trips the scores; the fused kernel's DRAM
    bytes are the KV cache plus Q, O and its split partials, a few percent more; the eager path at least twice."""
    model, gpu = mixtral_gpu
    decodes = [model.attention("decode", 384)] * 32
    kv_bytes = 32 * 2 * 2 * 384 * 128 * 2
    flops = sum(op.flops for op in decodes)
    fused_bytes = (gpu.cost(decodes).energy_j * 1e12 - flops * PJ_PER_FLOP) / (8 * HBM_PJ_PER_BIT
                                                                               + SRAM_PJ_PER_BYTE)
    assert kv_bytes < fused_bytes < 1.1 * kv_bytes
    eager = device_models(with_fields(load_system("duplex-gpu"),
                                      {"devices.gpu.attention_kernel": "PyTorch eager attention"}))["gpu"]
    eager_bytes = (eager.cost(decodes).energy_j * 1e12 - flops * PJ_PER_FLOP) / (8 * HBM_PJ_PER_BIT
                                                                                + SRAM_PJ_PER_BYTE)
    assert eager_bytes > 2 * kv_bytes
    assert gpu.cost(decodes).time_s < eager.cost(decodes).time_s


# ------------------------------------------------------------------------------------------------ roofline timing
def test_roofline_timing_is_max_of_peak_flops_and_peak_bandwidth_per_op() -> None:
    """`timing: roofline` (Duplex's simulator's GPU, pim.md §2.5): Llama3-70B at TP4; a 4096-token prompt's
    attention is compute-bound (FLOPs / 989.4 TFLOP/s), a decode step's FFN at batch 32 memory-bound (its weights
    and activations / 3.35 TB/s); no launches."""
    system = with_fields(load_system("duplex-gpu"), {"devices.gpu.timing": "roofline"})
    device = device_models(system)["gpu"]
    shard = system_model(system, library.load_workload_spec("llama3-70b")).shard
    attention = layer_op(shard, Step("prefill", 1, 4096), shard.block, "attention")
    ffn = layer_op(shard, Step("decode", 32, 512), shard.block, "ffn")
    peak, bandwidth = 989.4e12, 3.35e12
    assert attention.flops / peak > attention.moved_bytes() / bandwidth
    assert device.cost([attention]).time_s == pytest.approx(attention.flops / peak, rel=1e-9)
    assert ffn.flops / peak < ffn.moved_bytes() / bandwidth
    assert device.cost([ffn]).time_s == pytest.approx(ffn.moved_bytes() / bandwidth, rel=0.01)
    assert device.elementwise_s(1e9) == pytest.approx(1e9 / bandwidth)


def test_a_timing_other_than_calibrated_or_roofline_is_refused() -> None:
    error = _error(_gpu_fields("duplex-gpu", "gpu", timing="peak"))
    assert error.where == "devices.gpu.timing" and "calibrated, roofline" in error.message


def test_attention_offloading_draws_both_pools_static_power() -> None:
    """Lamina's compute and memory pools priced per action with a static power: each pool's devices (count x
    static_w, as the price counts them) over the iteration's wall time, beside the same ops' energy at 0 W."""
    workload = library.load_workload_spec("llama3-70b")
    batch = Batch((), (900,) * 64)

    def lamina(compute_w: float, memory_w: float):
        data = copy.deepcopy(dict(load_system("lamina").data))
        prices = {"energy_model": "per-action", "hbm_pj_per_bit": 3.59, "pj_per_flop": 0.32, "sram_pj_per_byte": 3.68}
        data["devices"]["compute"].update(prices, static_w=compute_w)
        data["devices"]["memory"].update(prices, static_w=memory_w)
        return system_model(system_from_dict(data, "mine.yaml"), workload)

    quiet, loud = lamina(0, 0), lamina(140, 80)
    assert (quiet.static_w, loud.static_w) == (0, 2 * 140 + 4 * 80)
    cost, ops = loud.iteration(batch), quiet.iteration(batch)
    assert cost.time_s == ops.time_s
    assert cost.energy_j == pytest.approx(ops.energy_j + (2 * 140 + 4 * 80) * cost.time_s, rel=1e-12)
