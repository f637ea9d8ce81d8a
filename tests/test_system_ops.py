"""What a system charges for a layer is the library cascades' analysis (issue 13, must-show 1).

For every op a system charges in one decoder layer of an iteration (`placed_ops`: the ops `layer_phases` costs, each
on the device it costs it on) of GPT-3 7B (MHA), Llama3-70B (GQA) and Mixtral-8x7B (GQA + MoE), on the neupims and
gpu presets with each workload's `parallelism.by_workload` entry, the op's FLOPs and bytes equal `analyze()` of its
library cascade bound here, independently, to one device's shard (heads, kv_heads and ffn_dim / TP, experts / EP,
computed below from the workload and `System.parallelism_for`) and to the sizes the iteration implies (every new
token of the iteration in the dense ops, one attention op per request bound to its prompt or context). Then the
devices' costs of those ops add up to what the ops carry: the NPU's array time at peak is the FLOPs of the products
with a weight (or, more than one query row per K/V head, a KV-cache) operand; its HBM time is the weights streamed
plus the KV cache written; its energy is every arithmetic op (a MAC two) at the op energy plus those bytes off chip;
the bank-PIM's energy is MACs x (bits x bank-PIM access energy + two host ops) plus the host's softmax ops and the
GEMVs' bus bytes off chip; a GPU's energy is its board power over its time."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from archsim import library
from archsim.cascade.analysis import Analysis, analyze
from archsim.cascade.bind import bind
from archsim.gpu.load import load_gpu
from archsim.systems import pim as pim_model
from archsim.systems.device import OpCost
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Op, lm_head_op
from archsim.systems.system_model import SystemModel, decode_groups, dense_ops, device_of
from archsim.systems.system_spec import load_system
from archsim.workload import Workload

WORKLOADS = ("gpt3-7b", "llama3-70b", "mixtral-8x7b")
SYSTEMS = ("neupims", "gpu")
MIXED = Batch(prefill_tokens=(7, 33), decode_context_tokens=(30, 50, 129))
PREFILL_ONLY = Batch(prefill_tokens=(12, 5))
BATCHES = {"mixed": MIXED, "prefill-only": PREFILL_ONLY}

# The cascade of each op, by the workload's sizes (step.py's docstring): MHA prefill is the causal 1-pass cascade,
# GQA prefill its grouped form; decode is attention-decode-gqa; a workload with experts has moe-experts.
NORM = {"gpt3-7b": "layernorm", "llama3-70b": "rmsnorm", "mixtral-8x7b": "rmsnorm"}
FFN = {"gpt3-7b": ("ffn", "ffn"), "llama3-70b": ("ffn", "ffn-swiglu"), "mixtral-8x7b": ("moe", "moe-experts")}
PREFILL_ATTENTION = {"gpt3-7b": "attention-1pass-causal", "llama3-70b": "attention-1pass-causal-gqa",
                     "mixtral-8x7b": "attention-1pass-causal-gqa"}

# Tensor roles, read off the cascade files (einsum/*.yaml): the learned tensors are weights; K and V are the KV
# cache (written by the QKV projection, read by attention).
WEIGHT_TENSORS = {"qkv-projection": {"WQ", "WK", "WV"}, "output-projection": {"WO"}, "ffn": {"W1", "W2"},
                  "ffn-swiglu": {"W1", "W3", "W2"}, "moe-experts": {"WR", "W1", "W3", "W2"},
                  "layernorm": {"G", "BETA"}, "rmsnorm": {"W"}}
KV_TENSORS = {"K", "V"}
# The Einsums that multiply an activation by a weight or a KV-cache operand (the GEMMs an NPU puts on its arrays),
# read off the cascade files; a norm's sum of squares and MoE's gate-weighted combine multiply two activations.
GEMM_EINSUMS = {"qkv-projection": ("Q", "K", "V"), "output-projection": ("Z",), "ffn": ("H1", "Y"),
                "ffn-swiglu": ("H1", "H3", "Y"), "moe-experts": ("R", "H1", "H3", "O"),
                "attention-1pass-causal": ("QK", "SLNV"), "attention-1pass-causal-gqa": ("QK", "SLNV"),
                "attention-decode-gqa": ("QK", "SNV")}


def shard_of(workload: Workload, tp: int, ep: int) -> Workload:
    """One device's sizes: heads, kv_heads and ffn_dim split by TP, experts by EP."""
    params = dict(workload.params)
    for size, degree in (("heads", tp), ("kv_heads", tp), ("ffn_dim", tp), ("experts", ep)):
        if size in params:
            assert params[size] % degree == 0
            params[size] = params[size] // degree
    return replace(workload, params=params)


def expected_ops(name: str, batch: Batch) -> list[tuple[str, str, str, dict[str, int]]]:
    """(op name, phase, cascade, sizes) of every op one layer of this iteration runs, in layer order."""
    prompts, contexts = list(batch.prefill_tokens), list(batch.decode_context_tokens)
    tokens = len(contexts) + sum(prompts)  # every new token of the iteration (Orca's selective batching)
    phase = "decode" if contexts else "prefill"
    dense = {"batch": tokens, "seq_len": 1}
    ffn_name, ffn_cascade = FFN[name]
    return [
        ("attn_norm", phase, NORM[name], dense),
        ("qkv", phase, "qkv-projection", dense),
        *[("attention", "prefill", PREFILL_ATTENTION[name], {"batch": 1, "seq_len": p, "tile_kv": p})
          for p in prompts],
        *[("attention", "decode", "attention-decode-gqa", {"batch": 1, "seq_len": c}) for c in contexts],
        ("out_proj", phase, "output-projection", dense),
        ("attn_residual", phase, "residual-add", dense),
        ("ffn_norm", phase, NORM[name], dense),
        (ffn_name, phase, ffn_cascade, {"tokens": tokens} if ffn_cascade == "moe-experts" else dense),
        ("ffn_residual", phase, "residual-add", dense),
    ]


def placed_ops(model: SystemModel, batch: Batch) -> list[tuple[Op, str]]:
    """Every op one layer of `batch` runs, in layer order, with the name of its device, by the functions
    `system_model.layer_phases` costs with: the ops before the decode attention (prompt attention included) and
    after it (`dense_ops`), each on `device_of`'s device, and the decode attention by `decode_groups` (one group
    here, in request order, unless a rule reads Op/B)."""
    contexts = batch.decode_context_tokens
    pre, post = dense_ops(model, len(contexts), batch.prefill_tokens)
    decode = [(op, device.name) for device, _, ops in decode_groups(model, contexts, model.decode_ops(contexts))
              for op in ops]
    return [(op, device_of(model, op).name) for op in pre] + decode + [(op, device_of(model, op).name) for op in post]


def flops_of(analysis: Analysis) -> int:
    return sum(n * (2 if kind == "mac" else 1) for kind, n in analysis.total_ops().items())


def charged(system_name: str, name: str, batch: Batch):
    """The model, and (op, device, independent analysis, cascade) of every charged op."""
    system, workload = load_system(system_name), library.load_workload_spec(name)
    par = system.parallelism_for(name)
    assert par == system.parallelism.by_workload[name]  # each workload runs its own by_workload entry
    model = system_model(system, workload)
    shard = shard_of(workload, par.tp, par.ep)
    ops = placed_ops(model, batch)
    want = expected_ops(name, batch)
    assert [(op.name, op.phase, op.cascade) for op, _ in ops] == [w[:3] for w in want]
    rows = []
    for (op, device), (_, _, cascade_name, sizes) in zip(ops, want, strict=True):
        cascade = library.load_cascade_spec(cascade_name)
        rows.append((op, device, analyze(bind(cascade, shard, sizes)), cascade_name))
    return model, rows


@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("system_name", SYSTEMS)
@pytest.mark.parametrize("name", WORKLOADS)
def test_every_charged_op_is_the_analysis_of_its_bound_cascade(name: str, system_name: str, batch: str) -> None:
    _, rows = charged(system_name, name, BATCHES[batch])
    for op, _, want, cascade in rows:
        sizes = {t.name: t.bytes for t in want.tensors}
        kinds = {t.name: t.kind for t in want.tensors}
        weights = WEIGHT_TENSORS.get(cascade, set())
        kv = KV_TENSORS & set(sizes)
        assert op.ops == want.total_ops(), op.name
        assert op.flops == flops_of(want), op.name
        assert op.tensor_bytes == sizes, op.name
        assert op.bytes == sum(s for t, s in sizes.items() if kinds[t] != "intermediate"), op.name
        assert op.bytes_by_role == {
            "weights": sum(sizes[t] for t in weights),
            "kv_cache": sum(sizes[t] for t in kv),
            "activations_in": sum(s for t, s in sizes.items() if kinds[t] == "input" and t not in weights | kv),
            "activations_out": sum(s for t, s in sizes.items() if kinds[t] == "output" and t not in kv),
            "intermediate": sum(s for t, s in sizes.items() if kinds[t] == "intermediate"),
        }, op.name
        assert op.op_per_byte == op.flops / op.bytes


def gemm_flops(op, want: Analysis, cascade: str) -> int:
    """FLOPs of the products an NPU runs on its arrays: every GEMM Einsum, except a decode attention with one query
    row per K/V head (MHA), whose GEMVs go to the vector units."""
    params = op.binding.params
    if cascade == "attention-decode-gqa" and params["heads"] == params["kv_heads"]:
        return 0
    return 2 * sum(want.ops[e].get("mac", 0) for e in GEMM_EINSUMS.get(cascade, ()))


@pytest.mark.parametrize("name", WORKLOADS)
def test_neupims_device_costs_add_up_to_the_ops(name: str) -> None:
    model, rows = charged("neupims", name, MIXED)
    npu, pim = model.devices["npu"], model.devices["pim"]
    bw, host = npu.bandwidth_bytes_per_s, npu.spec
    assert {device for op, device, _, _ in rows if op.name == "attention" and op.phase == "decode"} == {"pim"}
    energy_j = 0.0
    for op, device, want, cascade in rows:
        if device != "npu":
            continue
        cost = npu.cost([op])
        energy_j += cost.energy_j
        flops = gemm_flops(op, want, cascade)
        assert cost.busy_s["npu"] * host.peak_flops_per_s == pytest.approx(flops, rel=1e-12), op.name
        # HBM: the op's weights streamed (to the arrays or, a norm's gain, beside the vector units) and the KV cache
        # it writes (the QKV projection's K and V); a prompt's attention reads its K and V from SRAM
        kv_written = sum(t.bytes for t in want.tensors if t.name in KV_TENSORS and t.kind == "output")
        hbm_bytes = op.bytes_by_role["weights"] + kv_written if op.name != "attention" else 0
        assert cost.memory_s * bw == pytest.approx(hbm_bytes, rel=1e-12), op.name
        assert cost.busy_s["npu_hbm"] == cost.memory_s
        # every arithmetic op priced, on the arrays or the vector units: a MAC two
        all_flops = sum(n * (2 if kind == "mac" else 1) for kind, n in want.total_ops().items())
        assert cost.energy_j * 1e12 == pytest.approx(all_flops * host.op_energy_pj
                                                     + hbm_bytes * 8 * npu.memory.offchip_pj_per_bit, rel=1e-12)
    decodes = [(op, want) for op, device, want, _ in rows if device == "pim"]
    cost = pim.cost([op for op, _ in decodes])
    macs = sum(want.total_ops()["mac"] for _, want in decodes)
    softmax_ops = sum(n for _, want in decodes for kind, n in want.total_ops().items() if kind != "mac")
    word_bits = 8 * int(library.load_workload_spec(name).params["word_bytes"])
    assert cost.energy_j * 1e12 == pytest.approx(
        macs * (word_bits * pim.spec.bank_pim_pj_per_bit + 2 * host.op_energy_pj) + softmax_ops * host.op_energy_pj
        + pim.bus_bytes([op for op, _ in decodes]) * 8 * pim.spec.offchip_pj_per_bit, rel=1e-12)
    # each request's GEMVs: heads/kv_heads passes of the kv_heads-head command sequence; 3 requests on 32 channels
    # land on three channels, so the slowest channel is the longest request and the mean is their sum / 32
    params = decodes[0][0].binding.params
    request_s = [params["heads"] // params["kv_heads"]
                 * sum(pim_model.gemv_parts_cycles(pim.spec, op.binding.params["seq_len"], int(params["kv_heads"]),
                                                   int(params["head_dim"]))) / pim.spec.clock_hz for op, _ in decodes]
    assert cost.time_s == pytest.approx(max(request_s), rel=1e-12)
    assert cost.busy_s["pim"] == pytest.approx(sum(request_s) / pim.spec.channels, rel=1e-12)
    energy_j += cost.energy_j
    # the iteration: every device of the TP x PP group runs its layers (3 decodes: below min_batch, no SBI), and
    # the last stage's TP ranks the LM head over the 5 sequences' new tokens, on the NPU
    par, layers = model.parallelism, model.layers_per_device
    head = model.devices["npu"].cost([lm_head_op(model.workload, 5, par.tp)])
    assert model.iteration(MIXED).energy_j == pytest.approx(
        par.tp * par.pp * layers * energy_j + par.tp * head.energy_j, rel=1e-9)


@pytest.mark.parametrize("name", WORKLOADS)
def test_gpu_device_costs_add_up_to_the_ops(name: str) -> None:
    model, rows = charged("gpu", name, MIXED)
    gpu = model.devices["gpu"]
    for op, device, want, cascade in rows:
        assert device == "gpu"
        if op.name == "attention":
            continue
        cost = gpu.cost([op])
        precision_peak = gpu.spec.tensor_peak_flops_per_s("fp16")
        flops = 2 * sum(want.ops[e].get("mac", 0) for e in GEMM_EINSUMS.get(cascade, ()))
        assert cost.busy_s["gpu"] * precision_peak == pytest.approx(flops, rel=1e-12), op.name
        assert cost.energy_j == pytest.approx(gpu.spec.power_w * cost.time_s, rel=1e-12)
        assert math.isfinite(cost.time_s) and cost.time_s > 0


@pytest.mark.parametrize("as_array", [True, False])
@pytest.mark.parametrize("system", ["duplex-gpu", "neupims"])
def test_decode_ops_sums_equal_the_ops_one_by_one(system: str, as_array: bool) -> None:
    """`SystemModel.decode_ops` reads its totals (keys, FLOPs, MACs) off per-context tables (filled once per
    context, contexts as an array of floats or a tuple of ints): they equal adding the ops' own, and a GPU or
    bank-PIM device costs the batch as it costs the same ops in a plain list, to the bit."""
    import numpy as np

    workload = "mixtral-8x7b" if system == "duplex-gpu" else "gpt3-7b"
    model = system_model(load_system(system), library.load_workload_spec(workload))
    for contexts in ([5.0, 300.0, 5.0, 17.0], [5000.0, 1.0, 299.0, 300.0, 5000.0], []):
        batch = model.decode_ops(np.asarray(contexts) if as_array else tuple(int(c) for c in contexts))
        ops = model.decode_attention(contexts)
        assert list(batch) == ops
        assert batch.total("keys") == sum(op.binding.params["seq_len"] for op in ops)
        assert batch.total("flops") == sum(op.flops for op in ops)
        assert batch.total("macs") == sum(op.ops.get("mac", 0) for op in ops)
        for device in model.devices.values():
            if device.kind == "gpu" and ops:
                assert device.cost(batch) == device.cost(list(ops))
            if device.kind == "bank-pim" and ops:
                assert device.cost_of(batch, 1.0, 0.5) == device.cost_of(list(ops), 1.0, 0.5)


def test_layer_total_equals_adding_its_parts() -> None:
    """`LayerPhases.total` adds the attention and each part in turn without an `OpCost` per step: it equals `+`
    over them, to the bit (NeuPIMs with SBI at every batch: two sub-batches; and overlapped below its min_batch)."""
    from archsim.systems import neupims
    from archsim.systems.system_model import layer_phases

    for changes in ({"schedule.min_batch": 2, "schedule.only_when_faster": False}, {}):
        model = neupims.system("neupims", "gpt3-7b", changes)
        for contexts, prompts in (((300, 17, 5, 900), (40,)), ((5, 6), ()), ((), (64, 9))):
            phases = layer_phases(model, contexts, prompts)
            cost = phases.attention
            for part in (*phases.pre, *phases.post):
                cost = cost + part
            assert phases.total == cost


def test_coprocessed_layer_remembered_per_phase_and_tokens_equals_a_fresh_model() -> None:
    """Co-processing remembers the chain around its attention stage per (any decode, new tokens), the all-reduce
    per token count, and a Logic-PIM adds its ops' terms in one loop: a layer whose batch splits its 43 new tokens
    differently from one seen before (3 decodes and a 40-token prompt, then 43 decodes) equals the layer of a fresh
    model that never saw the first, and the Logic-PIM's cost of the decode ops equals their terms added op by op
    (Duplex+PE+ET, Mixtral, decode attention on the Logic-PIM below its Op/B)."""
    from archsim.systems.system_messages import allreduce_s
    from archsim.systems.system_model import layer_phases

    def fresh():
        return system_model(load_system("duplex-pe-et"), library.load_workload_spec("mixtral-8x7b"))

    model = fresh()
    contexts = tuple(range(1000, 1043))
    layer_phases(model, contexts[:3], (40,))
    assert layer_phases(model, contexts, ()) == layer_phases(fresh(), contexts, ())
    assert allreduce_s(model, 43) == allreduce_s(fresh(), 43) > 0
    lp = next(d for d in model.devices.values() if d.kind == "logic-pim")
    ops = model.decode_ops(contexts)
    time_s = memory_s = energy_j = busy_s = 0.0
    for op in ops:
        terms = lp._op_terms(op, 1.0)
        time_s, memory_s, energy_j, busy_s = (time_s + terms[0], memory_s + terms[1], energy_j + terms[2],
                                              busy_s + terms[3])
    assert lp.cost(ops) == OpCost(time_s, memory_s, energy_j, {lp.name: busy_s})


def test_gpu_elementwise_tensors_remembered_per_cascade_equal_a_fresh_count() -> None:
    """A GPU device remembers which tensors an op's elementwise kernel moves per (cascade, its GEMM Einsums): the
    bytes equal counting them afresh, for Mixtral's layer ops at several token counts (norms and residual adds
    without GEMMs, projections, the MoE op with its intermediates, each at the share of its elements its writer
    computes: the routed (token, expert) pairs, top_k / experts of them, and its output Y, written whole)."""
    from archsim.cascade.passes import refs_of
    from archsim.systems import gpu_device
    from archsim.systems.gemms import op_gemms
    from archsim.systems.step import ACTIVATIONS_OUT, INTERMEDIATE

    def afresh(op, in_gemms):
        einsums = [e for e in op.binding.cascade.einsums if e.name not in in_gemms]
        roles, sizes = op.tensor_roles, op.tensor_bytes
        if not einsums:
            return 0.0
        if not in_gemms:
            return float(sum(size for name, size in sizes.items() if roles[name] != INTERMEDIATE))
        touched = {e.name for e in einsums} | {r.tensor for e in einsums for r in refs_of(e)}
        written = {e.output.tensor for e in einsums}  # the op's output, written whole (the MoE combine's Y)
        return float(sum(sizes[t] * share(op, t) for t in touched if roles[t] == INTERMEDIATE)
                     + sum(sizes[t] for t in written if roles[t] == ACTIVATIONS_OUT))

    def share(op, tensor):
        cascade = op.binding.cascade
        writer = next(e for e in cascade.einsums if e.output.tensor == tensor)
        space = math.prod(op.binding.rank_sizes[cascade.var_ranks[v]] for v in writer.space)
        return min(1.0, op.analysis.points[writer.name] / space)

    model = system_model(load_system("duplex-gpu"), library.load_workload_spec("mixtral-8x7b"))
    gpu_device._elementwise_tensors.cache_clear()
    for tokens in (1, 7, 300):
        for op in model.ops("decode", tokens, 1):
            in_gemms = {e for gemm in op_gemms(op) for e in gemm.einsums}
            assert gpu_device._elementwise_bytes(op, in_gemms) == pytest.approx(afresh(op, in_gemms), rel=1e-12), \
                op.name
    moe = next(op for op in model.ops("decode", 2048, 1) if op.name == "moe")  # found by fuzzing serving
    in_gemms = {e for gemm in op_gemms(moe) for e in gemm.einsums}
    dense = sum(moe.tensor_bytes[t] for t in gpu_device._elementwise_tensors(moe.cascade, moe.binding.cascade,
                                                                             tuple(sorted(in_gemms))))
    assert gpu_device._elementwise_bytes(moe, in_gemms) < dense / 3  # 2 of 8 experts' intermediates, not all 8


def test_duplex_runs_sharing_their_models_equal_fresh_models() -> None:
    """`duplex_reproduce` runs may share their models (`duplex_model`, as `run_all` does): a run after another on
    the same models gives the records of fresh models."""
    from archsim.systems import duplex_reproduce

    grid = {"models": ("mixtral-8x7b",), "lengths": ((64, 16),), "batches": (4, 8)}
    models: dict = {}
    duplex_reproduce.reproduce(("duplex-gpu", "duplex-pe-et"), grid, models=models)
    shared = duplex_reproduce.reproduce(("duplex-gpu", "duplex-pe-et"), grid, seed=3, models=models)
    assert shared == duplex_reproduce.reproduce(("duplex-gpu", "duplex-pe-et"), grid, seed=3)
    assert len(models) == 2


def test_coprocessed_stage_without_zero_costs_equals_adding_them() -> None:
    """The co-processing stage leaves out the part a device lacks instead of adding a zero cost: the layer's
    pre, attention and time equal adding every device's prompt and decode attention costs, zeros included
    (Duplex+PE+ET: prompts on the xPU, decode attention on the Logic-PIM; and a batch of prompts alone)."""
    from archsim.systems.coprocessing import _chain_ends
    from archsim.systems.system_model import layer_phases

    model = system_model(load_system("duplex-pe-et"), library.load_workload_spec("mixtral-8x7b"))
    for contexts, prompts in (((700, 1200, 35), (90, 17)), ((), (64,)), ((5, 6), ())):
        phases = layer_phases(model, contexts, prompts)
        pre, _, post_s = _chain_ends(model, len(contexts), prompts)
        prompt_ops = [model.attention("prefill", p) for p in prompts]
        decode_ops = model.decode_ops(contexts)
        attention, stage_s = OpCost(), 0.0
        for device, ops, decode in ((model.devices["xpu"], prompt_ops, []), (model.devices["lp"], [], decode_ops)):
            prompt_cost = device.cost(ops) if ops else OpCost()
            decode_cost = device.cost(decode) if decode else OpCost()
            pre, attention = pre + prompt_cost, attention + decode_cost
            stage_s = max(stage_s, prompt_cost.time_s + decode_cost.time_s)
        chain_s = _chain_ends(model, len(contexts), prompts)[0].time_s + stage_s
        for time_s in post_s:
            chain_s += time_s
        assert (phases.pre[0], phases.attention, phases.coprocessed_s) == (pre, attention, chain_s)


def test_layer_ops_twins_share_what_equals_their_own() -> None:
    """A layer's two norms and two residual adds bind one cascade to the same sizes: the later op of each pair
    shares the earlier's binding, tensors and analysis (`Op.twin`), which equal binding and analysing it afresh."""
    from archsim.cascade.analysis import tensor_infos
    from archsim.library import library_cascade
    from archsim.systems.step import Step, cascade_passes, layer_ops

    workload = library.load_workload_spec("mixtral-8x7b")
    ops = {op.name: op for op in layer_ops(workload, Step("decode", 37, 1), "llama")}
    for first, later in (("attn_norm", "ffn_norm"), ("attn_residual", "ffn_residual")):
        twin = ops[later]
        assert twin.twin is ops[first] and twin.binding is ops[first].binding
        cascade = library.load_cascade_spec(twin.cascade)
        sizes = {k: v for k, v in {"batch": 37, "seq_len": 1, "tokens": 37}.items() if k in cascade.params}
        fresh = bind(cascade, workload, sizes, "<step>")
        assert (fresh.params, fresh.rank_sizes, fresh.word_bytes) == (twin.binding.params, twin.binding.rank_sizes,
                                                                       twin.binding.word_bytes)
        assert twin.tensors == tensor_infos(fresh)
        passes = cascade_passes(library_cascade(twin.cascade))
        assert twin.analysis == analyze(fresh, passes=passes, tensors=tensor_infos(fresh))


def test_the_lm_head_is_timed_once_an_iteration_unless_left_out() -> None:
    """An iteration's LM head: one token per sequence (5: 3 decodes, 2 prompts' last positions) over the vocab share
    of a TP rank, on the device holding the weights; `schedule.lm_head: left-out` (the NeuPIMs artifact's decoder
    layers only) drops it and nothing else. A small model's big vocabulary makes it a large share."""
    from archsim.systems.system_spec import with_fields

    system = load_system("vllm-h100")
    workload = library.load_workload_spec("llama3-8b")
    timed = system_model(system, workload)
    left_out = system_model(with_fields(system, {"schedule.lm_head": "left-out"}), workload)
    tp = timed.parallelism.tp
    op = lm_head_op(workload, 5, tp)
    assert op.bytes_by_role["weights"] == math.ceil(128256 / tp) * 4096 * 2  # Llama 3's vocab x hidden, bf16
    head = timed.weight_device.cost([op])
    gpu = load_gpu("h100-sxm5")
    assert head.time_s >= op.bytes_by_role["weights"] / gpu.dram_bytes_per_s and left_out.lm_head_cost(5) == OpCost()
    with_head, without = timed.iteration(MIXED), left_out.iteration(MIXED)
    assert with_head.time_s == pytest.approx(without.time_s + head.time_s, rel=1e-12)
    assert with_head.energy_j == pytest.approx(without.energy_j + timed.parallelism.tp * head.energy_j, rel=1e-12)
