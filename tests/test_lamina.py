"""Attention offloading (Lamina, ../shared/reference/pim.md §3): the offload model's spec checks, its closed form
against the event model, the transfers' bytes against the paper's formula, BW_min and its cross-check, prices and
capacities, and the reproduction's must-show figures (slow)."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.iteration import Batch
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel, bw_min_bytes_per_s, link_feasibility
from archsim.systems.offload_events import simulate_pipeline
from archsim.systems.system_spec import load_system, system_from_dict, with_fields

# The issue's must-show targets (pim.md §3.3-§3.5) and tolerances, written here rather than read from
# lamina_reproduce, whose PAPER and TOLERANCE print the "within" verdicts (checked equal to these below).
GAIN_MIN, GAIN_MAX = 0.161, 0.901  # +16.1..90.1 % throughput at equal cost
BATCH_GROWTH, BATCH_GROWTH_TOL = 2.39, 0.20  # 2.39x larger batches, within 20 % (relative)
BATCH_70B, BATCH_70B_RANGE = 800, (640, 960)  # LLaMA3-70B at DOP (2, 4) before the compute devices saturate
BW_MIN_BYTES_PER_S, BW_SLOWDOWN = 30e9, 0.05  # BW_min <= 30 GB/s at batch <= 300; the slowdown at it alpha +- 0.05
DIVIDE_AND_CONQUER = {"llama-65b": (0.132, 0.04), "llama3-70b": (0.035, 0.02)}  # TBT saved, +- points


def test_the_reproductions_targets_are_the_issues() -> None:
    """`archsim reproduce lamina` prints "within" against the module's targets and tolerances: they are the ones
    the tests check."""
    targets = {"gain_min": GAIN_MIN, "gain_max": GAIN_MAX, "batch_growth": BATCH_GROWTH, "batch_70b": BATCH_70B,
               "bw_min": BW_MIN_BYTES_PER_S, **{f"dc_{m}": paper for m, (paper, _) in DIVIDE_AND_CONQUER.items()}}
    tolerances = {"batch_growth": BATCH_GROWTH_TOL, "batch_70b": BATCH_70B_RANGE, "bw_slowdown": BW_SLOWDOWN,
                  **{f"dc_{m}": points for m, (_, points) in DIVIDE_AND_CONQUER.items()}}
    assert targets == lamina.PAPER
    assert tolerances == lamina.TOLERANCE
    assert lamina.ALPHA == 0.2


def _model(model_name: str = "llama3-70b", divide_and_conquer: bool = True) -> OffloadModel:
    return system_model(lamina.lamina_system(model_name, divide_and_conquer),
                        library.load_workload_spec(model_name))


def _spec_error(changes: dict, workload: str = "llama3-70b") -> SpecError:
    with pytest.raises(SpecError) as error:
        system_model(with_fields(load_system("lamina"), changes), library.load_workload_spec(workload))
    return error.value


# ------------------------------------------------------------------------------------------------ bad input
def test_memory_devices_must_divide_the_kv_heads() -> None:
    error = _spec_error({"devices.memory.count": 3, "parallelism.attention_pool": 3})
    assert error.where == "parallelism.attention_pool"
    assert "3 memory devices do not divide the 8 KV heads" in error.message


def test_the_cli_refuses_indivisible_head_partitioning_with_exit_2(tmp_path) -> None:
    data = copy.deepcopy(dict(load_system("lamina").data))
    data["devices"]["memory"]["count"] = data["parallelism"]["attention_pool"] = 3
    path = tmp_path / "lamina-3.yaml"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["simulate", "--system", str(path), "--workload", "llama3-70b", "--rate", "1",
                                       "--requests", "4"])
    assert result.exit_code == 2
    assert f"{path}: parallelism.attention_pool" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("changes", "where"), [
    ({"devices.memory.count": 2}, "devices.memory.count"),  # the pool's devices are attention_pool's
    ({"devices.compute.count": 3}, "devices.compute.count"),  # tp x replicas
    ({"links": {"tp": "nvlink4-h100"}}, "links.attention"),
    ({"parallelism": {"tp": 2, "pp": 1}}, "parallelism.attention_pool"),
])
def test_pools_and_link_are_checked_naming_the_field(changes: dict, where: str) -> None:
    assert _spec_error(changes).where == where


def test_decode_attention_must_go_to_a_memory_pool() -> None:
    data = copy.deepcopy(dict(load_system("lamina").data))
    data["placement"][0]["device"] = "compute"
    with pytest.raises(SpecError) as error:
        system_model(system_from_dict(data, "mine.yaml"), library.load_workload_spec("llama3-70b"))
    assert (error.value.source, error.value.where) == ("mine.yaml", "placement")


def test_a_link_below_bw_min_is_an_infeasible_record_not_an_exception() -> None:
    model = _model()
    contexts = [1024] * 128
    fast = link_feasibility(model, contexts, 0.2)
    slow_link = replace(load_link("nic-400g"), name="slow-nic", bytes_per_s_per_direction=5e9)
    slow = link_feasibility(model.with_link(slow_link), contexts, 0.2)
    assert fast.feasible and fast.reason == ""
    assert not slow.feasible and "below BW_min" in slow.reason and "slow-nic" in slow.reason
    assert slow.extras["bw_min_bytes_per_s"] == pytest.approx(fast.extras["bw_min_bytes_per_s"])


# ------------------------------------------------------------------------------------------------ the model
def test_prices_and_capacity_are_the_equal_cost_configurations() -> None:
    """pim.md §3.5: DOP (1, 2) $20.32/h vs 2 x H100 $22.12/h; DOP (2, 4) $40.64/h vs 4 x H100 $44.24/h. The KV
    cache is the pool's memory (4 x 96 GiB less the activation reserve), the weights on the compute GPUs."""
    vllm = load_system("vllm-h100")
    for name, lamina_cost, vllm_cost in (("llama-33b", 20.32, 22.12), ("llama3-70b", 40.64, 44.24)):
        workload = library.load_workload_spec(name)
        assert _model(name).price_per_hour == pytest.approx(lamina_cost)
        assert system_model(vllm, workload).price_per_hour == pytest.approx(vllm_cost)
    model = _model()
    assert model.kv_capacity_bytes == pytest.approx(4 * model.pool_device.capacity_bytes)
    assert 4 * 96 * 2**30 * 0.99 < model.kv_capacity_bytes < 4 * 96 * 2**30


def test_vllm_allocates_its_gpu_memory_utilization() -> None:
    """vLLM's default gpu_memory_utilization 0.9: each H100 gives 0.9 x 80 GiB, less the activation reserve, to the
    weights and the KV cache; without the field, all of it."""
    from archsim.systems.gpu_device import ACTIVATION_RESERVE_BYTES

    vllm = load_system("vllm-h100")
    workload = library.load_workload_spec("llama3-70b")
    model = system_model(vllm, workload)
    weights = model.weight_bytes_per_device
    assert model.kv_capacity_bytes == pytest.approx(4 * (0.9 * 80 * 2**30 - ACTIVATION_RESERVE_BYTES - weights),
                                                       rel=1e-9)
    whole = system_model(with_fields(vllm, {"devices.gpu.memory_utilization": 1.0}), workload)
    assert whole.kv_capacity_bytes - model.kv_capacity_bytes == pytest.approx(4 * 0.1 * 80 * 2**30, rel=1e-9)


@pytest.mark.parametrize("value", [0, 1.5, "0.9", True])
def test_a_memory_utilization_is_a_share_in_0_1(value) -> None:
    data = copy.deepcopy(dict(load_system("vllm-h100").data))
    data["devices"]["gpu"]["memory_utilization"] = value
    with pytest.raises(SpecError, match=r"devices\.gpu\.memory_utilization"):
        system_from_dict(data, "vllm.yaml")


@pytest.mark.parametrize("model_name", ["llama3-70b", "llama-65b"])
def test_the_transfers_are_the_papers_2_plus_2_over_g_e_d_per_token(model_name: str) -> None:
    """§3.3: per token and layer q (d) and k, v (2d/G) go out and the output (d) comes back, from the cascades."""
    model = _model(model_name)
    p = library.load_workload_spec(model_name).params
    g = p["heads"] / p["kv_heads"]
    layer = model.layer([1000] * 37)
    assert layer.wire_bytes == pytest.approx((2 + 2 / g) * p["word_bytes"] * p["hidden"] * 37)


@pytest.mark.parametrize("model_name", ["llama3-70b", "llama-65b"])
@pytest.mark.parametrize("micro_batches", [2, 3])
@pytest.mark.parametrize("divide_and_conquer", [False, True])
@pytest.mark.parametrize("batch", [16, 300])
def test_the_closed_form_period_matches_the_event_model(model_name: str, micro_batches: int,
                                                        divide_and_conquer: bool, batch: int) -> None:
    """`OffloadModel.iteration` (the layers and LM heads of the slowest cycle or busiest resource, `token_s`) against
    the SimPy pipeline's steady-state time per token, within 1 %."""
    system = with_fields(lamina.lamina_system(model_name, divide_and_conquer),
                         {"schedule": {"kind": "staggered", "micro_batches": micro_batches,
                                       "divide_and_conquer": divide_and_conquer},
                          "devices.compute.count": lamina.DOP[model_name][0] * (micro_batches - 1)})
    model = system_model(system, library.load_workload_spec(model_name))
    contexts = [800 + 7 * i for i in range(batch)]
    layers, heads_s = model.micro_batch_layers(contexts), model.heads_s(contexts)
    run = simulate_pipeline(layers, model.replicas, model.layers, 4, divide_and_conquer, heads_s=heads_s,
                            lanes=model.link_lanes)
    closed = model.iteration(Batch((), tuple(contexts))).time_s
    assert all(head > 0 for head in heads_s)  # the event model runs each micro-batch's LM head too
    assert run.token_s == pytest.approx(closed, rel=0.01)


def test_the_event_model_shows_overlap_and_idle_gaps() -> None:
    """Ping-pong: one micro-batch's attention on the pool runs while the replica computes the other's dense work,
    and the pool, the smaller load, idles between attentions; the Perfetto trace carries every span."""
    _, run = lamina.pipeline_run(batch=64, context=1024, tokens=2)
    replica = [s for s in run.spans if s.resource == "replica 0"]
    pool = sorted((s for s in run.spans if s.resource == "memory pool"), key=lambda s: s.start_s)
    assert any(r.start_s < p.end_s and p.start_s < r.end_s for r in replica[:20] for p in pool[:20])
    gaps = [b.start_s - a.end_s for a, b in itertools.pairwise(pool)]
    assert max(gaps) > 0
    trace = lamina.pipeline_trace(batch=64, context=1024, tokens=2)
    assert len([e for e in trace["traceEvents"] if e.get("ph") == "X"]) == len(run.spans)
    assert trace["otherData"]["token_s"] == pytest.approx(run.token_s)
    assert "LM head" in trace["otherData"]["spans"]  # `reproduce lamina --out`'s trace says what its spans are


def _lamina_point(model_name: str, trace: str, batch: int) -> dict:
    """A Lamina point of `model_name` serving `trace` at `batch` sequences, as `reproduce` records it (the fields
    `point_dc_savings` reads for the single-batch saving)."""
    return {"model": model_name, "trace": trace, "system": lamina.SYSTEM, "batch": float(batch)}


def test_divide_and_conquer_shortens_the_critical_path_more_for_mha_than_gqa() -> None:
    """§3.4: the K/V projection and transfer overlap the history's attention; K/V are G x smaller under GQA, so
    the saving is larger on LLaMA-65B (MHA) than on LLaMA3-70B (G = 8): batch 150 at Azure-Conv's mean context."""
    mha, gqa = (lamina.point_dc_savings([_lamina_point(m, "azure-conv", 150)])[0]["dc_saving_single_batch"]
                for m in ("llama-65b", "llama3-70b"))
    assert mha > 3 * gqa > 0


def test_bw_min_is_the_formula_and_the_event_model_slows_by_alpha_at_it() -> None:
    """BW_min per NIC = (2 + 2/G) e d B L / min(tp, b) / (alpha (MTIME + ATIME)); at that bandwidth (and the preset's
    latency) the event model without micro-batches is alpha +- 0.05 slower than over an ideal link."""
    model = _model(divide_and_conquer=False)
    contexts = [1024] * 300
    mtime, atime = model.unpipelined_times_s(contexts)
    want = 2.25 * 2 * 8192 * 300 * 80 / 2 / (0.2 * (mtime + atime))
    assert bw_min_bytes_per_s(model, contexts, 0.2) == pytest.approx(want)
    assert lamina.bw_min_cross_check()["slowdown_without_latency"] == pytest.approx(0.2, abs=0.01)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(lamina.ATTRIBUTION["bw_min_slowdown"]))
def test_the_event_model_slows_by_alpha_at_bw_min_with_the_links_latency() -> None:
    """The issue: the event model's slowdown at BW_min within alpha +- 0.05, at the headline's row (batch 300,
    128-token contexts; archsim: 0.2734 over the FHBN link's 16.5 us; 0.200 without it)."""
    cross = lamina.bw_min_cross_check()
    assert abs(cross["slowdown"] - 0.2) <= BW_SLOWDOWN


def test_bw_min_falls_with_context_and_rises_with_batch() -> None:
    rows = lamina.bw_min(batches=(16, 128), contexts=(128, 4096))
    at = {(r["batch"], r["context"]): r["bw_min_bytes_per_s"] for r in rows}
    assert at[(128, 128)] > at[(16, 128)] and at[(128, 128)] > at[(128, 4096)]


# ------------------------------------------------------------------------------------------------ reproduction
@pytest.fixture(scope="module")
def grid(lamina_grid: list[dict]) -> list[dict]:
    """The reproduction's 3 models x 4 traces, every system, at the request rounds `archsim reproduce lamina` runs
    (the steady window's mean batch moves a few per cent with them: 952 at its 3 rounds, 979 at 2)."""
    return lamina_grid


@pytest.fixture(scope="module")
def azure_70b(grid: list[dict]) -> list[dict]:
    """LLaMA3-70B on Azure-Conv, every system."""
    return [r for r in grid if r["model"] == "llama3-70b" and r["trace"] == "azure-conv"]


def test_llama3_70b_reaches_a_batch_past_the_one_its_compute_devices_saturate_at(azure_70b: list[dict]) -> None:
    """pim.md §3.5: LLaMA3-70B reaches batch 800 at DOP (2, 4) before the compute devices saturate; archsim's
    reached batch on Azure-Conv (952 at seed 0, 952-992 over seeds 0-3: the KV pool's at the mean context) is past
    the replica's saturation batch (628, `saturation_batch`), the one checked against the issue's 640..960 (the
    strict xfail in tests/test_lamina_s30.py)."""
    batch = {r["system"]: r["batch"] for r in azure_70b}
    assert lamina.saturation_batch()["batch"] < batch["lamina"]


def test_the_batch_grows_about_2_39x(grid: list[dict]) -> None:
    """pim.md §3.5: 2.39x larger batches on average over the grid, within the issue's 20 %."""
    growth = [g["ratio"] for g in lamina.gains(grid, "batch")]
    assert len(growth) == 12
    assert abs(sum(growth) / len(growth) / BATCH_GROWTH - 1) <= BATCH_GROWTH_TOL


def test_the_baseline_runs_at_most_vllms_default_256_sequences(azure_70b: list[dict]) -> None:
    """The baseline is vLLM at its defaults (the paper names no setting): its scheduler admits at most 256
    sequences (max_num_seqs) where its KV cache holds 366 (the uncapped run beside it), which cuts its rate."""
    by = {r["system"]: r for r in azure_70b}
    assert lamina.VLLM_MAX_NUM_SEQS == 256
    assert by["vllm-h100"]["batch"] <= 256 < 300 < by["vllm-h100-uncapped"]["batch"]
    assert by["vllm-h100"]["throughput_tok_s"] < by["vllm-h100-uncapped"]["throughput_tok_s"]


def test_throughput_gain_at_equal_cost_is_in_the_papers_range_where_attention_weighs() -> None:
    """pim.md §3.5: +16.1..90.1 % throughput at similar cost. LLaMA-65B (MHA) on Kimi-Conv: the KV cache holds 8
    requests on Lamina's pool, 3 on vLLM's H100s at gpu_memory_utilization 0.9 (archsim: +42.8 %; the grid's 12
    points are in the range)."""
    (gain,) = lamina.gains(lamina.reproduce(("llama-65b",), ("kimi-conv",), rounds=2))
    assert GAIN_MIN <= gain["ratio"] - 1 <= GAIN_MAX


def test_every_gain_is_in_the_papers_range(grid: list[dict]) -> None:
    """pim.md §3.5: +16.1..90.1 % at equal cost, every point of the grid printed by `archsim reproduce lamina`
    (a guard on all 12, not only the one checked below)."""
    outside = [(g["model"], g["trace"]) for g in lamina.gains(grid)
               if not GAIN_MIN <= g["ratio"] - 1 <= GAIN_MAX]
    assert len(lamina.gains(grid)) == 12 and outside == []


def test_throughput_gain_at_equal_cost_where_the_compute_gpus_saturate(azure_70b: list[dict]) -> None:
    """pim.md §3.5: the range's floor, +16.1 %, holds for every point of the paper; LLaMA3-70B on Azure-Conv is the
    grid's least (archsim: +19.9 %, +4.4 % against vLLM without its 256-sequence limit), where Lamina's replica runs
    near its peak FLOPs (+8.1 % when each batch's decode attention was timed at its mean context)."""
    (gain,) = lamina.gains(azure_70b)
    assert GAIN_MIN <= gain["ratio"] - 1 <= GAIN_MAX


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(lamina.ATTRIBUTION["bw_min"]))
def test_bw_min_at_batch_300_is_at_most_30_gb_per_s() -> None:
    """pim.md §3.3: <= 30 GB/s for batch <= 300 at alpha 0.2 (archsim at batch 300: 61.5 GB/s at 128-token
    contexts, 52.4 at 1024, 35.1 at 4096)."""
    rows = lamina.bw_min(batches=(300,), contexts=(128, 1024, 4096))
    assert max(r["bw_min_bytes_per_s"] for r in rows) <= BW_MIN_BYTES_PER_S


@pytest.mark.parametrize("model_name", ["llama-65b", "llama3-70b"])
def test_divide_and_conquer_saves_the_papers_share_of_the_critical_path(model_name: str) -> None:
    """pim.md §3.4: up to 13.2 % of TBT on LLaMA-65B, 3.5 % on LLaMA3-70B (the issue: +- 4 and +- 2 points). The
    largest saving over the four traces of one batch without micro-batches, at the batch the pool's KV cache holds
    at the trace's mean context."""
    model = _model(model_name)
    points = []
    for trace in lamina.TRACES:
        lengths = lamina.LENGTH_PRESETS[trace]
        context = round(lengths.mean_prompt_tokens + lengths.mean_output_tokens / 2)
        points.append(_lamina_point(model_name, trace, int(model.kv_capacity_bytes / model.kv_bytes_per_token
                                                           / context)))
    paper, within = DIVIDE_AND_CONQUER[model_name]
    assert abs(lamina.critical_path_dc_saving(points, model_name) - paper) <= within


def test_the_cli_prints_the_issue_json(monkeypatch) -> None:
    small = lamina.run_all

    def one_point() -> tuple:
        return small(("llama3-70b",), ("kimi-conv",))

    monkeypatch.setattr(lamina, "run_all", one_point)
    monkeypatch.setattr(lamina, "REQUEST_ROUNDS", 2)
    result = CliRunner().invoke(main, ["reproduce", "lamina", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    keys = {"model", "trace", "system", "cost_per_h", "throughput_tok_s", "batch", "tbt_p50_s", "tbt_p99_s"}
    assert keys <= set(out["points"][0])
    for point in out["points"]:  # throughput per dollar: tokens per hour over the price per hour
        assert point["tokens_per_usd"] == pytest.approx(point["throughput_tok_s"] * 3600 / point["cost_per_h"])
    assert {"model", "batch", "alpha", "bw_min_bytes_per_s"} <= set(out["bw_min"][0])
    assert {"throughput_gain", "batch_growth", "bw_min_batch_300_bytes_per_s", "bw_min_slowdown"} <= \
        set(out["headline"])  # the bound's unit in its name (audit helper-463)


def test_a_system_sweep_point_runs_lamina_with_its_cost() -> None:
    """The sweeps' evaluator takes an offloading system like any other: a link preset as a field, the cost per
    token from both pools' prices (count x price)."""
    from archsim.dse.serving_spec import ServingSettings
    from archsim.dse.system_points import serve_point
    from archsim.systems.requests import poisson_requests

    settings = ServingSettings(rate_per_s=50.0, requests=12, lengths="azure-code", seed=0, max_batch=16)
    requests = poisson_requests(rate_per_s=50.0, n=12, lengths="azure-code", seed=0)
    workload = library.load_workload_spec("llama3-70b")
    records = {link: serve_point(load_system("lamina"), workload, requests, settings,
                                 {"system.links.attention": link})
               for link in ("lamina-gpu-initiated-400g", "lamina-nccl-400g")}
    for record in records.values():
        assert record.feasible
        tokens_per_h = record.extras["throughput_tok_s"] * 3600
        assert record.extras["cost_per_token_usd"] == pytest.approx(40.64 / tokens_per_h, rel=0.02)
    # at this batch the replica's two slices outlast a micro-batch's round trip, so the slower link is hidden
    assert records["lamina-nccl-400g"].extras["tbt_p50_s"] == pytest.approx(
        records["lamina-gpu-initiated-400g"].extras["tbt_p50_s"])
