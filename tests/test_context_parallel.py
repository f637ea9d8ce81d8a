"""Multi-device attention as a system: a `context-parallel` spec (`archsim.systems.context_parallel`) served like any
other system, its prefill timed by the schemes of `archsim parallel`."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems.context_parallel import ContextParallelModel
from archsim.systems.iteration import Batch
from archsim.systems.neupims import system
from archsim.systems.seqpar import parallel_time
from archsim.systems.step import UnrunnableOp
from archsim.systems.system_spec import load_system, system_from_dict

PRESET = "context-parallel-h100"
PLAIN = {"name": "plain", "base": PRESET, "links": {"cp": None}, "parallelism": {"cp": None},
         "schedule": {"kind": "blocked", "scheme": None}}  # the same GPUs and links, one engine at tp 8, no CP


def _plain(tmp_path, workload: str = "llama3-8b"):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(PLAIN))
    return system(load_system(path), workload)


def _cp(cp: int, workload: str = "llama3-8b") -> ContextParallelModel:
    return system(PRESET, workload, changes={"parallelism.cp": cp})


@pytest.mark.parametrize("workload", ["llama3-8b", "llama3-405b-fp8"])
def test_one_rank_is_the_plain_gpu_system(tmp_path, workload):
    """At cp 1 the prefill, timed by `seqpar.parallel_time` (its ring of one over a layer, unpadded), and the decode
    (the rank's own model) cost what the blocked GPU system of the same spec computes by its own path: time, energy
    and busy time (tensor-core time at peak, the fp8 FFN at the fp8 rate; its all-reduce in bf16 on both paths)."""
    plain, one = _plain(tmp_path, workload), _cp(1, workload)
    for prompt in (1001, 16384):  # the context-parallel prefill path at cp 1
        a, b = plain.iteration(Batch((prompt,), ())), one.prefill_cost(prompt)
        assert b.time_s == pytest.approx(a.time_s, rel=1e-9)
        assert b.energy_j == pytest.approx(a.energy_j, rel=1e-9)
        assert b.busy_s["gpu"] == pytest.approx(a.busy_s["gpu"], rel=1e-9)
    contexts = [8192] * 64  # and its decode path
    assert one.decode_cost(contexts).time_s == pytest.approx(plain.iteration(Batch((), contexts)).time_s, rel=1e-9)
    assert one.kv_capacity_bytes == plain.kv_capacity_bytes
    if workload != "llama3-8b":
        return
    # at cp 1 an iteration is the rank's own, a mixed one included (one pass over the weights); at cp 2 its
    # prompts, then its decodes
    mixed = Batch((4096,), [1000] * 8)
    assert one.iteration(mixed) == plain.iteration(mixed)
    two = _cp(2)
    apart = two.iteration(Batch((4096,), ())).time_s + two.iteration(Batch((), [1000] * 8)).time_s
    assert two.iteration(mixed).time_s == pytest.approx(apart, rel=1e-12)


def test_a_long_prompt_scales_with_the_ranks():
    """Zigzag balances the causal ring, so a 128K prompt's prefill falls nearly as 1/cp (8K of it per GPU hides
    its K/V hops under the blocks' compute)."""
    times = {cp: _cp(cp).iteration(Batch((131072,), ())).time_s for cp in (1, 2, 4)}
    assert times[1] / 2 < times[2] < 0.52 * times[1]
    assert times[2] / 2 < times[4] < 0.52 * times[2]


def test_a_prompt_is_padded_to_the_schemes_chunks():
    model = _cp(2)
    assert model.prefill_spec(1001).seq_len == 1004  # zigzag: 2 x cp chunks
    assert model.iteration(Batch((1001,), ())).time_s == model.iteration(Batch((1004,), ())).time_s
    assert model.iteration(Batch((1005,), ())).time_s > model.iteration(Batch((1004,), ())).time_s


def test_prefill_is_the_parallel_commands_layer_times_the_layers():
    model = _cp(2)
    layer = parallel_time(model.prefill_spec(65536))
    head = model.rank.lm_head_cost(1)
    assert model.iteration(Batch((65536,), ())).time_s == pytest.approx(32 * layer.time_s + head.time_s, rel=1e-12)


def test_decode_reads_a_share_of_each_cache_and_merges_the_partials():
    """Each rank attends ceil(context / cp) keys of every sequence, then the ranks all-gather each token's partial
    (o, max, sum-exp) per head in fp32 over the NICs: by hand, 16 tokens x 4 heads (32 / tp 8) x (128 + 2) x 4 B."""
    model = _cp(2)
    contexts = [100001] * 16
    own = model.rank.iteration(Batch((), [50001] * 16))
    exchange_s, merge_s = model.merge_costs_s(16)
    partial_bytes = 16 * 4 * (128 + 2) * 4
    assert exchange_s == pytest.approx(1e-6 + partial_bytes / 50e9, rel=1e-12)  # ib-ndr-400g: (cp - 1) steps
    assert model.iteration(Batch((), contexts)).time_s == pytest.approx(own.time_s + 32 * (exchange_s + merge_s))
    assert model.iteration(Batch((), contexts)).time_s < _cp(1).iteration(Batch((), contexts)).time_s
    # busy is tensor-core time: each rank's share of the attention, none for the elementwise merge
    assert model.iteration(Batch((), contexts)).busy_s == own.busy_s


def test_the_cache_spreads_over_the_ranks_and_the_price_counts_every_gpu():
    one, four = _cp(1), _cp(4)
    assert four.kv_capacity_bytes == 4 * one.kv_capacity_bytes
    assert four.kv_bytes_per_token == one.kv_bytes_per_token == 2 * 8 * 128 * 2 * 32  # llama3-8b: K, V x layers
    assert four.price_per_hour == pytest.approx(32 * 11.06)


def test_a_prompt_beyond_a_gpus_memory_is_unrunnable_and_served_as_refused():
    model = _cp(2, "llama3-70b")
    with pytest.raises(UnrunnableOp, match="exceeds"):
        model.iteration(Batch((4_000_000,), ()))
    assert _cp(8, "llama3-70b").iteration(Batch((1_000_000,), ())).time_s > 0


def test_simulate_serves_the_preset_and_prints_a_serving_record():
    result = CliRunner().invoke(main, ["simulate", "--system", PRESET, "--workload", "llama3-8b", "--rate", "2",
                                       "--requests", "6", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["system"] == "context-parallel-h100:llama3-8b tp8 cp2"
    assert out["record"]["target_kind"] == "serving" and out["output_tokens"] > 0
    assert 0 < out["utilization"]["gpu"] < 1 and math.isfinite(out["energy_per_token_j"])


def _spec(**changes):
    data = yaml.safe_load(library.find("system presets", PRESET, "archsim.systems.system_presets").read_text())
    for path, value in changes.items():
        *parents, last = path.split(".")
        at = data
        for key in parents:
            at = at[key]
        if value is None:
            at.pop(last)
        else:
            at[last] = value
    return data


@pytest.mark.parametrize(("changes", "where", "says"), [
    ({"schedule.scheme": None}, "schedule.scheme", "missing"),
    ({"schedule.scheme": "lasp2"}, "schedule.scheme", "expected one of ring, zigzag"),
    ({"schedule.scheme": "usp"}, "schedule.ulysses", "missing"),
    ({"schedule.ulysses": 2}, "schedule.ulysses", "read only by scheme usp"),
    ({"schedule.kind": "blocked", "schedule.scheme": None}, "parallelism.cp", "read only by a context-parallel"),
    ({"schedule.kind": "blocked", "schedule.scheme": None, "parallelism.cp": None}, "links.cp",
     "read only by a context-parallel"),
    ({"devices.gpu.energy_model": "per-action", "devices.gpu.hbm_pj_per_bit": 3.9, "devices.gpu.pj_per_flop": 0.5,
      "devices.gpu.sram_pj_per_byte": 1.0, "devices.gpu.static_w": 100}, "devices.gpu.energy_model", "per-action"),
    ({"devices.gpu.timing": "roofline"}, "devices.gpu.timing", "roofline"),
    ({"links.tp": None}, "links.tp", "missing"),
    ({"schedule.scheme": "usp", "schedule.ulysses": 3}, "schedule.ulysses", "a divisor of parallelism.cp = 2"),
])
def test_a_spec_the_model_would_misread_is_refused(changes, where, says):
    with pytest.raises(SpecError) as error:
        system_from_dict(_spec(**changes), "cp.yaml")
    assert error.value.where == where and says in error.value.message


@pytest.mark.parametrize(("changes", "workload", "where", "says"), [
    ({"links.cp": None}, "llama3-8b", "links.cp", "tp x cp = 8 x 2 GPUs span nodes of 8"),
    ({"devices.gpu.count": 1, "links.tp": None, "links.cp": None, "parallelism.tp": 1}, "llama3-8b", "links.cp",
     "tp x cp = 1 x 2 GPUs span nodes of 1"),
    ({"parallelism.pp": 2}, "llama3-8b", "parallelism.pp", "expected 1"),
    ({"schedule.scheme": "ulysses", "parallelism.cp": 8}, "llama3-8b", "parallelism.cp",
     "params.heads: ulysses splits the heads over 8 devices"),
    ({}, "swa.yaml", "params.window", "a sliding-window workload"),
    ({"parallelism.tp": 1}, "llama3-70b", "parallelism.tp",
     "raise tp: a context-parallel rank holds the whole model"),
    ({}, "llama3-405b", "parallelism.tp", "it needs GPUs with more memory or a smaller model"),
    ({"schedule.scheme": "usp", "schedule.ulysses": 2, "parallelism.cp": 4}, "llama3-8b", "schedule.ulysses",
     "expected kv_heads"),
])
def test_degrees_and_workloads_the_schemes_cannot_cut_are_refused(tmp_path, changes, workload, where, says):
    path = named = tmp_path / "cp.yaml"
    path.write_text(yaml.safe_dump(_spec(**changes)))
    if workload == "swa.yaml":  # llama3-8b with a sliding window, which the schemes' kernels do not model
        named = tmp_path / "swa.yaml"  # a window is the workload's: its file is named
        data = yaml.safe_load(library.find("workloads", "llama3-8b").read_text())
        data["params"].update(window=4096, sinks=0)
        workload = str(tmp_path / "swa.yaml")
        (tmp_path / "swa.yaml").write_text(yaml.safe_dump({**data, "name": "swa-8b"}))
    result = CliRunner().invoke(main, ["simulate", "--system", str(path), "--workload", workload, "--rate", "1",
                                       "--requests", "2"])
    assert result.exit_code == 2, result.output
    assert f"{named}: {where}:" in result.output and says in result.output
    assert "Traceback" not in result.output


def test_parallel_on_the_system_is_its_prefills_layer():
    """`archsim parallel --system` takes the spec's GPUs, links, scheme, cp, tp and kernel: its layer is the one the
    system's prefill repeats over the layers."""
    result = CliRunner().invoke(main, ["parallel", "--system", PRESET, "--workload", "llama3-70b", "--seq-len",
                                       "128K", "--scope", "layer", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["points"]
    assert (row["scheme"], row["devices"], row["tp"], row["kernel"]) == ("zigzag", 2, 8, "FlashAttention-2")
    model = _cp(2, "llama3-70b")
    prefill = model.iteration(Batch((131072,), ())).time_s
    assert prefill == pytest.approx(80 * row["latency_s"] + model.rank.lm_head_cost(1).time_s, rel=1e-12)


@pytest.mark.parametrize(("args", "says"), [
    (["--system", PRESET, "--topology", "hgx-h100"], "--system sets the devices and their topology"),
    (["--system", "vllm-h100"], "schedule.kind: --system takes a context-parallel system"),
    (["--devices", "2"], "Missing option '--scheme'"),
])
def test_parallel_refuses_a_system_it_cannot_read(args, says):
    result = CliRunner().invoke(main, ["parallel", *args, "--workload", "llama3-8b", "--seq-len", "32K"])
    assert result.exit_code == 2 and says in result.output, result.output


def test_a_tp_the_ranks_cannot_take_is_blamed_on_its_option(tmp_path):
    path = tmp_path / "cp6.yaml"
    path.write_text(yaml.safe_dump(_spec(**{"devices.gpu.count": 6, "parallelism.tp": 2})))
    result = CliRunner().invoke(main, ["simulate", "--system", str(path), "--workload", "llama3-8b", "--tp", "4",
                                       "--rate", "1", "--requests", "2"])
    assert result.exit_code == 2 and "error: --tp: " in result.output, result.output


def test_cp_is_swept_beside_a_workloads_own_degrees(tmp_path):
    """A `by_workload` entry takes cp from the top level, so an axis over parallelism.cp is read."""
    spec = _spec()
    spec["parallelism"]["by_workload"] = {"llama3-8b": {"tp": 8, "pp": 1}}
    (tmp_path / "bw.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "cp", "system": str(tmp_path / "bw.yaml"), "workload": "llama3-8b",
        "serving": {"rate_per_s": 1.0, "requests": 3, "lengths": "sharegpt", "seed": 0, "max_batch": 8},
        "axes": {"system.parallelism.cp": [1, 2]}, "sampling": {"kind": "grid"},
        "objectives": ["throughput_tok_s", "tbt_p99_s"]}))
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "sweep.yaml"), "--db", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 0 and "2 feasible" in result.output, result.output


def test_a_prompt_beyond_the_engines_share_of_memory_is_unrunnable():
    """The prefill's memory (weights, the prompt's KV, its working set) is held to memory_utilization of the DRAM."""
    full = _cp(2, "llama3-70b")
    share = system(PRESET, "llama3-70b", changes={"devices.gpu.memory_utilization": 0.5})
    length = 600_000
    assert full.prefill(length).memory_bytes < 0.9 * full.rank.weight_device.spec.dram_bytes
    with pytest.raises(UnrunnableOp, match=r"memory_utilization 0\.5"):
        share.iteration(Batch((length,), ()))


def test_one_gpu_needs_no_link(tmp_path):
    """One GPU to a node at tp 1, cp 1 talks to no one: no link is needed (the single-GPU engine)."""
    spec = _spec(**{"devices.gpu.count": 1, "links.tp": None, "links.cp": None, "parallelism.tp": 1,
                    "parallelism.cp": 1})
    model = system(system_from_dict(spec, "one.yaml"), "llama3-8b")
    assert model.iteration(Batch((1000,), [2000] * 4)).time_s > 0


def test_parallel_on_the_system_takes_the_workloads_own_degrees(tmp_path):
    spec = _spec()
    spec["parallelism"]["by_workload"] = {"llama3-8b": {"tp": 2, "pp": 1}}
    path = tmp_path / "bw.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(main, ["parallel", "--system", str(path), "--workload", "llama3-8b", "--seq-len",
                                       "32K", "--scope", "layer", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["points"]
    model = system(load_system(path), "llama3-8b")
    assert row["tp"] == 2 == model.parallelism.tp
    assert model.prefill_cost(32768).time_s == pytest.approx(32 * row["latency_s"] + model.rank.lm_head_cost(1).time_s,
                                                            rel=1e-12)
