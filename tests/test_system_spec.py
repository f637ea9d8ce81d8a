"""The system spec loader: presets load and describe the NeuPIMs modes; bad input is a SpecError naming file and field.

Expected values come from the NeuPIMs mode table (`NEUPIMS_MODES` below, pim.md §1.1, §1.4, §1.6), from the
library workloads' sizes (gpt3-7b: 32 heads, 32 kv_heads, 32 layers; llama3-70b: 64 heads, 8 kv_heads, 80 layers;
mixtral-8x7b: 32 heads, 8 kv_heads, 32 layers, 8 experts) and from the op names of `archsim.systems.step`. The
Logic-PIM defaults are Duplex's (../shared/reference/pim.md §2.2 and §5): 32 GEMM modules x 512 FP16 MACs at
650 MHz = 21.3 TFLOPS, 4 x 670.4 GB/s = 2.68 TB/s internal bandwidth per HBM3 stack, 8 Op/B by design.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_checks import check_against_workload
from archsim.systems.system_spec import load_system, system_from_dict, system_names, with_fields
from archsim.systems.system_types import OP_KINDS

VALID = {
    "name": "test",
    "source": "a test",
    "devices": {"npu": {"kind": "npu", "count": 16},  # a node of 16 holds every TP group the cut tests use
                "pim": {"kind": "bank-pim", "count": 16, "row_buffers": 2, "channel_policy": "greedy"}},
    "links": {"tp": "pcie5-x16", "ep": "ib-ndr-400g"},
    "parallelism": {"tp": 2, "pp": 1},
    "placement": [{"op": "attention", "phase": "decode", "device": "pim"},
                  {"op": list(OP_KINDS), "device": "npu"}],
    "schedule": {"kind": "sub-batch-interleaving", "sub_batches": 2},
}


def _write(tmp_path, data, name="system.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _error(tmp_path, data) -> SpecError:
    path = _write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_system(path)
    assert info.value.source == str(path)
    return info.value


def _with(change):
    data = copy.deepcopy(VALID)
    change(data)
    return data


# What the NeuPIMs presets must describe (the table of archsim/systems/neupims.py, from pim.md §1.1, §1.4, §1.6):
# mode -> (compute device kind, decode attention device kind, row buffers, channel policy, schedule, SBI min batch)
NEUPIMS_MODES = {
    "gpu": ("gpu", "gpu", None, None, "blocked", None),
    "npu-only": ("npu", "npu", None, None, "blocked", None),
    "npu+pim": ("npu", "bank-pim", 1, "rr", "blocked", None),
    "neupims": ("npu", "bank-pim", 2, "greedy", "sub-batch-interleaving", 256),
    "neupims-no-sbi": ("npu", "bank-pim", 2, "greedy", "overlapped", None),
}
ARTIFACT_PARALLELISM = {"gpt3-7b": (4, 1), "gpt3-13b": (4, 1), "gpt3-30b": (4, 2), "gpt3-175b": (8, 4)}  # §1.5


def test_presets_include_the_five_neupims_modes():
    assert set(NEUPIMS_MODES) <= set(system_names())


@pytest.mark.parametrize("mode", sorted(NEUPIMS_MODES))
def test_preset_describes_the_neupims_config(mode):
    compute_kind, attention_kind, row_buffers, policy, schedule, min_batch = NEUPIMS_MODES[mode]
    system = load_system(mode)
    assert system.name == mode
    assert system.device_for("qkv", "decode", 1.0).kind == compute_kind
    attention = system.device_for("attention", "decode", 1.0)
    assert attention.kind == attention_kind
    if attention_kind == "bank-pim":
        assert (attention.spec.row_buffers, attention.channel_policy) == (row_buffers, policy)
    assert system.schedule.kind == schedule
    if min_batch:
        assert (system.schedule.sub_batches, system.schedule.min_batch) == (2, min_batch)
        assert system.schedule.resident_weight_bytes == 0
    # the artifact's GPT-3 7B parallelism at the top level, and each model's own
    assert (system.parallelism.tp, system.parallelism.pp) == (4, 1)
    for model, (tp, pp) in ARTIFACT_PARALLELISM.items():
        assert (system.parallelism_for(model).tp, system.parallelism_for(model).pp) == (tp, pp)
        check_against_workload(system, load_workload_spec(model))
    # prefill on the compute device (prompt attention runs on the arrays)
    assert system.device_for("attention", "prefill", 1.0).kind == compute_kind


def test_op_kinds_are_the_op_names_of_a_layer():
    step = Step("decode", batch=1, seq_len=16)
    dense = {op.name for op in layer_ops(load_workload_spec("gpt3-7b"), step, "gpt")}
    moe = {op.name for op in layer_ops(load_workload_spec("mixtral-8x7b"), step, "llama")}
    assert set(OP_KINDS) == dense | moe


def test_a_valid_spec_loads_with_typed_parts(tmp_path):
    system = load_system(_write(tmp_path, VALID))
    assert system.devices["pim"].spec.row_buffers == 2
    assert system.links["tp"].name == "pcie5-x16"
    assert system.parallelism.ep == 1 and system.parallelism.attention_pool is None
    assert system.device_for("attention", "prefill", 1.0).name == "npu"
    assert system.device_for("attention", "decode", 1.0).name == "pim"


def test_op_per_byte_threshold_places_by_intensity(tmp_path):
    """Decode attention goes to the PIM below 4 Op/B, to the NPU at or above (ffn on a bank-PIM is refused)."""
    data = _with(lambda d: d["placement"].insert(0, {"op": "attention", "phase": "decode", "op_per_byte_below": 4,
                                                      "device": "pim"}))
    data["placement"][1] = {"op": "attention", "phase": "decode", "device": "npu"}
    system = load_system(_write(tmp_path, data))
    assert system.device_for("attention", "decode", 1.0).name == "pim"
    assert system.device_for("attention", "decode", 4.0).name == "npu"


def _set(path, value):
    def change(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return change


def _drop(path):
    def change(data):
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        del node[last]
    return change


BAD = [  # (change, YAML path the error names, a word the message holds)
    (_set(("colour",), "red"), "colour", "unknown key"),
    (_set(("devices", "npu", "speed"), 3), "devices.npu.speed", "unknown key"),
    (_set(("parallelism", "dp"), 2), "parallelism.dp", "unknown key"),
    (_set(("schedule", "micro_batches"), 2), "schedule.micro_batches", "unknown key"),
    (_set(("placement", 0, "when"), "always"), "placement[0].when", "unknown key"),
    (_set(("devices", "npu", "kind"), "tpu"), "devices.npu.kind", "expected one of"),
    (_drop(("devices", "npu", "kind")), "devices.npu.kind", "missing"),
    (_set(("placement", 1, "device"), "gpu"), "placement[1].device", "expected a device of this system"),
    (_set(("placement", 0, "op"), "softmax"), "placement[0].op", "expected an op kind"),
    (_set(("placement", 1, "op"), ["qkv", "mlp"]), "placement[1].op[1]", "expected an op kind"),
    (_set(("placement", 0, "phase"), "training"), "placement[0].phase", "expected one of"),
    (_set(("placement", 1, "op"), ["qkv"]), "placement", "no rule places attn_norm"),
    (_set(("links", "tp"), {"name": "x", "source": "y", "latency_s": 1.0e-6, "bytes_per_s_per_direction": 0}),
     "links.tp.bytes_per_s_per_direction", "positive"),
    (_set(("links", "tp"), "nvlink9"), "links.tp", "not a link preset"),
    (_set(("devices", "npu", "count"), 0), "devices.npu.count", "positive"),
    (_set(("devices", "npu", "count"), 1.5), "devices.npu.count", "whole number"),
    (_drop(("devices", "npu", "count")), "devices.npu.count", "missing"),
    (_set(("parallelism", "tp"), 0), "parallelism.tp", "positive"),
    (_set(("parallelism", "pp"), 2.5), "parallelism.pp", "whole number"),
    (_set(("parallelism", "tp"), "4"), "parallelism.tp", "text"),
    (_drop(("parallelism", "tp")), "parallelism.tp", "missing"),
    (_set(("devices", "pim", "row_buffers"), 3), "devices.pim.row_buffers", "expected one of"),
    (_set(("devices", "pim", "channel_policy"), "random"), "devices.pim.channel_policy", "expected one of"),
    (_drop(("devices", "pim", "channel_policy")), "devices.pim.channel_policy", "missing"),
    (_set(("devices", "npu", "clock_hz"), -1.0), "devices.npu.clock_hz", "positive"),
    (_set(("devices", "gpu"), {"kind": "gpu", "count": 1, "preset": "z100"}), "devices.gpu.preset",
     "not a GPU preset"),
    (_set(("devices", "gpu"), {"kind": "gpu", "count": 1}), "devices.gpu.preset", "missing"),
    (_set(("schedule", "kind"), "random"), "schedule.kind", "expected one of"),
    (_drop(("schedule", "sub_batches")), "schedule.sub_batches", "missing"),
    (_set(("schedule", "sub_batches"), 1), "schedule.sub_batches", "at least 2"),
    (_set(("placement",), []), "placement", "empty list"),
    (_set(("parallelism", "by_workload"), ["gpt3-7b"]), "parallelism.by_workload", "expected a mapping"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": 4}), "parallelism.by_workload.gpt3-7b", "expected a mapping"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": {"tp": 4, "pp": 1, "dp": 2}}),
     "parallelism.by_workload.gpt3-7b.dp", "unknown key"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": {"tp": 4, "pp": 1, "attention_pool": 2}}),
     "parallelism.by_workload.gpt3-7b.attention_pool", "unknown key"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": {"pp": 1}}), "parallelism.by_workload.gpt3-7b.tp", "missing"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": {"tp": 0, "pp": 1}}), "parallelism.by_workload.gpt3-7b.tp",
     "positive"),
    (_set(("parallelism", "by_workload"), {"gpt3-7b": {"tp": 4, "pp": 1, "ep": 1.5}}),
     "parallelism.by_workload.gpt3-7b.ep", "whole number"),
    (_set(("devices", "lpim"), {"kind": "logic-pim", "count": 4}), "devices.lpim.pj_per_flop", "missing"),
    (_set(("devices", "lpim"), {"kind": "logic-pim", "count": 4, "pj_per_flop": -0.3}), "devices.lpim.pj_per_flop",
     "positive"),
    (_set(("devices", "lpim"), {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.3, "clock_hz": 1e9}),
     "devices.lpim.clock_hz", "unknown key"),
    (_set(("devices", "lpim"), {"kind": "logic-pim", "count": 4, "pj_per_flop": 0.3, "internal_bytes_per_s": 1e11}),
     "devices.lpim.internal_bytes_per_s", "expected at least external_bytes_per_s"),
]


@pytest.mark.parametrize(("change", "where", "words"), BAD, ids=[f"{w}-{m}" for _, w, m in BAD])
def test_bad_input_names_the_file_and_field(tmp_path, change, where, words):
    error = _error(tmp_path, _with(change))
    assert error.where == where
    assert words in error.message


def test_not_a_mapping_and_no_such_preset(tmp_path):
    assert _error(tmp_path, ["devices"]).where == ""
    with pytest.raises(SpecError, match="not a system preset"):
        load_system("no-such-system")
    with pytest.raises(SpecError, match="<python>: devices: expected a mapping"):
        system_from_dict({**VALID, "devices": ["npu"]})


@pytest.mark.parametrize(("workload", "parallelism", "where", "size"), [
    ("gpt3-7b", {"tp": 8, "pp": 4}, None, None),
    ("llama3-70b", {"tp": 8, "pp": 4}, None, None),
    ("mixtral-8x7b", {"tp": 8, "pp": 4, "ep": 8}, None, None),
    ("gpt3-7b", {"tp": 16, "pp": 1}, None, None),  # 32 heads and kv_heads, 16384 ffn_dim
    ("llama3-70b", {"tp": 16, "pp": 1}, None, None),  # 64 heads divide; each of the 8 KV heads on 2 devices
    ("mixtral-8x7b", {"tp": 16, "pp": 1}, None, None),
    # 48 heads divide; 12 neither divides 8 KV heads nor is a multiple of them
    ("grok-1-314b", {"tp": 12, "pp": 1}, "parallelism.tp", "kv_heads or a multiple of it (8 in"),
    ("gpt3-7b", {"tp": 3, "pp": 1}, "parallelism.tp", "heads (32 in"),
    ("llama3-70b", {"tp": 1, "pp": 5}, None, None),  # 80 layers
    ("gpt3-7b", {"tp": 1, "pp": 33}, "parallelism.pp", "layers (32 in"),  # pp 5 runs: 6, 6, 7, 7, 6 layers
    ("mixtral-8x7b", {"tp": 1, "pp": 1, "ep": 3}, "parallelism.ep", "experts (8 in"),
])
def test_check_against_workload(tmp_path, workload, parallelism, where, size):
    _check_cut(_write(tmp_path, {**VALID, "parallelism": parallelism}), workload, where, size)


def _check_cut(path, workload, where, size):
    """check_against_workload passes (`where` None) or names the system file, `where` and the workload's size, the
    workload by its name (`heads (32 in gpt3-7b)`), not its file: a sweep stores the message."""
    system, spec = load_system(path), load_workload_spec(workload)
    if where is None:
        check_against_workload(system, spec)
        return
    with pytest.raises(SpecError) as info:
        check_against_workload(system, spec)
    assert (info.value.source, info.value.where) == (str(path), where)
    assert f"{size} {spec.name}" in info.value.message and spec.path not in info.value.message


def test_by_workload_parallelism_replaces_the_top_level_for_that_workload(tmp_path):
    parallelism = {"tp": 2, "pp": 1,
                   "by_workload": {"llama3-70b": {"tp": 8, "pp": 2}, "mixtral-8x7b": {"tp": 4, "pp": 1, "ep": 8}}}
    system = load_system(_write(tmp_path, {**VALID, "parallelism": parallelism}))
    llama, mixtral, other = (system.parallelism_for(name) for name in ("llama3-70b", "mixtral-8x7b", "gpt3-7b"))
    assert (llama.tp, llama.pp, llama.ep) == (8, 2, 1)  # ep defaults to 1 in an entry
    assert (mixtral.tp, mixtral.pp, mixtral.ep) == (4, 1, 8)
    assert other is system.parallelism and (other.tp, other.pp) == (2, 1)
    lamina = with_fields(load_system("lamina"), {"parallelism.by_workload": {"llama3-70b": {"tp": 2, "pp": 1}}})
    assert lamina.parallelism_for("llama3-70b").attention_pool == 4  # the system's, not a workload's
    assert not llama.by_workload
    assert hash(system.parallelism) == hash(load_system(_write(tmp_path, {**VALID, "parallelism": parallelism},
                                                               "again.yaml")).parallelism)
    with pytest.raises(TypeError):
        system.parallelism.by_workload["gpt3-7b"] = llama  # read-only


@pytest.mark.parametrize(("workload", "by_workload", "where", "size"), [
    # the top-level tp 3 divides neither 32 heads nor 64, but the workload's own entry is what is checked
    ("gpt3-7b", {"gpt3-7b": {"tp": 4, "pp": 2}}, None, None),
    ("grok-1-314b", {"grok-1-314b": {"tp": 12, "pp": 1}}, "parallelism.by_workload.grok-1-314b.tp",
     "kv_heads or a multiple of it (8 in"),
    ("llama3-70b", {"llama3-70b": {"tp": 8, "pp": 81}}, "parallelism.by_workload.llama3-70b.pp", "layers (80 in"),
    ("mixtral-8x7b", {"mixtral-8x7b": {"tp": 1, "pp": 1, "ep": 3}}, "parallelism.by_workload.mixtral-8x7b.ep",
     "experts (8 in"),
    ("gpt3-7b", {"llama3-70b": {"tp": 8, "pp": 1}}, "parallelism.tp", "heads (32 in"),  # no entry: the top level
])
def test_check_against_workload_checks_its_by_workload_entry(tmp_path, workload, by_workload, where, size):
    _check_cut(_write(tmp_path, {**VALID, "parallelism": {"tp": 3, "pp": 1, "by_workload": by_workload}}), workload,
               where, size)


def test_by_workload_expert_parallelism_blames_the_workload_that_has_no_experts(tmp_path):
    path = _write(tmp_path, {**VALID, "parallelism": {"tp": 1, "pp": 1,
                                                      "by_workload": {"gpt3-7b": {"tp": 1, "pp": 1, "ep": 2}}}})
    spec = load_workload_spec("gpt3-7b")
    with pytest.raises(SpecError) as info:
        check_against_workload(load_system(path), spec)
    assert (info.value.source, info.value.where) == (spec.path, "params.experts")
    assert "parallelism.by_workload.gpt3-7b.ep = 2" in info.value.message


def test_expert_parallelism_needs_a_moe_workload(tmp_path):
    system = load_system(_write(tmp_path, {**VALID, "parallelism": {"tp": 1, "pp": 1, "ep": 2}}))
    spec = load_workload_spec("gpt3-7b")
    with pytest.raises(SpecError) as info:
        check_against_workload(system, spec)
    assert (info.value.source, info.value.where) == (spec.path, "params.experts")


def test_every_device_kind_loads(tmp_path):
    """Each kind in a system that reads it: a memory pool under attention offloading (which names only its compute
    device and its pool), a Logic-PIM and an architecture beside a GPU under a blocked schedule."""
    xpu = {"kind": "gpu", "count": 8, "preset": "h100-sxm5", "attention_kernel": "FlashAttention-2"}
    offloading = {**VALID, "devices": {"xpu": xpu, "pool": {"kind": "memory-pool", "count": 4,
                                                            "preset": "a100-80gb-sxm4",
                                                            "attention_kernel": "Flash-Decoding"}},
                  "parallelism": {"tp": 4, "pp": 1, "attention_pool": 4},
                  "links": {"tp": "nvlink4-h100", "attention": "lamina-gpu-initiated-400g"},
                  "placement": [{"op": "attention", "phase": "decode", "device": "pool"},
                                {"op": list(OP_KINDS), "device": "xpu"}],
                  "schedule": {"kind": "staggered", "micro_batches": 3}}
    system = load_system(_write(tmp_path, offloading))
    assert system.devices["xpu"].spec.name == "h100-sxm5"
    assert system.devices["pool"].spec.name == "a100-80gb-sxm4"
    assert (system.parallelism.attention_pool, system.schedule.micro_batches) == (4, 3)
    blocked = {**VALID, "devices": {"xpu": xpu, "lpim": {"kind": "logic-pim", "count": 8, "pj_per_flop": 0.5},
                                    "fusemax": {"kind": "architecture", "count": 1, "preset": "fusemax",
                                                "mapping": "fusemax"}},
               "parallelism": {"tp": 4, "pp": 1}, "links": {"tp": "nvlink4-h100"},
               "placement": [{"op": "moe", "op_per_byte_below": 32, "device": "lpim"},
                             {"op": "attention", "phase": "prefill", "device": "fusemax"},
                             {"op": list(OP_KINDS), "device": "xpu"}],
               "schedule": {"kind": "blocked"}}
    system = load_system(_write(tmp_path, blocked))
    lpim = system.devices["lpim"].spec
    assert lpim.pj_per_flop == 0.5
    assert lpim.peak_flops_per_s == pytest.approx(21.3e12, rel=1e-3)  # 2 x 32 x 512 x 650 MHz
    assert lpim.internal_bytes_per_s == pytest.approx(4 * lpim.external_bytes_per_s)
    assert lpim.internal_bytes_per_s == pytest.approx(2.68e12, rel=1e-3)
    assert lpim.op_per_byte == pytest.approx(8, rel=0.01)  # Duplex's compute-to-bandwidth target
    assert system.devices["fusemax"].mapping is not None
    assert system.device_for("moe", "decode", 8.0).name == "lpim"
    assert system.device_for("attention", "prefill", 1.0).name == "fusemax"


def test_logic_pim_fields_override_duplex_defaults(tmp_path):
    lpim = {"kind": "logic-pim", "count": 5, "pj_per_flop": 0.4, "peak_flops_per_s": 42.6e12,
            "internal_bytes_per_s": 5.36e12, "capacity_bytes": 24 * 2**30, "internal_pj_per_bit": 2.0}
    data = _with(_set(("devices", "lpim"), lpim))
    data["placement"].insert(0, {"op": "moe", "op_per_byte_below": 8, "device": "lpim"})
    system = load_system(_write(tmp_path, data))
    spec = system.devices["lpim"].spec
    assert (spec.peak_flops_per_s, spec.internal_bytes_per_s, spec.capacity_bytes) == (42.6e12, 5.36e12, 24 * 2**30)
    assert (spec.pj_per_flop, spec.internal_pj_per_bit, spec.external_bytes_per_s) == (0.4, 2.0, 670.4e9)


def test_architecture_device_blames_a_missing_mapping_on_the_system_file(tmp_path):
    data = _with(_set(("devices", "arch"), {"kind": "architecture", "count": 1, "preset": "fusemax",
                                            "mapping": "no-such-mapping"}))
    error = _error(tmp_path, data)
    assert error.where == "devices.arch.mapping" and "not a mapping" in error.message


# ------------------------------------------------------------------------------------------------ derived specs
def test_a_derived_spec_is_its_base_with_its_keys_laid_over(tmp_path):
    base = _write(tmp_path, VALID, "base.yaml")
    derived = _write(tmp_path, {"base": "base.yaml", "name": "derived", "devices": {"pim": {"row_buffers": 1}},
                                "schedule": {"kind": "blocked", "sub_batches": None}}, "derived.yaml")
    system, of_base = load_system(derived), load_system(base)
    assert system.name == "derived" and system.citation == "a test" and system.source == str(derived)
    assert system.devices["pim"].spec.row_buffers == 1 and of_base.devices["pim"].spec.row_buffers == 2
    assert system.devices["pim"].channel_policy == "greedy"  # the rest of the device comes from the base
    assert system.schedule.kind == "blocked" and "sub_batches" not in system.data["schedule"]
    assert system.links == of_base.links and system.placement == of_base.placement and "base" not in system.data


def test_the_duplex_variants_derive_from_duplex():
    """duplex-pe and duplex-pe-et are duplex under the co-processing schedule (they were copies of its 80 lines),
    its placement without the moe rule (+PE splits the experts itself: a threshold there is not read); duplex-pe
    keeps duplex's Grok-1 in pipeline stages (whole experts per rank), duplex-pe-et has EP across the nodes again."""
    duplex, pe, et = (load_system(n) for n in ("duplex", "duplex-pe", "duplex-pe-et"))
    own = ("name", "description", "schedule", "parallelism", "placement")
    for variant in (pe, et):
        assert {k: v for k, v in variant.data.items() if k not in own} == \
            {k: v for k, v in duplex.data.items() if k not in own}
        assert variant.data["placement"] == [r for r in duplex.data["placement"] if r["op"] != "moe"]
    grok = "grok-1-314b"
    for variant in (pe, et):
        assert {**variant.data["parallelism"]["by_workload"], grok: None} == \
            {**duplex.data["parallelism"]["by_workload"], grok: None}
    assert duplex.data["parallelism"]["by_workload"][grok] == {"tp": 8, "pp": 2, "ep": 1}
    assert pe.data["parallelism"]["by_workload"][grok] == {"tp": 8, "pp": 2, "ep": 1}
    assert et.data["parallelism"]["by_workload"][grok] == {"tp": 8, "pp": 1, "ep": 2}
    assert (pe.schedule.kind, pe.schedule.expert_tp, et.schedule.expert_tp) == ("co-processing", False, True)
    assert load_system("duplex-2xgpu").devices == load_system("duplex-gpu").devices


@pytest.mark.parametrize(("data", "where", "words"), [
    ({"base": "base.yaml"}, "name", "a spec with a base names itself"),
    ({"base": 3, "name": "x"}, "base", "expected a system preset name or a YAML path"),
    ({"base": "no-such-system", "name": "x"}, "base", "not a system preset"),
    ({"base": "system.yaml", "name": "x"}, "base", "a cycle of bases"),
    ({"base": "base.yaml", "name": "x", "schedule": {"sub_batches": 0}}, "schedule.sub_batches", ""),
])
def test_bad_bases_name_the_derived_file(tmp_path, data, where, words):
    _write(tmp_path, VALID, "base.yaml")
    error = _error(tmp_path, data)
    assert error.where == where and words in error.message


def test_an_error_in_the_base_names_the_base(tmp_path):
    base = _write(tmp_path, {**VALID, "parallelism": {"tp": 0, "pp": 1}}, "base.yaml")
    with pytest.raises(SpecError) as info:
        load_system(_write(tmp_path, {"base": "base.yaml", "name": "x"}))
    assert info.value.source == str(base) and info.value.where == "parallelism.tp"
