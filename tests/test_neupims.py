"""NeuPIMs (Heo et al., ASPLOS'24) reproduced from first principles: the PIM command model, the channel policies,
and the paper's headline numbers (../shared/reference/pim.md §1.1, §1.4, §1.6).

Every number of a result comes from the model (specs in `archsim/systems/{npu,pim}.py`); the paper's values are
only the targets below. Tolerance: the issue's "within 20 %", ours / paper, for every target (RATIO_TOL): the
throughput ratios, Table 4's NPU and PIM utilizations, the Fig. 13 dual-row-buffer gain and the energy ratio; the
reproduction's printed verdicts use the same targets and tolerance (`neupims_reproduce.PAPER`, `HEADLINE_TOLERANCE`;
checked equal to these). Targets our model does not reach are xfail(strict=True) with the modelling choice that
explains the gap, so a change that reaches them shows up as an XPASS to act on; `archsim reproduce neupims` prints
how far each alternative choice (`neupims_reproduce.VARIANTS`) moves each gap.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archsim.errors import SpecError
from archsim.systems import neupims, neupims_reproduce
from archsim.systems import npu as npu_model
from archsim.systems import pim as pim_model
from archsim.systems.iteration import Batch
from archsim.systems.npu import NPUSpec
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import MAX_NUMBER, load_system

PIM = pim_model.PIMSpec()
RATIO_TOL = 0.20  # the issue's "within 20 %", ours / paper, for every target

ALPACA_AND_SBI = ("two modelling results (variants 'ShareGPT only' and 'SBI shares weights'): (1) on Alpaca's short "
                  "steady-state contexts a PIM GEMV is GWRITE and partial-tile bound and hardly faster than "
                  "streaming the request's KV, so PIM gains little there; (2) SBI re-streams every weight per "
                  "sub-batch, and sub-batches below the arrays' 256-token ridge are weight-bandwidth bound, so SBI "
                  "loses more GEMM time than the PIM overlap hides at batch 256 and often at 384: NeuPIMs then runs "
                  "overlapped (only_when_faster), and gains only the overlap and the greedy channels there")


@pytest.fixture(scope="module")
def records():
    return neupims_reproduce.reproduce(modes=("npu-only", "npu+pim", "neupims", "neupims-no-sbi"))


@pytest.fixture(scope="module")
def gpu_records():
    return neupims_reproduce.reproduce(modes=("gpu",))


@pytest.fixture(scope="module")
def ablation():
    return neupims_reproduce.ablation()


@pytest.fixture(scope="module")
def ours(records):
    return neupims_reproduce.summary(records)


# ------------------------------------------------------------------------------------------------ PIM commands
def test_full_tile_from_timing() -> None:
    """Hand derivation from the HBM2 timing of §1.2 (tRRD_S 4 from neupims-artifact.md §5): 8 G_ACTs tRRD_S apart,
    4 per tFAW window -> last at 30 + 3 x 4 = 42; + tRCD 14; 32 COMPs x tCCD_L 2 = 64; READRES CL 14 + 64 B / 32 B
    per cycle = 16; + tRP 14 -> 150 cycles, x 3900/3640 for refresh = 160.7. Algorithm 1 (the artifact) charges 184
    cycles a tile: the two agree within 25 %."""
    cycles = float(pim_model.tile_cycles(PIM, 32, 32, 64))
    assert cycles == 150
    assert cycles * PIM.refresh_factor == pytest.approx(150 * 3900 / 3640, abs=0.01)
    assert abs(cycles * PIM.refresh_factor / PIM.algorithm1_tile_cycles - 1) < 0.25


def test_gemv_latency_grows_with_sequence_length() -> None:
    lengths = np.arange(1, 4097)
    for heads, head_dim in ((8, 128), (14, 128), (12, 128)):
        cycles = sum(pim_model.gemv_parts_cycles(PIM, lengths, heads, head_dim))
        estimate = pim_model.algorithm1_cycles(PIM, lengths, heads, head_dim)
        assert np.all(np.diff(cycles) >= 0) and np.all(np.diff(estimate) >= 0)
        assert cycles[2047] > 5 * cycles[63]  # 2048 vs 64 tokens: the K and V rows dominate
        # Cross-check on long sequences, where whole tiles dominate: the command model within 25 % of Algorithm 1.
        assert np.all(np.abs(cycles[1023:] / estimate[1023:] - 1) < 0.25)


def test_external_bandwidth() -> None:
    """§1.2: 32 channels x 128 bit x DDR x 1 GHz = 1.024 TB/s peak; refresh leaves 3640/3900 of it."""
    assert pim_model.external_peak_bytes_per_s(PIM) == pytest.approx(1.024e12)
    assert pim_model.external_bytes_per_s(PIM) == pytest.approx(1.024e12 * 3640 / 3900)


# ------------------------------------------------------------------------------------------------ channel policies
def greedy_assignment(loads, channels: int) -> np.ndarray:
    """Algorithm 2's channels (`pim.greedy_channels`, which a bank-PIM placement calls with float loads) as an
    array, for `pim.channel_loads`."""
    return np.array(pim_model.greedy_channels([float(load) for load in loads], channels))


def test_greedy_no_worse_than_round_robin_on_sampled_batches() -> None:
    """On the load greedy balances (Algorithm 1), over sampled ShareGPT and Alpaca batches of every size."""
    for d_index, dataset in enumerate(neupims_reproduce.DATASETS):
        for batch in neupims_reproduce.BATCHES:
            for sample in range(3):
                contexts = neupims_reproduce.sample_contexts((7, d_index, batch, sample), batch, dataset)
                loads = pim_model.algorithm1_cycles(PIM, contexts, 8, 128)
                greedy = pim_model.channel_loads(loads, greedy_assignment(loads, PIM.channels), PIM.channels)
                rr = pim_model.channel_loads(loads, pim_model.round_robin(len(loads), PIM.channels), PIM.channels)
                assert greedy.max() <= rr.max()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 2048), min_size=1, max_size=64), st.integers(1, 8))
def test_greedy_within_graham_bound_of_round_robin(loads: list[int], channels: int) -> None:
    """Longest-first greedy is within (4/3 - 1/(3m)) of the optimum (Graham 1969), hence of round-robin. It is not
    always <= round-robin: loads [2, 3, 2, 3, 2] on 2 channels give rr 6 ({3, 3}) and greedy 7."""
    greedy = pim_model.channel_loads(loads, greedy_assignment(loads, channels), channels).max()
    rr = pim_model.channel_loads(loads, pim_model.round_robin(len(loads), channels), channels).max()
    assert greedy <= (4 / 3 - 1 / (3 * channels)) * rr + 1e-9
    assert pim_model.channel_loads([2, 3, 2, 3, 2], greedy_assignment([2, 3, 2, 3, 2], 2), 2).max() == 7


def test_sub_batch_partition_halves_each_channel() -> None:
    """Algorithm 3: each channel's requests split in half, odd remainders alternating between the sub-batches."""
    assignment = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    sub = pim_model.sub_batch_partition(assignment, 3)
    for ch in range(3):
        counts = np.bincount(sub[assignment == ch], minlength=2)
        assert abs(counts[0] - counts[1]) <= 1
    assert np.bincount(sub).tolist() == [4, 4]  # channel 0's odd one to SB1, channel 1's to SB2


# ------------------------------------------------------------------------------------------------ system
def test_iteration_model_contract() -> None:
    system = neupims.system("neupims", "gpt3-7b")
    cost = system.iteration(Batch(prefill_tokens=(32,), decode_context_tokens=(100, 200, 300)))
    assert cost.time_s > 0 and 0 < cost.busy_s["npu"] < cost.time_s and 0 < cost.busy_s["pim"] < cost.time_s
    # KV per token: 2 (K, V) x 32 layers x 4096 x 2 bytes = 512 KiB.
    assert system.kv_bytes_per_token == 2 * 32 * 4096 * 2
    assert 0 < system.kv_capacity_bytes < 4 * PIM.capacity_bytes


def test_tensor_parallelism_beats_pipeline_parallelism_on_the_same_devices() -> None:
    """Fig. 14 (§1.4, §1.6): with 256 requests, TP beats PP on the same devices. In ours a device's share of every
    layer's weights shrinks with TP while PP stages take turns on the one batch in flight (micro-batched PP is not
    modelled), so GPT3-30B on 8 devices slows at every step from TP8 to PP8."""
    contexts = neupims_reproduce.sample_contexts((0, 0, 256, 0), 256, "sharegpt")
    shards, times = [], []
    for tp, pp in ((8, 1), (4, 2), (2, 4), (1, 8)):
        system = neupims.system("neupims", "gpt3-30b", tp=tp, pp=pp)
        shards.append(system)
        times.append(system.iteration(Batch(decode_context_tokens=contexts)).time_s)
    assert all(a < b for a, b in pairwise(times))
    # 8 devices hold the same share of the layers each, but for the norms' gains, which every TP rank keeps whole
    # (the embedding table and LM head: both on a TP rank, one on an end stage)
    weights = [s.layer_weight_bytes_per_device for s in shards]
    assert max(weights) == pytest.approx(min(weights), rel=1e-3)
    assert [s.shard.params["heads"] for s in shards] == [7, 14, 28, 56]
    with pytest.raises(SpecError, match="tp"):
        neupims.system("neupims", "gpt3-30b", tp=3)
    with pytest.raises(SpecError, match="pp"):
        neupims.system("neupims", "gpt3-30b", pp=49)  # 48 layers


def test_modes_are_system_specs() -> None:
    """A mode is a library system spec; a change is a spec field, validated like the file."""
    assert {load_system(m).devices["pim"].spec.row_buffers for m in ("npu+pim", "neupims")} == {1, 2}
    with pytest.raises(SpecError, match=r"schedule\.sub_batches"):
        neupims.configure("npu+pim", {"schedule.kind": "sub-batch-interleaving"})
    with pytest.raises(SpecError, match=r"devices\.pim\.row_buffers"):
        neupims.configure("neupims", {"devices.pim.row_buffers": 3})


# ------------------------------------------------------------------------------------------------ reproduction
def test_the_reproductions_targets_are_the_ones_tested_here() -> None:
    """`archsim reproduce neupims` prints "within" against the module's targets and tolerance: they are the paper's
    values and the issue's 20 % written in the tests below, so neither can drift from the other."""
    assert neupims_reproduce.HEADLINE_TOLERANCE == RATIO_TOL
    assert neupims_reproduce.PAPER == {
        "neupims/npu-only": 2.4, "neupims/npu+pim": 1.6, "npu+pim/npu-only": 1.5, "neupims/gpu": 3.0,
        "npu_util npu+pim": 0.28, "npu_util neupims": 0.649, "pim_util npu+pim": 0.17, "pim_util neupims": 0.264,
        "energy neupims/npu-only": 0.75}
    assert neupims_reproduce.ABLATION_PAPER == {"dual row buffers": 1.697}
    assert neupims_reproduce.ARTIFACT_TOLERANCES == {"ratio": ARTIFACT_RATIO_TOL, "util": ARTIFACT_UTIL_TOL}


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=ALPACA_AND_SBI)
def test_neupims_over_npu_only(ours) -> None:
    """§1.1: 2.4x over NPU-only (geometric mean over models x datasets x batches)."""
    assert abs(ours["neupims/npu-only"] / 2.4 - 1) < RATIO_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=ALPACA_AND_SBI)
def test_neupims_over_naive_npu_pim(ours) -> None:
    """§1.1: 1.6x over naive NPU+PIM."""
    assert abs(ours["neupims/npu+pim"] / 1.6 - 1) < RATIO_TOL


def test_gpu_only_is_about_npu_only(records, gpu_records) -> None:
    """§1.6: GPU-only (a real A100 40GB running PyTorch) against NPU-only shows "marginal differences"; the paper's
    own headline ratios put it at 2.4 / 3.0 = 0.8 of NPU-only. Ours, the geometric mean over models x datasets x
    batches, within the paper's 20 % of parity (RATIO_TOL). The A100's weight GEMMs stream at the transferred copy
    fraction (archsim.systems.gpu_device), so it runs at about NPU-only's speed (0.99 at this commit)."""
    assert abs(neupims_reproduce.throughput_ratio([*records, *gpu_records], "gpu", "npu-only") - 1) < RATIO_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="NeuPIMs' own gain over NPU-only falls short (test_neupims_over_npu_only) and the GPU "
                          "runs at about NPU-only's speed, as the paper's 'marginal differences' say, so NeuPIMs over "
                          "GPU is about the NPU-only ratio, not 3.0 (variant 'ShareGPT only' moves it furthest: 0.62 "
                          "of the paper's 3.0x)")
def test_neupims_over_gpu(records, gpu_records) -> None:
    """§1.1: 3.0x over the GPU-only baseline (geometric mean over models x datasets x batches)."""
    assert abs(neupims_reproduce.throughput_ratio([*records, *gpu_records], "neupims", "gpu") / 3.0 - 1) < RATIO_TOL


def test_naive_npu_pim_over_npu_only(ours) -> None:
    """§1.6: NPU+PIM about 1.5x NPU-only on average."""
    assert abs(ours["npu+pim/npu-only"] / 1.5 - 1) < RATIO_TOL


def _gap(reason: str):
    """A Table 4 utilization ours misses, with the attributed reason (the reproduction's `explain`)."""
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


@pytest.mark.parametrize(("metric", "paper"), [
    pytest.param("npu_util npu+pim", 0.28, id="npu-naive", marks=_gap(
        "the naive mode's GEMMs run at the arrays' pipelined rate and ShareGPT contexts keep the PIM MHA shorter than "
        "the GEMMs, so the arrays do useful MACs about half the iteration (variant 'SCALE-Sim folds': per-fold fill "
        "and drain stretch the GEMMs to match)")),
    pytest.param("npu_util neupims", 0.649, id="npu-neupims"),
    pytest.param("pim_util npu+pim", 0.17, id="pim-naive", marks=_gap(
        "our arrays pipeline the folds of a GEMM, so its GEMMs take less of a naive NPU+PIM iteration and the same "
        "PIM commands fill more of it (variant 'SCALE-Sim folds': 0.87 of the paper's 17 %)")),
    pytest.param("pim_util neupims", 0.264, id="pim-neupims"),
])
def test_table4_utilizations(ours, metric: str, paper: float) -> None:
    """Table 4, GPT3-30B, batch 256, ShareGPT: NPU utilization 28.0 % (naive NPU+PIM) and 64.9 % (NeuPIMs), PIM
    17 % (§1.1) and 26.4 %, each within the headline's 20 % (ours / paper). Ours for NeuPIMs is its overlapped
    schedule's: at this point SBI, whose sub-batches of 128 re-stream every weight, is slower, so NeuPIMs does not
    run it (`schedule.only_when_faster`; it had run it from the batch alone, NPU 0.449 and PIM 0.208, strict xfails
    then)."""
    assert abs(ours[metric] / paper - 1) < RATIO_TOL


def test_utilizations_rise_from_naive_to_neupims(ours) -> None:
    """Issue 6 and Table 4: NPU utilization rises from about 28 % to about 65 % and PIM from about 17 % to about
    26 % when NeuPIMs replaces naive NPU+PIM (GPT3-30B, batch 256, ShareGPT). In ours NeuPIMs runs overlapped here
    (SBI is slower, `schedule.only_when_faster`): the same MACs and PIM commands in a shorter iteration (its
    softmax beside the GEMVs and greedy channels), so both rise; when it ran SBI from the batch alone both fell (a
    strict xfail then)."""
    assert ours["npu_util neupims"] > ours["npu_util npu+pim"]
    assert ours["pim_util neupims"] > ours["pim_util npu+pim"]


def _gain(ablation, mechanism: str, batch: int) -> float:
    return next(r["gain"] for r in ablation if r["mechanism"] == mechanism and r["batch"] == batch)


@pytest.mark.parametrize("batch", [64, 128])
def test_sbi_loses_at_small_batch(ablation, batch: int) -> None:
    """Fig. 13, GPT3-7B ShareGPT: sub-batch interleaving hurts at small batch."""
    assert _gain(ablation, "SBI", batch) < 1


@pytest.mark.parametrize("batch", [
    pytest.param(256, marks=pytest.mark.xfail(strict=True, raises=AssertionError,
                                              reason="sub-batches of 128 are weight-bandwidth bound "
                                                     "(the arrays' ridge is 256 tokens), so SBI "
                                                     "doubles GEMM time; ours pays off from 384")),
    384, 512])
def test_sbi_wins_at_large_batch(ablation, batch: int) -> None:
    """Fig. 13 and the artifact's README: SBI wins at batch >= 256."""
    assert _gain(ablation, "SBI", batch) > 1


def test_dual_row_buffers_gain(ablation) -> None:
    """Fig. 13: dual row buffers +69.7 % on average (ours: geometric mean over batches 64..512, leave-one-out, see
    `neupims_reproduce.ablation`), within 20 %. Without SBI a second row buffer has only the softmax to overlap,
    so it gains less there at every batch."""
    assert abs(neupims_reproduce.average_gain(ablation, "dual row buffers") / 1.697 - 1) < RATIO_TOL
    for batch in neupims_reproduce.BATCHES:
        assert 1 <= _gain(ablation, "dual row buffers, no SBI", batch) < _gain(ablation, "dual row buffers", batch)


@pytest.mark.parametrize("batch", [
    pytest.param(64, marks=pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason="greedy balances channel totals, so at batch 64 some channels hold three requests and some one, "
               "where round-robin gives each two; Algorithm 3 puts two of a three-request channel in one sub-batch, "
               "and SBI's stages wait on each sub-batch's longest channel: gain 0.99998 since the tiles' G_ACTs are "
               "tRRD_S apart (1.0 before; 0.99998 too with the command model as greedy's load; without SBI greedy "
               "gains 1.083 at this batch)")),
    128, 256, 384, 512])
def test_greedy_channels_always_help(ablation, batch: int) -> None:
    """Fig. 13: GMLBP always helps."""
    assert [r["batch"] for r in ablation if r["mechanism"] == "GMLBP"] == list(neupims_reproduce.BATCHES)
    assert _gain(ablation, "GMLBP", batch) >= 1


def test_energy_per_token_neupims_over_npu_only(ours) -> None:
    """§1.3: NeuPIMs draws 1.8x NPU-only's power at 2.4x the speed, -25 % energy per token. Ours (per-action
    energies of pim.md §5, dynamic energy only) saves what moving the K/V reads into the banks saves (0.55 instead
    of 3.59 pJ/bit), less on Alpaca's short contexts."""
    assert ours["energy neupims/npu-only"] < 1
    assert abs(ours["energy neupims/npu-only"] / 0.75 - 1) < RATIO_TOL


# ------------------------------------------------------------------------------------------------ attribution
def _phases(mode: str, model: str, changes: dict | None = None, batch: int = 256):
    contexts = neupims_reproduce.sample_contexts((0, 0, batch, 0), batch, "sharegpt")
    return layer_phases(neupims.system(mode, model, changes), contexts)


def _timing(phases) -> tuple:
    """Everything a layer's time is made of (the placement's arrays left out)."""
    return phases.pre, phases.post, phases.attention_s, phases.mha_s, phases.stages_s, phases.total


# every weight stays on chip: the largest byte count a spec takes, on an NPU whose SRAM holds it (the spec refuses
# resident weights above devices.npu.sram_bytes)
ALL_WEIGHTS_RESIDENT = {"devices.npu.sram_bytes": MAX_NUMBER, "schedule.resident_weight_bytes": MAX_NUMBER}
SBI_FASTER_OR_NOT = {"schedule.only_when_faster": False}  # SBI from min_batch on, as the artifact runs it


def test_sbi_resident_weights_spare_the_second_sub_batch_its_weight_stream() -> None:
    """The second sub-batch streams (1 - resident / layer weights) of the layer's weights; its QKV phase still
    appends its new K and V. The first sub-batch is untouched; only an SBI schedule has the field."""
    model = neupims.system("neupims", "gpt3-30b")
    base = _phases("neupims", "gpt3-30b", SBI_FASTER_OR_NOT)
    kept_bytes = model.weight_bytes_per_layer / 4
    partial = _phases("neupims", "gpt3-30b", {**SBI_FASTER_OR_NOT, "schedule.resident_weight_bytes": kept_bytes})
    shared = _phases("neupims", "gpt3-30b", {**SBI_FASTER_OR_NOT, **ALL_WEIGHTS_RESIDENT})
    assert partial.post[0] == base.post[0] and partial.pre[0] == base.pre[0]
    assert partial.post[1].memory_s == pytest.approx(0.75 * base.post[1].memory_s, rel=1e-12)
    assert shared.post[1].memory_s == 0.0
    sub_batch_2 = int(np.sum(shared.placement.sub_batch == 1))
    layers, tp = model.workload.params["layers"], model.parallelism.tp
    kv_append_bytes = sub_batch_2 * model.kv_bytes_per_token / (layers * tp)
    assert shared.pre[1].memory_s == pytest.approx(kv_append_bytes / model.devices["npu"].bandwidth_bytes_per_s,
                                                   rel=1e-12)
    assert shared.layer_s < base.layer_s
    with pytest.raises(SpecError, match="schedule"):
        neupims.configure("neupims-no-sbi", {"schedule.resident_weight_bytes": 1.0})
    with pytest.raises(SpecError, match=r"schedule\.resident_weight_bytes"):
        neupims.configure("neupims", {"schedule.resident_weight_bytes": -1.0})


def test_a_block_that_fits_in_sram_is_fully_reused() -> None:
    """GPT3-7B TP4: a layer's QKV, projection and FFN weights (~100 MB) fit in the NPU's 128 MiB SRAM."""
    sram = NPUSpec().sram_bytes
    assert neupims.system("neupims", "gpt3-7b").weight_bytes_per_layer < sram
    assert (_timing(_phases("neupims", "gpt3-7b", {"schedule.resident_weight_bytes": sram}))
            == _timing(_phases("neupims", "gpt3-7b", ALL_WEIGHTS_RESIDENT)))


def test_algorithm1_timing_times_the_gemvs_by_the_artifact_estimate() -> None:
    pim = replace(PIM, gemv_timing="algorithm1")
    lengths = np.array([1, 31, 32, 33, 511, 512, 513, 2048])
    logits, attend = pim_model.gemv_parts_cycles(pim, lengths, 8, 128)
    assert np.array_equal(logits + attend, pim_model.algorithm1_cycles(PIM, lengths, 8, 128))
    logits, attend = pim_model.gemv_parts_cycles(PIM, lengths, 8, 128)  # the default: the command model
    assert np.array_equal(logits, pim_model.logits_cycles(PIM, lengths, 8, 128))
    assert np.array_equal(attend, pim_model.attend_cycles(PIM, lengths, 8, 128))
    with pytest.raises(ValueError, match="gemv_timing"):
        pim_model.PIMSpec(gemv_timing="fast")


def test_attribution_reruns_the_reproduction_per_variant() -> None:
    """The 'ours' variant is the default reproduction; every variant gives every headline metric."""
    scope = {"models": ("gpt3-7b", "gpt3-30b"), "batches": (256,), "samples": 2}
    rows = neupims_reproduce.attribution(**scope)
    names = [v.name for v in neupims_reproduce.VARIANTS]
    assert [r["variant"] for r in rows] == [n for n in names for _ in neupims_reproduce.PAPER]
    default = neupims_reproduce.summary(neupims_reproduce.reproduce(**scope))
    assert {r["metric"]: r["ours"] for r in rows if r["variant"] == "ours"} == default
    assert all(r["ratio"] == r["ours"] / r["paper"] for r in rows)
    by = {(r["variant"], r["metric"]): r["ours"] for r in rows}
    # shared SBI weights change only what sub-batch interleaving runs: the blocked modes' ratio stays
    assert by[("SBI shares weights", "npu+pim/npu-only")] == by[("ours", "npu+pim/npu-only")]
    assert by[("SBI shares weights", "neupims/npu+pim")] > by[("ours", "neupims/npu+pim")]


def test_explain_names_the_variant_that_moves_a_gap_furthest_toward_the_paper() -> None:
    variants = (neupims_reproduce.Variant("ours", "default"),
                neupims_reproduce.Variant("a", "one change", "why a", npu={"fold_timing": "scale-sim"}),
                neupims_reproduce.Variant("b", "another", "why b", pim={"gemv_timing": "algorithm1"}),
                neupims_reproduce.Variant("a+b", "both", npu={"fold_timing": "scale-sim"},
                                          pim={"gemv_timing": "algorithm1"}))
    ratios = {"m1": (0.5, 0.7, 0.6, 1.0), "m2": (1.1, 0.5, 2.0, 0.5), "m3": (1.6, 2.0, 1.7, 1.0)}
    rows = [{"variant": v.name, "metric": m, "ratio": r} for m, rs in ratios.items()
            for v, r in zip(variants, rs, strict=True)]
    lines = neupims_reproduce.explain(rows, 0.2, variants)
    assert len(lines) == 2  # m2 is within 20 %
    assert "m1" in lines[0] and "under 'a'" in lines[0] and "why a" in lines[0]  # a+b changes two things
    assert "m3" in lines[1] and "no single variant" in lines[1]


def test_scale_sim_fold_timing_pays_preload_fill_and_drain_per_fold() -> None:
    """SCALE-Sim's weight-stationary fold (Samajdar et al. 2018): 2·S_R + S_C + T - 2 cycles, T input rows."""
    pipelined, scale_sim = NPUSpec(), NPUSpec(fold_timing="scale-sim")
    assert npu_model.array_cycles(scale_sim, 3, 256) == 3 * (2 * 128 + 128 + 256 - 2)
    assert npu_model.array_cycles(pipelined, 3, 256) == 3 * 256 + 128 + 128 - 2
    assert npu_model.array_cycles(scale_sim, 0, 256) == 0
    with pytest.raises(ValueError, match="fold_timing"):
        NPUSpec(fold_timing="fast")


# ------------------------------------------------------------------------------------------------ artifact mode
# `reproduce(as_artifact=True)`: the artifact's own computation (neupims-artifact.md), named compatibility options.
# The issue's targets for it: headline ratios within 15 %, Table 4's utilizations within 25 % (relative).
ARTIFACT_RATIO_TOL, ARTIFACT_UTIL_TOL = 0.15, 0.25


@pytest.fixture(scope="module")
def artifact():
    return neupims_reproduce.summary(neupims_reproduce.reproduce(as_artifact=True))


def test_fused_mha_matches_the_artifacts_measured_cycles() -> None:
    """§4.1 formula (255 + s/8) + softmax + 8 + 271 ceil((s + 127) / 128) per (request, head): 1,108 cycles + softmax
    at s = 256, 821 + softmax at s = 128; the artifact's CAL runs (§8) measured 1,121 and 826 (E1k, 32 requests)."""
    npu = NPUSpec()
    assert npu_model.fused_mha_cycles(npu, 256, 128, 0.0) == 255 + 32 + 8 + 3 * 271
    assert npu_model.fused_mha_cycles(npu, 128, 128, 0.0) == 255 + 16 + 8 + 2 * 271
    model = neupims.system("npu-only", "gpt3-7b", {"devices.npu.attention_timing": "artifact-fused-mha"})
    for seq, measured in ((256, 8966), (128, 6612)):  # per request, 8 heads
        per_request_s = layer_phases(model, np.full(32, float(seq))).attention.time_s / 32
        assert per_request_s * 1e9 == pytest.approx(measured, rel=0.02)
    # the default reads K and V at the bandwidth: ~8x faster at s = 256
    default = layer_phases(neupims.system("npu-only", "gpt3-7b"), np.full(32, 256.0)).attention.time_s / 32
    assert 1e9 * default < 8966 / 5


def test_artifact_gemm_tiles() -> None:
    """§1.2-§1.3, per (batch tile, k tile) of M = N/128 weight tiles: main 128 + 16 (M - 1), npu-only 16 M + 255.
    GPT-3 7B TP4's QKV (4096 x 3072) at batch 512: 4 batch tiles x 32 k tiles x 496 cycles; weights (25.2 MB) stream
    beside the first batch tile only."""
    main, serial = NPUSpec(fold_timing="artifact"), NPUSpec(fold_timing="artifact-serial-preload")
    assert npu_model.artifact_k_tile_cycles(main, 24) == 496 and npu_model.artifact_k_tile_cycles(serial, 24) == 639
    bandwidth = 1.024e12
    gemm = npu_model.gemm_time(main, 512, 4096, 3072, bandwidth)
    tile_s, stream_s = 32 * 496e-9, 4096 * 3072 * 2 / bandwidth
    assert gemm.array_s == pytest.approx(4 * tile_s) and gemm.memory_s == pytest.approx(stream_s)
    assert gemm.time_s == pytest.approx(max(tile_s, stream_s) + 3 * tile_s)
    small = npu_model.gemm_time(serial, 32, 4096, 3072, bandwidth)  # one batch tile: bound by the weight stream
    assert small.time_s == pytest.approx(stream_s)


def test_newton_command_count() -> None:
    """§4.2, E/tp = 1024, dk = 128: logits 2 + 2 ceil(s/32) (1 + 4 (8 + 1)), attend per 512-token chunk
    8 (1 + 4 (ceil(chunk/16) + 2)); s = 300: 742 + 680 commands."""
    logits, attend = pim_model.newton_commands(PIM, np.array([300, 1000]), 8, 128)
    assert logits.tolist() == [2 + 2 * 10 * 37, 2 + 2 * 32 * 37]
    assert attend.tolist() == [8 * (1 + 4 * (19 + 2)), 8 * ((1 + 4 * (32 + 2)) + (1 + 4 * (31 + 2)))]


def test_naive_mha_is_issue_bound_with_a_barrier() -> None:
    """One command per cycle for the whole device: each GEMV phase takes at least the batch's command count in
    cycles; with the barrier, logits then attend, each the slower of its slowest channel and its issue."""
    contexts = neupims_reproduce.sample_contexts((0, 0, 256, 0), 256, "sharegpt")
    model = neupims.system("npu+pim", "gpt3-7b", {"devices.pim.command_issue": "one-per-cycle",
                                                  "schedule.attention_sync": "barrier"})
    phases = layer_phases(model, contexts)
    logits, attend = pim_model.newton_commands(PIM, contexts, 8, 128)
    placement = phases.placement
    slowest_logits = pim_model.channel_loads(placement.logits_s, placement.channel, PIM.channels).max()
    slowest_attend = pim_model.channel_loads(placement.request_s - placement.logits_s, placement.channel,
                                             PIM.channels).max()
    expected = max(slowest_logits, logits.sum() / 1e9) + max(slowest_attend, attend.sum() / 1e9)
    assert phases.attention_s[0] == pytest.approx(expected)
    assert phases.mha_s[0] == pytest.approx(expected + phases.softmax_s[0])
    default = layer_phases(neupims.system("npu+pim", "gpt3-7b"), contexts)
    assert default.attention_s[0] == pytest.approx(placement.loads_s().max())
    assert default.attention_s[0] < phases.attention_s[0]


def test_steady_state_layers_are_c_plus_d() -> None:
    model = neupims.system("neupims", "gpt3-7b", {"schedule.layer_time": "steady-state"})
    contexts = neupims_reproduce.sample_contexts((0, 0, 512, 0), 512, "sharegpt")
    phases = layer_phases(model, contexts)
    a, b, c, d, e, f = phases.stages_s
    assert phases.device_s(32) == pytest.approx(32 * (c + d))
    pipeline = layer_phases(neupims.system("neupims", "gpt3-7b"), contexts)
    assert pipeline.device_s(32) == pytest.approx(a + b + 31 * (c + d) + e + f)


def test_artifact_fields_are_validated_spec_fields() -> None:
    with pytest.raises(SpecError, match=r"schedule\.attention_sync"):
        neupims.configure("npu+pim", {"schedule.attention_sync": "sometimes"})
    with pytest.raises(SpecError, match="schedule"):
        neupims.configure("neupims", {"schedule.attention_sync": "barrier"})  # a blocked schedule's field
    with pytest.raises(SpecError, match=r"schedule\.layer_time"):
        neupims.configure("neupims", {"schedule.layer_time": "one"})
    with pytest.raises(SpecError, match=r"devices\.npu\.attention_timing"):
        neupims.configure("npu-only", {"devices.npu.attention_timing": "fast"})
    with pytest.raises(SpecError, match=r"devices\.pim\.command_issue"):
        neupims.configure("npu+pim", {"devices.pim.command_issue": "two"})


def test_artifact_options_leave_the_default_alone() -> None:
    """Each option changes only the modes it names; with none, reproduce is the default."""
    scope = {"models": ("gpt3-7b",), "batches": (256,), "samples": 2}
    assert neupims_reproduce.reproduce(**scope) == neupims_reproduce.reproduce(**scope, options=())
    fused = next(o for o in neupims_reproduce.ARTIFACT_OPTIONS if o.name == "fused MHA")
    one = {(r["mode"], r["dataset"]): r for r in neupims_reproduce.reproduce(**scope, options=(fused,))}
    base = {(r["mode"], r["dataset"]): r for r in neupims_reproduce.reproduce(**scope)}
    assert all(one[k] == base[k] for k in base if k[0] != "npu-only")
    assert all(one[k]["throughput_tok_s"] < base[k]["throughput_tok_s"] for k in base if k[0] == "npu-only")


def test_artifact_attribution_rows() -> None:
    scope = {"models": ("gpt3-7b", "gpt3-30b"), "batches": (256,), "samples": 2}
    rows = neupims_reproduce.artifact_attribution(**scope)
    names = ["default", "artifact", *(f"artifact without {o.name}" for o in neupims_reproduce.ARTIFACT_OPTIONS)]
    assert list(dict.fromkeys(r["variant"] for r in rows)) == names
    artifact = neupims_reproduce.summary(neupims_reproduce.reproduce(**scope, as_artifact=True))
    assert {r["metric"]: r["ours"] for r in rows if r["variant"] == "artifact"} == artifact
    lines = neupims_reproduce.explain_artifact(rows)
    assert len(lines) == len(neupims_reproduce.PAPER)
    assert any("neupims/npu-only" in line and "without fused MHA" in line for line in lines)
    gaps = neupims_reproduce.artifact_gaps(rows)  # the reasons quote these rows' numbers
    assert set(gaps) == set(neupims_reproduce.ARTIFACT_GAPS) and not any("<" in why for why in gaps.values())
    assert f"ours {artifact['neupims/npu-only']:.1f}x over the paper's grid" in gaps["neupims/npu-only"]


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(neupims_reproduce.ARTIFACT_GAPS["neupims/npu-only"]))
def test_artifact_neupims_over_npu_only(artifact) -> None:
    assert abs(artifact["neupims/npu-only"] / 2.4 - 1) < ARTIFACT_RATIO_TOL


def test_artifact_neupims_over_naive_npu_pim(artifact) -> None:
    assert abs(artifact["neupims/npu+pim"] / 1.6 - 1) < ARTIFACT_RATIO_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(neupims_reproduce.ARTIFACT_GAPS["neupims/gpu"]))
def test_artifact_neupims_over_gpu(artifact) -> None:
    assert abs(artifact["neupims/gpu"] / 3.0 - 1) < ARTIFACT_RATIO_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=str(neupims_reproduce.ARTIFACT_GAPS["npu+pim/npu-only"]))
def test_artifact_naive_npu_pim_over_npu_only(artifact) -> None:
    assert abs(artifact["npu+pim/npu-only"] / 1.5 - 1) < ARTIFACT_RATIO_TOL


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason=str(neupims_reproduce.ARTIFACT_GAPS["energy neupims/npu-only"]))
def test_artifact_energy_over_npu_only(artifact) -> None:
    assert abs(artifact["energy neupims/npu-only"] / 0.75 - 1) < ARTIFACT_RATIO_TOL


@pytest.mark.parametrize(("metric", "paper"), [("npu_util npu+pim", 0.28), ("npu_util neupims", 0.649),
                                               ("pim_util npu+pim", 0.17), ("pim_util neupims", 0.264)])
def test_artifact_table4_utilizations(artifact, metric: str, paper: float) -> None:
    """Table 4 (GPT3-30B, batch 256, ShareGPT) with the artifact's busy-time counters."""
    assert abs(artifact[metric] / paper - 1) < ARTIFACT_UTIL_TOL


def test_longest_first_split_gives_each_channels_longer_half_to_the_first_sub_batch() -> None:
    """§4.3, §6: the artifact halves each channel's requests by count in the trace's order, which the clb traces
    keep near-sorted longest first: on clb-0 sub-batch 1 holds 112,306 tokens and sub-batch 2 41,242."""
    contexts = neupims_reproduce.sample_contexts((0, 0, 512, 0), 512, "sharegpt")
    device = neupims.system("neupims", "gpt3-7b").devices["pim"]
    model = neupims.system("neupims", "gpt3-7b")
    ops = [model.attention("decode", int(c)) for c in contexts]
    arrival, longest = device.placement(ops), device.placement(ops, "longest-first")
    assert np.array_equal(arrival.channel, longest.channel)
    for ch in range(PIM.channels):
        mine = contexts[longest.channel == ch]
        first, second = mine[longest.sub_batch[longest.channel == ch] == 0], mine[
            longest.sub_batch[longest.channel == ch] == 1]
        assert abs(len(first) - len(second)) <= 1
        if len(first) and len(second):
            assert first.min() >= second.max()
    tokens = [contexts[longest.sub_batch == sb].sum() for sb in (0, 1)]
    assert tokens[0] > 1.5 * tokens[1]
    with pytest.raises(SpecError, match=r"schedule\.split"):
        neupims.configure("neupims", {"schedule.split": "random"})
