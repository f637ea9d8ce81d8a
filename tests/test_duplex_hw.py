"""Duplex's hardware, workloads and Op/B dispatch (issue 15 part D1): the Op/B of every op of a Mixtral decode step
against closed forms, the Table I workloads, the Logic-PIM / Bank-PIM / BankGroup-PIM specs, the duplex* presets
and their placement by Op/B, and the bad input of a MoE workload.

Expected values and where they come from:
- Table I (../shared/reference/pim.md §2.4): layers, hidden, interm, heads, deg_grp, experts, top-k per model;
  parameter counts from the models' names (GLaM 143B, Grok-1 314B, Mixtral 46.7B, OPT 66B, Llama 3 70B).
- Logic-PIM per stack (pim.md §2.2, §5): 32 x 512 FP16 MACs at 650 MHz, 4 x 670.4 GB/s, 17.80 mm2; Bank-PIM 16 x
  670.4 GB/s at 1 Op/B; BankGroup-PIM Logic-PIM's rates. Access energy per bit (§5, FGDRAM): ACT 0.11, cell read
  0.44, column-to-BG mux 1.01, BG-to-GIO 1.23, TSV 0.5 pJ.
- Op/B closed forms, derived below by hand from the cascade files (einsum/*.yaml) for T tokens of a decode step,
  each token's request at context N, word w bytes: FLOPs count a MAC as two and every other op as one; bytes are
  weights, activations in and out and the KV cache, each once (intermediates stay on chip).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from test_system_ops import placed_ops

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems.duplex_reproduce import duplex_system
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Step, layer_kinds, layer_op, layer_ops, op_table, resident_tokens
from archsim.systems.system_spec import load_system
from archsim.workload import workload_from_dict

PRESETS = ("duplex-gpu", "duplex-2xgpu", "duplex", "duplex-bank-pim", "duplex-bankgroup-pim")
HBM3_STACK_BYTES_PER_S = 670.4e9  # pim.md §5
LP_STACK_FLOPS_PER_S = 2 * 32 * 512 * 650e6  # pim.md §2.2: 21.3 TFLOPS
STACKS = 5  # pim.md §2.4

# Table I (pim.md §2.4): layers, hidden, interm, heads, deg_grp, experts, top_k; None where the model is dense
TABLE_I = {
    "mixtral-8x7b": (32, 4096, 14336, 32, 4, 8, 2),
    "glam-143b": (32, 4096, 16384, 32, 1, 64, 2),
    "grok-1-314b": (64, 6144, 32768, 48, 6, 8, 2),
    "opt-66b": (64, 9216, 36864, 72, 1, None, None),
    "llama3-70b": (80, 8192, 28672, 64, 8, None, None),
}
PARAMETERS = {"mixtral-8x7b": 46.7e9, "glam-143b": 143e9, "grok-1-314b": 314e9, "opt-66b": 66e9,
              "llama3-70b": 70e9}  # the models' names; Mixtral's 46.7B from Jiang et al. 2024 §2


def mixtral():
    return library.load_workload_spec("mixtral-8x7b")


def reached(tokens: int, top_k: int, experts: int) -> int:
    """Distinct experts T tokens reach under uniform random routing, each to top_k distinct of E: an expert is missed
    by all with probability (1 - k / E)^T, so E (1 - (1 - k / E)^T) on average, to the nearest whole expert."""
    return math.floor(experts * (1 - (1 - top_k / experts) ** tokens) + 0.5)


# ------------------------------------------------------------------------------------------------- Op/B


def closed_forms(T: int, N: int) -> dict[str, tuple[float, float]]:
    """(FLOPs, bytes) of each op of one Mixtral layer in a decode step of T requests at context N, by hand from the
    cascade files: d hidden, h heads, g kv_heads, e head_dim, S ffn_dim, X experts, k top_k, w bytes."""
    d, h, g, e, S, k, w = 4096, 32, 8, 128, 14336, 2, 2
    X = reached(T, k, 8)  # experts the step's tokens reach (of 8): the router's logits and weights are over those
    # rmsnorm: SS = sum X*X (T d MACs), RS = rsqrt(SS / hidden + eps) (a div, an add, a sqrt per token),
    # Y = X * RS * W (2 T d muls); reads W (d) and X, writes Y
    norm = (2 * T * d + 2 * T * d + 3 * T, w * (d + 2 * T * d))
    # qkv-projection: T d (h + 2g) e MACs; weights d (h + 2g) e, X in, Q out, K and V written to the KV cache
    qkv = (2 * T * d * (h + 2 * g) * e, w * (d * (h + 2 * g) * e + T * d + T * h * e + 2 * T * g * e))
    # attention-decode-gqa over N keys: QK and SNV (2 T h N e MACs), max, exp, subtract and sum per score
    # (4 T h N), the division per output (T h e); reads Q, K and V (2 T g N e), writes AV
    attention = (4 * T * h * N * e + 4 * T * h * N + T * h * e, w * (2 * T * h * e + 2 * T * g * N * e))
    out_proj = (2 * T * h * e * d, w * (h * e * d + T * h * e + T * d))  # Z = AV WO
    residual = (T * d, w * 3 * T * d)  # Y = X + R
    # moe-experts: router T d X MACs; rank by T X X compares summed (T X X adds); max T X; exp, subtract, sum and
    # divide per routed pair (4 T k); H1, H3, O: 3 T k d S MACs over routed pairs; SiLU and the gate product
    # (2 T k S); combine T k d MACs. Weights WR (d X) and 3 X d S; X in, Y out
    moe = (2 * (T * d * X + 3 * T * k * d * S + T * k * d) + 2 * T * X * X + T * X + 4 * T * k + 2 * T * k * S,
           w * (d * X + 3 * X * d * S + 2 * T * d))
    return {"attn_norm": norm, "qkv": qkv, "attention": attention, "out_proj": out_proj, "attn_residual": residual,
            "ffn_norm": norm, "moe": moe, "ffn_residual": residual}


@pytest.mark.parametrize(("T", "N"), [(1, 1), (3, 100), (32, 1024), (128, 4096)])
def test_every_op_of_a_mixtral_decode_step_is_its_closed_form(T: int, N: int) -> None:
    ops = layer_ops(mixtral(), Step("decode", T, N), "llama")
    want = closed_forms(T, N)
    assert [op.name for op in ops] == list(want)
    for op in ops:
        flops, moved = want[op.name]
        assert (op.flops, op.bytes) == (flops, moved), op.name
        assert op.op_per_byte == pytest.approx(flops / moved, rel=1e-12), op.name


@pytest.mark.parametrize("T", [8, 32, 64, 128])
def test_moe_op_per_byte_is_about_the_tokens_per_expert(T: int) -> None:
    """2 T k d S x 3 FLOPs over 3 X d S w bytes of the X experts reached: Op/B ~ 2 T k / (X w) = T k / X tokens per
    expert at w = 2 (8 tokens reach 7.2 -> 7 of the 8 experts); the router, activations and gates move it by under
    1 % at Mixtral's sizes."""
    op = layer_op(mixtral(), Step("decode", T, 1024), "llama", "moe")
    assert op.op_per_byte == pytest.approx(2 * T * 2 / (reached(T, 2, 8) * 2), rel=0.01)


@pytest.mark.parametrize(("name", "deg_grp"), [("mixtral-8x7b", 4), ("llama3-70b", 8), ("grok-1-314b", 6),
                                                ("opt-66b", 1), ("glam-143b", 1)])
def test_gqa_decode_attention_op_per_byte_is_about_deg_grp(name: str, deg_grp: int) -> None:
    """4 h N e FLOPs per request over 2 g N e w bytes of K and V: Op/B -> 2 h / (g w) = deg_grp at w = 2, the
    softmax's 4 h N FLOPs adding 1 / e of it (under 1 % at head_dim 128, context 4096)."""
    op = layer_op(library.load_workload_spec(name), Step("decode", 1, 4096), library.load_workload_spec(name).block,
                  "attention")
    assert op.op_per_byte == pytest.approx(deg_grp, rel=0.01)


def test_op_table_prints_every_op_with_its_op_per_byte() -> None:
    """32 decodes: the MoE's Op/B is 8.000 (32 x 2 / 8 tokens per expert, within the 0.01 % of the router)."""
    step = Step("decode", 32, 1024)
    table = op_table(mixtral(), step, "llama").splitlines()
    ops = layer_ops(mixtral(), step, "llama")
    assert len(table) == 2 + len(ops) and "Op/B" in table[1]
    for row, op in zip(table[2:], ops, strict=True):
        assert row.split()[:2] == [op.name, op.cascade] and row.split()[-1] == f"{op.op_per_byte:.3f}"
    assert table[2 + [op.name for op in ops].index("moe")].split()[-1] == "8.000"


# ------------------------------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("name", sorted(TABLE_I))
def test_workload_is_table_i(name: str) -> None:
    p = library.load_workload_spec(name).params
    layers, hidden, interm, heads, deg_grp, experts, top_k = TABLE_I[name]
    assert (p["layers"], p["hidden"], p["heads"], p["heads"] / p["kv_heads"]) == (layers, hidden, heads, deg_grp)
    assert (p.get("experts"), p.get("top_k"), p["word_bytes"]) == (experts, top_k, 2)  # §2.4: all FP16
    if name == "glam-143b":  # dense layers: interm; experts: the SwiGLU width of a two-matrix interm expert
        assert p["dense_ffn_dim"] == interm
        assert 3 * p["ffn_dim"] == pytest.approx(2 * interm, rel=1e-3)
    else:
        assert p["ffn_dim"] == interm


@pytest.mark.parametrize("name", sorted(TABLE_I))
def test_workload_parameters_are_the_models_size(name: str) -> None:
    """Every layer's weights (by its kind, in a step whose tokens reach every expert) plus one vocab x hidden
    embedding: within 2 % of the model's name."""
    workload = library.load_workload_spec(name)
    kinds = layer_kinds(workload)
    step = Step("decode", resident_tokens(workload), 1)
    per_kind = {kind: sum(op.bytes_by_role["weights"] for op in layer_ops(workload, step, workload.block, kind))
                for kind in set(kinds)}
    total = sum(per_kind[kind] for kind in kinds) / 2 + workload.params["vocab"] * workload.params["hidden"]
    assert total == pytest.approx(PARAMETERS[name], rel=0.02)


def test_glam_is_moe_every_other_layer() -> None:
    """Table I: GLaM's MoE every other layer: 16 of 32, layers 1, 3, ..., 31 (GShard's convention); its dense layers
    run the gated dense FFN at interm 16384, its MoE layers the 64 experts."""
    glam = library.load_workload_spec("glam-143b")
    kinds = layer_kinds(glam)
    assert kinds == ("dense", "moe") * 16
    dense = layer_op(glam, Step("decode", 4, 64), "llama", "ffn", kind="dense")
    assert (dense.cascade, dense.binding.params["ffn_dim"]) == ("ffn-swiglu", 16384)
    assert dense.bytes_by_role["weights"] == 3 * 4096 * 16384 * 2
    moe = layer_op(glam, Step("decode", resident_tokens(glam), 64), "llama", "moe")
    assert (moe.cascade, moe.binding.params["experts"]) == ("moe-experts", 64)


@pytest.mark.parametrize(("name", "tokens", "reached"), [("mixtral-8x7b", 1, 2), ("mixtral-8x7b", 3, 5),
                                                         ("mixtral-8x7b", 4, 5), ("glam-143b", 4, 8),
                                                         ("glam-143b", 32, 41), ("grok-1-314b", 1, 2)])
def test_a_step_reads_the_weights_of_the_experts_its_tokens_reach(name: str, tokens: int, reached: int) -> None:
    """T tokens routed uniformly at random to top_k = 2 of E experts each reach E (1 - (1 - 2 / E)^T) on average
    (Mixtral: 3 tokens 4.6, 4 tokens 5.5; GLaM: 4 tokens 7.6, 32 tokens 40.8), to the nearest: a step reads those
    experts' weights (one decode token of Mixtral: 2 of its 8), with the routed pairs' FLOPs unchanged; the model's
    memory still holds every expert (`resident_tokens`: the fewest tokens expected to reach all of them, E (1 -
    2 / E)^T below one half)."""
    workload = library.load_workload_spec(name)
    d, S, X = (int(workload.params[k]) for k in ("hidden", "ffn_dim", "experts"))
    moe = layer_op(workload, Step("decode", tokens, 64), workload.block, "moe", "moe")
    assert moe.binding.params["experts"] == reached
    assert moe.bytes_by_role["weights"] == 2 * (d * reached + 3 * reached * d * S)
    full = layer_op(workload, Step("decode", resident_tokens(workload), 64), workload.block, "moe", "moe")
    fewest = next(t for t in range(1, 10_000) if X * (1 - 2 / X) ** t < 0.5)
    assert resident_tokens(workload) == fewest and full.bytes_by_role["weights"] == 2 * (d * X + 3 * X * d * S)


@pytest.mark.parametrize(("name", "moe_layers"), [("mixtral-8x7b", 32), ("grok-1-314b", 64), ("llama3-70b", 0),
                                                   ("opt-66b", 0)])
def test_layer_kinds_without_moe_every(name: str, moe_layers: int) -> None:
    kinds = layer_kinds(library.load_workload_spec(name))
    assert (len(kinds), kinds.count("moe")) == (TABLE_I[name][0], moe_layers)


def test_a_dense_layer_of_a_moe_model_without_dense_ffn_dim_uses_ffn_dim() -> None:
    op = layer_op(mixtral(), Step("decode", 2, 8), "llama", "ffn", kind="dense")
    assert (op.cascade, op.binding.params["ffn_dim"]) == ("ffn-swiglu", 14336)


def test_a_layer_kind_the_workload_lacks_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        layer_ops(library.load_workload_spec("llama3-70b"), Step("decode", 1, 8), "llama", kind="moe")
    assert err.value.where == "params.experts"
    with pytest.raises(SpecError) as err:
        layer_ops(mixtral(), Step("decode", 1, 8), "llama", kind="sparse")
    assert err.value.where == "kind"


# ------------------------------------------------------------------------------------------------- devices


def lp_spec(preset: str, device: str):
    return load_system(preset).devices[device].spec


def test_duplex_logic_pim_is_the_papers_stack() -> None:
    spec = lp_spec("duplex", "lp")
    assert spec.peak_flops_per_s == pytest.approx(LP_STACK_FLOPS_PER_S)
    assert spec.internal_bytes_per_s == pytest.approx(4 * HBM3_STACK_BYTES_PER_S)
    assert spec.op_per_byte == pytest.approx(7.94, abs=0.01)  # §2.2 "compute-to-bandwidth ratio of 8 Op/B"
    assert spec.capacity_bytes * STACKS == 80 * 2**30  # §2.4: 80 GB per device
    assert spec.internal_pj_per_bit == pytest.approx(0.11 + 0.44 + 1.01 + 1.23 + 0.5)
    assert load_system("duplex").devices["lp"].count == STACKS


def test_the_logic_pim_streams_at_its_peak_less_refresh() -> None:
    """An op's bytes stream at the stacks' internal peak less the time the HBM refreshes, tRFC 260 of tREFI 3900
    cycles (pim.md §1.2's HBM timing); `--as-artifact` sets no refresh, as Duplex's simulator's LOGIC unit. The ridge
    point stays the peak's."""
    workload = library.load_workload_spec("mixtral-8x7b")
    lp = system_model(load_system("duplex"), workload).devices["lp"]
    assert lp.spec.refresh_fraction == pytest.approx(260 / 3900)
    op = layer_op(workload, Step("decode", 32, 1024), "llama", "attention")
    assert lp.cost([op]).memory_s == pytest.approx(
        op.moved_bytes() / (STACKS * 4 * HBM3_STACK_BYTES_PER_S * (1 - 260 / 3900)), rel=1e-12)
    assert lp.internal_bytes_per_s == pytest.approx(STACKS * 4 * HBM3_STACK_BYTES_PER_S)
    assert duplex_system("duplex", as_artifact=True).devices["lp"].spec.refresh_fraction == 0.0


@pytest.mark.parametrize("value", [1, -0.1, "0.05"])
def test_a_refresh_fraction_is_a_fraction_below_one(value, tmp_path) -> None:
    data = yaml.safe_load((Path(library.__file__).parents[1] / "systems/system_presets/duplex.yaml").read_text())
    data["devices"]["lp"]["refresh_fraction"] = value
    path = tmp_path / "duplex.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"devices\.lp\.refresh_fraction"):
        load_system(str(path))


def test_bank_and_bankgroup_pim_are_the_papers_alternatives() -> None:
    bank, bankgroup, logic = lp_spec("duplex-bank-pim", "pim"), lp_spec("duplex-bankgroup-pim", "pim"), \
        lp_spec("duplex", "lp")
    assert bank.internal_bytes_per_s == pytest.approx(16 * HBM3_STACK_BYTES_PER_S)  # 16x bandwidth
    assert bank.op_per_byte == pytest.approx(1.0)  # peak Op/B 1
    assert bank.internal_pj_per_bit == pytest.approx(0.11 + 0.44)  # ACT + cell read, no muxes or TSVs
    assert (bankgroup.peak_flops_per_s, bankgroup.internal_bytes_per_s) == (logic.peak_flops_per_s,
                                                                            logic.internal_bytes_per_s)
    assert bankgroup.internal_pj_per_bit == pytest.approx(0.11 + 0.44 + 1.01)  # to the bank-group mux


# duplex itself places by `faster` (each op timed on both units, pim.md §2.5: tests/test_duplex_placement_s51.py);
# its peaks cross at 31.8 as duplex-bankgroup-pim's, whose stacks have its rates
@pytest.mark.parametrize(("preset", "device", "threshold"), [("duplex-bank-pim", "pim", 16.0),
                                                             ("duplex-bankgroup-pim", "pim", 31.8)])
def test_op_per_byte_threshold_is_where_the_pim_stops_being_faster(preset: str, device: str, threshold: float):
    """The PIM takes an op while its roofline beats the xPU's: the 5 stacks' peak FLOPs over the H100's DRAM
    bandwidth (the xPU memory-bound, the PIM compute-bound), the artifact's fastest-unit choice (pim.md §2.5) at
    the peaks."""
    system = load_system(preset)
    crossover = STACKS * system.devices[device].spec.peak_flops_per_s / load_gpu("h100-sxm5").dram_bytes_per_s
    assert crossover == pytest.approx(threshold, rel=2e-3)
    rules = [r for r in system.placement if r.op_per_byte_below is not None]
    assert {(r.ops, r.phase, r.device) for r in rules} == {(("attention",), "decode", device), (("moe",), None, device)}
    assert all(r.op_per_byte_below == pytest.approx(crossover, rel=1e-12) for r in rules)  # `crossover` resolved


# ------------------------------------------------------------------------------------------------- presets


@pytest.mark.parametrize("name", ["mixtral-8x7b", "llama3-70b", "opt-66b"])
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_an_iteration(preset: str, name: str) -> None:
    model = system_model(load_system(preset), library.load_workload_spec(name))
    cost = model.iteration(Batch(prefill_tokens=(64,), decode_context_tokens=(100, 900, 3000)))
    assert math.isfinite(cost.time_s) and cost.time_s > 0 and cost.energy_j > 0
    assert model.kv_capacity_bytes > 0
    assert (model.parallelism.tp, model.parallelism.pp) == ((8, 1) if preset == "duplex-2xgpu" else (4, 1))


@pytest.mark.parametrize(("name", "gpu", "gpu2x", "whole"), [("glam-143b", (8, 1, 1), (8, 1, 2), (8, 1, 1)),
                                                            ("grok-1-314b", (8, 1, 2), (8, 1, 4), (8, 2, 1))])
@pytest.mark.parametrize("preset", PRESETS)
def test_large_moe_models_fit_their_devices(preset: str, name: str, gpu: tuple, gpu2x: tuple, whole: tuple) -> None:
    """§2.4: GLaM on 1 x 8 devices, Grok-1 on 2 x 8, TP within a node and expert parallelism across (2xGPU twice
    the groups); the PIM systems hold whole experts per device (`expert_tp: false`), so Grok-1's 8 experts fill a
    node's 8 ranks and its two nodes are pipeline stages. Each device's weights fit its 80 GB (the model refuses
    them otherwise)."""
    system = load_system(preset)
    model = system_model(system, library.load_workload_spec(name))
    par = model.parallelism
    expected = whole if not system.schedule.expert_tp else gpu2x if preset == "duplex-2xgpu" else gpu
    assert (par.tp, par.pp, par.ep) == expected
    assert model.devices_counted == (2 if preset == "duplex-2xgpu" else 1) * (8 if name == "glam-143b" else 16)
    assert model.weight_bytes_per_device <= model.weight_device.capacity_bytes


def test_duplex_places_decode_attention_and_low_op_per_byte_moe_on_the_logic_pim() -> None:
    """32 decodes: the MoE sees 32 x 2 / 8 = 8 tokens per expert (Op/B 8 < 31.8), decode attention Op/B ~4: both on
    the Logic-PIM; the projections (Op/B ~32 at 32 tokens, above) and a prompt's attention on the xPU. 256
    decodes: 64 tokens per expert (Op/B 64), the MoE goes back to the xPU."""
    model = system_model(load_system("duplex"), mixtral())
    placed = placed_ops(model, Batch(prefill_tokens=(), decode_context_tokens=(500,) * 32))
    assert {op.name for op, device in placed if device == "lp"} == {"attention", "moe"}
    mixed = placed_ops(model, Batch(prefill_tokens=(16,), decode_context_tokens=(500,) * 15))  # 31 tokens
    assert [device for op, device in mixed if op.name == "attention"] == ["xpu"] + ["lp"] * 15
    busy = placed_ops(model, Batch(decode_context_tokens=(500,) * 256))
    assert next(device for op, device in busy if op.name == "moe") == "xpu"


def test_bank_pim_takes_mha_and_deg_8_attention_but_not_moe_above_16() -> None:
    """Bank-PIM's threshold is 16 Op/B: OPT's MHA (~1) and Llama 3's deg 8 (~8) decode attention both go to the
    PIM; Mixtral's MoE at 20 tokens per expert (80 decodes) stays on the xPU, at 8 (32 decodes) goes to the PIM."""
    system = load_system("duplex-bank-pim")
    for name in ("opt-66b", "llama3-70b"):
        placed = placed_ops(system_model(system, library.load_workload_spec(name)),
                             Batch(decode_context_tokens=(1000,) * 4))
        assert [device for op, device in placed if op.name == "attention"] == ["pim"] * 4
    model = system_model(system, mixtral())
    for decodes, device in ((80, "xpu"), (32, "pim")):
        placed = placed_ops(model, Batch(decode_context_tokens=(500,) * decodes))
        assert next(d for op, d in placed if op.name == "moe") == device


# ------------------------------------------------------------------------------------------------- bad input

MOE = {"name": "moe", "params": {"hidden": 64, "heads": 4, "kv_heads": 4, "head_dim": 16, "ffn_dim": 256,
                                 "layers": 4, "experts": 8, "top_k": 2}}


@pytest.mark.parametrize(("changes", "where", "fragment"), [
    ({"top_k": 9}, "params.top_k", "expected at most experts (8)"),
    ({"moe_every": 5}, "params.moe_every", "expected at most layers (4)"),
])
def test_bad_moe_sizes_name_the_field(changes: dict, where: str, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        workload_from_dict({**MOE, "params": {**MOE["params"], **changes}}, "moe.yaml")
    assert (err.value.source, err.value.where) == ("moe.yaml", where) and fragment in err.value.message


@pytest.mark.parametrize("key", ["moe_every", "dense_ffn_dim"])
def test_moe_only_sizes_need_experts(key: str) -> None:
    params = {k: v for k, v in MOE["params"].items() if k not in ("experts", "top_k")}
    with pytest.raises(SpecError) as err:
        workload_from_dict({**MOE, "params": {**params, key: 2}}, "dense.yaml")
    assert err.value.where == f"params.{key}" and "give experts too" in err.value.message


def test_simulate_refuses_top_k_above_experts(cli, tmp_path) -> None:
    data = yaml.safe_load(Path(mixtral().path).read_text())
    data["params"]["top_k"] = 9
    path = tmp_path / "mixtral-top9.yaml"
    path.write_text(yaml.safe_dump(data))
    message = cli("simulate", "-s", "duplex", "-w", str(path), "--rate", "4", "--requests", "2", expect=2).output
    assert message.startswith(f"error: {path}: params.top_k: expected at most experts (8)"), message


def test_simulate_refuses_an_expert_count_ep_does_not_divide(cli, tmp_path) -> None:
    data = copy.deepcopy(dict(load_system("duplex").data))
    data["parallelism"]["by_workload"]["mixtral-8x7b"]["ep"] = 3
    path = tmp_path / "duplex-ep3.yaml"
    path.write_text(yaml.safe_dump(data))
    message = cli("simulate", "-s", str(path), "-w", "mixtral-8x7b", "--rate", "4", "--requests", "2",
                  expect=2).output
    assert message == (f"error: {path}: parallelism.by_workload.mixtral-8x7b.ep: expected a divisor of experts "
                       "(8 in mixtral-8x7b), got 3\n"), message


def test_simulate_runs_duplex_on_mixtral(cli) -> None:
    """The brief's command: 50 Poisson requests at 4 per second, all served."""
    out = yaml.safe_load(cli("simulate", "--system", "duplex", "--workload", "mixtral-8x7b", "--rate", "4",
                             "--requests", "50", "--json").output)
    assert (out["requests"], out["rejected"]) == (50, 0) and out["throughput_tok_s"] > 0
