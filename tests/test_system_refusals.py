"""Systems-layer input that used to run silently, or fail blaming the wrong file or field (found by fuzzing): each
is refused, naming the file (or option) and field that holds the value at fault. Expected numbers are the specs'
own (preset counts, degrees, the activation reserve), derived in each test."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import neupims
from archsim.systems.chip import load_chip
from archsim.systems.models import system_model
from archsim.systems.requests import Request, read_trace
from archsim.systems.serving import ServingConfig, unservable
from archsim.systems.system_spec import load_system, system_from_dict, system_names, with_fields
from archsim.workload import workload_from_dict

LLAMA3_8B = library.load_workload_spec("llama3-8b")


def _error(call, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------- 1. device counts
def test_a_tp_group_larger_than_a_node_is_refused_naming_the_count():
    """vllm-h100 runs TP 4 over NVLink (its `tp` link, a node's): one GPU per node cannot hold the group, where the
    model used to print tp4 and four GPUs' KV cache."""
    system = load_system("vllm-h100")
    error = _error(system_model, with_fields(system, {"devices.gpu.count": 1}),  # refused when the model is built
                   library.load_workload_spec("llama3-8b"))
    assert (error.source, error.where) == (system.source, "devices.gpu.count")
    assert error.message.startswith("expected at least 4 (a TP group in one node") and "parallelism.tp = 4" in \
        error.message and error.message.endswith("got 1")


def test_duplex_xpus_fewer_than_its_by_workload_tp_are_refused():
    """duplex runs Mixtral at tp 4 (its by_workload entry); 2 xPUs per node do not hold it, whatever the top level
    says."""
    error = _error(system_model, with_fields(load_system("duplex"), {"devices.xpu.count": 2, "parallelism.tp": 2}),
                   library.load_workload_spec("mixtral-8x7b"))
    assert error.where == "devices.xpu.count"
    assert "parallelism.by_workload.mixtral-8x7b.tp = 4" in error.message


@pytest.mark.parametrize(("mode", "tp", "count"), [("vllm-h100", 8, 4), ("duplex-gpu", 32, 8)])
def test_a_tp_option_beyond_the_node_names_the_option(mode, tp, count):
    error = _error(neupims.system, mode, "llama3-8b", tp=tp)
    assert (error.source, error.where) == ("--tp", "")
    assert error.message.startswith(f"expected at most {count} (") and error.message.endswith(f"got {tp}")


def test_without_a_tp_link_a_tp_group_spans_whole_nodes():
    """NeuPIMs' specs model no TP messages (no `tp` link): GPT-3 175B runs TP8 PP4 over nodes of 4 NeuPIMs devices
    (pim.md §1.5), two whole nodes per TP group; nodes of 6 devices hold TP 4 but cannot be cut into TP 8's group."""
    model = neupims.system("neupims", "gpt3-175b")
    assert (model.parallelism.tp, model.parallelism.pp) == (8, 4)
    error = _error(neupims.system, "neupims", "gpt3-175b", {"devices.npu.count": 6, "devices.pim.count": 6})
    assert error.where == "devices.npu.count" and error.message.startswith("expected at least 8 or a divisor of it")


# ---------------------------------------------------------------- 2. links
def test_a_link_role_no_model_reads_is_refused():
    """vllm-h100 with `tpx:` for `tp:` ran without the TP all-reduce."""
    data = dict(load_system("vllm-h100").data)
    data["links"] = {"tpx": "nvlink4-h100"}
    error = _error(system_from_dict, data, "l.yaml")
    assert (error.where, error.message) == (
        "links.tpx", "unknown link role (expected one of tp, ep, attention, attention_pool, cp)")


@pytest.mark.parametrize("name", system_names())
def test_every_preset_names_only_links_a_model_reads(name):
    assert set(load_system(name).links) <= {"tp", "ep", "attention", "attention_pool", "cp"}


# ---------------------------------------------------------------- 3. Logic-PIM capacity
def test_logic_pim_stacks_bound_the_memory_of_the_xpu_they_are():
    """Duplex's xPU memory is its Logic-PIM stacks: 5 stacks of 1000 B cannot hold Mixtral's weights (they ran as
    80 GB before); 5 x 10 GB bind below the H100's 80 GiB, and the engine keeps its 512 MiB activation reserve out of
    them, so the KV cache is 4 ranks x (5e10 B - the reserve - one rank's weights)."""
    mixtral = library.load_workload_spec("mixtral-8x7b")
    error = _error(system_model, with_fields(load_system("duplex"), {"devices.lp.capacity_bytes": 1000}), mixtral)
    assert error.where == "devices.lp.capacity_bytes" and "hold 5000 B" in error.message
    model = system_model(with_fields(load_system("duplex"), {"devices.lp.capacity_bytes": 1e10}), mixtral)
    assert model.kv_capacity_bytes == 4 * (5e10 - 512 * 2**20 - model.weight_bytes_per_device)
    full = system_model(load_system("duplex"), mixtral)  # 5 x 16 GiB = 80 GiB: the xPU's own capacity binds
    assert full.kv_capacity_bytes == 4 * (80 * 2**30 - 512 * 2**20 - full.weight_bytes_per_device)


# ---------------------------------------------------------------- 4. runs that serve nothing
def test_no_request_fitting_the_kv_cache_is_a_reason_not_a_nan():
    """A 10M-token prompt needs 625,001 pages of 16 tokens (10,000,009 tokens of KV); vllm-h100's cache holds
    fewer. Before, every request was rejected and the run printed nan ms and 0 tokens/s."""
    model = system_model(load_system("vllm-h100"), LLAMA3_8B)
    reason = unservable(model, [Request(0, 0.0, 10_000_000, 10)], ServingConfig())
    assert "request 0 (10000000 prompt + 10 output tokens), needs 10000009 tokens of KV (625001 pages" in reason
    assert unservable(model, [Request(0, 0.0, 10_000_000, 10), Request(1, 0.0, 100, 10)], ServingConfig()) is None


def test_simulate_exits_2_when_no_request_can_be_served_and_prints_no_nan(tmp_path, cli):
    huge = tmp_path / "huge.csv"
    huge.write_text("arrival_s,prompt_tokens,output_tokens\n0,10000000,10\n")
    result = cli("simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--trace", str(huge), expect=2)
    assert result.output.startswith(f"error: {huge}: no request can be served") and result.output.count("\n") == 1
    one = tmp_path / "one.csv"
    one.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n")
    out = cli("simulate", "-s", "gpu", "-w", "mixtral-8x7b", "--trace", str(one)).output
    assert "TBT         n/a (no request decoded a second token)" in out and "nan" not in out


def test_a_token_count_beyond_the_size_limit_is_refused_at_trace_load(tmp_path):
    trace = tmp_path / "big.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,99999999999999999999999,10\n")
    error = _error(read_trace, trace)
    assert error.where == "line 2: prompt_tokens"
    assert error.message.startswith(f"expected an integer >= 1 and at most {2**24}")


def _preset_file(tmp_path, data: dict, name: str):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_kv_cache_below_one_token_names_the_pool_memory(tmp_path):
    """lamina-tpu-v6e's 4 TPU pool devices with 1000 B each hold 4000 B of KV, under one Llama3-70B token (80 layers
    x 8 KV heads x 128 x 2 (K, V) x 2 B = 327,680 B); the run used to print 'KV pages peak 0 of 0'. A chip file
    of 1000 B is refused where it is read (a memory under 64 MiB is a unit slip, tests/test_unit_slips.py), so the
    pool check is reached with the chip set in Python."""
    chip = load_chip("tpu-v6e")
    data = yaml.safe_load(Path(chip.source).read_text()) | {"memory_bytes": 1000}
    path = _preset_file(tmp_path, data, "tiny.yaml")
    error = _error(with_fields, load_system("lamina-tpu-v6e"), {"devices.memory.preset": path})
    assert error.where == "devices.memory.preset"
    assert error.message.startswith(f"{path}: memory_bytes: expected the HBM capacity in bytes")
    system = load_system("lamina-tpu-v6e")
    memory = system.devices["memory"]
    tiny = dataclasses.replace(memory, spec=dataclasses.replace(memory.spec, memory_bytes=1000))
    system = dataclasses.replace(system, devices={**system.devices, "memory": tiny})
    error = _error(system_model, system, library.load_workload_spec("llama3-70b"))
    assert (error.source, error.where) == (chip.source, "memory_bytes")
    assert "holds 4000 B, less than one token's 3.277e+05 B" in error.message


def test_a_gpu_smaller_than_the_activation_reserve_names_its_dram_bytes(tmp_path):
    """0.9 x 256 MiB is below the 512 MiB kept for activations; the error said '-0.5 GB: raise tp or pp'. (256 MiB,
    not the 1000 B this test first used: a DRAM under 64 MiB is refused where it is read, as a unit slip.)"""
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text()) | {"dram_bytes": 2**28}
    path = _preset_file(tmp_path, data, "tiny-gpu.yaml")
    error = _error(system_model, with_fields(load_system("vllm-h100"), {"devices.gpu.preset": path}), LLAMA3_8B)
    assert (error.source, error.where) == (path, "dram_bytes")
    assert error.message.startswith("268435456 B x memory_utilization 0.9 (devices.gpu of ")
    assert "smaller than that reserve" in error.message


# ---------------------------------------------------------------- 5, 7: workload and GPU files
@pytest.mark.parametrize("kv_heads", [6, 64])
def test_kv_heads_must_divide_heads(kv_heads):
    data = {"name": "w", "params": {"heads": 32, "kv_heads": kv_heads, "head_dim": 128}}
    error = _error(workload_from_dict, data, "w.yaml")
    assert (error.where, error.message) == ("params.kv_heads", "expected a divisor of heads (32): each KV head "
                                            f"serves heads / kv_heads query heads, got {kv_heads}")


def test_a_host_link_is_checked_when_a_system_loads_the_gpu_preset(tmp_path):
    """The error named neither file nor field (it came from the first model that read the link)."""
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text()) | {"host_link": "pcie9"}
    path = _preset_file(tmp_path, data, "g.yaml")
    error = _error(with_fields, load_system("vllm-h100"), {"devices.gpu.preset": path})
    assert error.where == "devices.gpu.preset"
    assert error.message.startswith(f"{path}: host_link: pcie9: not a link preset")


def test_a_host_link_is_checked_by_check_and_by_a_sparse_prefill(tmp_path, cli):
    """`archsim check` passed the file; a 1M-token prefill (its KV cache crosses the host link) failed with an error
    naming neither file nor field."""
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text()) | {"host_link": "pcie9"}
    path = _preset_file(tmp_path, data, "g.yaml")
    says = f"error: {path}: host_link: pcie9: not a link preset"
    assert cli("check", str(path), expect=2).output.startswith(says)
    assert cli("sparse", "--method", "flexprefill", "--gpu", str(path), "-w", "llama3-8b", "--context", "1M",
               "--density", "0.1", expect=2).output.startswith(says)


# ---------------------------------------------------------------- 6. --tp/--pp errors name the option
@pytest.mark.parametrize(("mode", "model", "options", "source", "start"), [
    ("vllm-h100", "llama3-405b", {"tp": 1}, "--tp", "llama3-405b at tp 1 pp 1 puts"),
    ("neupims", "gpt3-175b", {"tp": 4, "pp": 1}, "--tp/--pp", "gpt3-175b at tp 4 pp 1 puts"),
    ("duplex", "deepseek-v3-mla", {"tp": 16}, "--tp", "expected at most 8"),
    ("lamina", "llama3-70b", {"tp": 8}, "--tp", "expected at most 2"),
])
def test_a_degree_given_as_an_option_is_blamed_on_the_option(mode, model, options, source, start):
    """The spec files hold no entry for these (vllm-h100 has none for llama3-405b); the errors named one."""
    error = _error(neupims.system, mode, model, **options)
    assert (error.source, error.where) == (source, "") and error.message.startswith(start), error


# ---------------------------------------------------------------- 9. by_workload keys
def test_a_by_workload_key_naming_no_workload_is_refused(tmp_path):
    data = dict(load_system("duplex-gpu").data)
    data["parallelism"] = {"tp": 4, "pp": 1, "by_workload": {"mixtral-8x7b-typo": {"tp": 2, "pp": 1}}}
    error = _error(system_from_dict, data, "e.yaml")
    assert error.where == "parallelism.by_workload.mixtral-8x7b-typo"
    assert error.message.startswith("not a library workload (known: ")


def test_a_by_workload_key_may_be_a_workload_file_path(tmp_path):
    """A workload of one's own is keyed by its file (relative to the system file); the entry is its name's."""
    (tmp_path / "mine.yaml").write_text(json.dumps({"name": "my-model", "params": {"heads": 8, "kv_heads": 2}}))
    data = dict(load_system("vllm-h100").data)
    data["parallelism"] = {"tp": 4, "pp": 1, "by_workload": {"mine.yaml": {"tp": 2, "pp": 1}}}
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert load_system(str(spec)).parallelism_for("my-model").tp == 2


# ---------------------------------------------------------------- 10. what a model would not read
@pytest.mark.parametrize(("extra", "where"), [({"sinks": 4}, "params.sinks"), ({"top_k": 2}, "params.top_k")])
def test_a_workload_size_the_decoder_layer_does_not_read_is_refused(extra, where):
    """sinks without window is refused by the system (DuoAttention's cascades read it alone); top_k without experts
    already by the workload loader (`archsim.workload.NEEDS`), before any system sees it."""
    data = {"name": "w", "block": "llama", "params": {**LLAMA3_8B.params, **extra}}
    if "top_k" in extra:
        error = _error(workload_from_dict, data, "w.yaml")
    else:
        error = _error(system_model, load_system("vllm-h100"), workload_from_dict(data, "w.yaml"))
    assert (error.source, error.where) == ("w.yaml", where)


@pytest.mark.parametrize("schedule", [{"kind": "overlapped"}, {"kind": "sub-batch-interleaving", "sub_batches": 2}])
def test_a_schedule_that_overlaps_no_bank_pim_is_refused(schedule):
    error = _error(with_fields, load_system("vllm-h100"), {"schedule": schedule})
    assert error.where == "schedule.kind" and error.message.endswith("expected blocked")


def test_an_arrival_past_the_timed_range_is_refused(tmp_path, cli):
    """At an arrival of 1e20 s an iteration's milliseconds vanished in float64: TTFT and TBT read 0 ms."""
    trace = tmp_path / "late.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n1e20,128,10\n")
    says = "arrival_s: expected a number of seconds from 0 to 1.07374e+09"
    assert cli("simulate", "--system", "vllm-h100", "-w", "llama3-8b", "--trace", str(trace),
               expect=2).output.startswith(f"error: {trace}: line 2: {says}")  # the file's line (s38)
    assert cli("simulate", "--system", "vllm-h100", "-w", "llama3-8b", "--rate", "1e-300", "--requests", "5",
               expect=2).output.startswith(f"error: --rate: 1e-300 requests/s puts request 0: {says}")  # the rate


@pytest.mark.parametrize(("fields", "where"), [
    ({"page_tokens": 10**8}, "serving.page_tokens"), ({"max_batch": True}, "serving.max_batch"),
    ({"max_prefill_tokens": 1.5}, "serving.max_prefill_tokens"),
    ({"max_prefill_tokens": "4"}, "serving.max_prefill_tokens"),
    ({"mix_prefill_decode": "no"}, "serving.mix_prefill_decode"),
    ({"watermark_fraction": "0.1"}, "serving.watermark_fraction"),
])
def test_serving_knobs_of_another_type_are_refused(fields, where):
    """A page of 1e8 tokens ran for minutes (the engine keeps a set per token offset of a page); `max_batch=True`
    ran as a batch of 1, `mix_prefill_decode="no"` as true; strings raised TypeError inside."""
    from archsim.systems.serving import ServingConfig

    assert _error(ServingConfig, **fields).where == where


def test_python_callers_get_spec_errors_naming_the_argument():
    from archsim.systems.models import system_model
    from archsim.systems.requests import Request, check_requests

    assert _error(system_model, load_system("neupims"), "gpt3-7b").where == "workload"
    assert _error(with_fields, load_system("neupims"), None).where == "changes"
    assert _error(check_requests, [Request("a", 0.0, 8, 8)]).where == "request a: id"


def test_overlapped_needs_the_bank_pims_second_row_buffer(tmp_path):
    """overlapped runs the host's softmax beside the PIM's GEMVs, which one row buffer serialises (pim.md §1.1, and
    its note that a single row buffer is the blocked mode): npu+pim (Newton, one buffer) switched to overlapped had
    run as if the accesses overlapped; it is refused naming row_buffers, and runs with two (the NeuPIMs ablation)."""
    base = load_system("npu+pim")  # blocked: nothing overlaps, one buffer is Newton's
    error = _error(with_fields, base, {"schedule.kind": "overlapped"})
    assert error.where == "devices.pim.row_buffers" and "expected 2, or schedule blocked" in error.message
    assert with_fields(base, {"schedule.kind": "overlapped", "devices.pim.row_buffers": 2}).schedule.kind == \
        "overlapped"
