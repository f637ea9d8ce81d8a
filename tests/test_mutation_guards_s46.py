"""Guards for the mutants of session 46's diff that no test told apart (mutation run at 93a0e87), written against the
code as refactored since (07454b5). Each test names the mutant it kills; its expected values follow from the rule the
code's docstring states (derived here), not from the model's output alone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from archsim import library
from archsim.dse.serving_spec import ServingSettings, serving_settings
from archsim.dse.system_points import serving_config, system_config
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection, neupims, sparse_prefill
from archsim.systems.coprocessing import tokens_per_expert
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.links import load_link
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.serving import BATCHING, DEFAULT_BATCHING, ServingConfig
from archsim.systems.step import DENSE, MOE, Step, experts_reached, lm_head_op, non_attention_kinds, rounded_experts
from archsim.systems.system_model import _decoder_layers_s, layer_phases
from archsim.systems.system_spec import load_system
from archsim.systems.topology import load_topology

H200 = load_gpu("h200-sxm")
HGX = load_topology("hgx-h100")  # 8 H100s a node over NVLink 4, the nodes over one NIC per GPU
NVLINK4 = load_link("nvlink4-h100")
BF16_BYTES = 2


# --- S1: no tokens reach no expert ----------------------------------------------------------------------------------


def test_no_tokens_reach_no_expert() -> None:
    """S1 (experts_reached's tokens <= 0 returning top_k) and its twin in rounded_experts: a step without tokens
    reads no expert, and +PE's split of no pairs gives every expert 0 tokens, uniform or Zipf."""
    assert experts_reached(0, 2, 8) == 0
    assert rounded_experts(0.0, 0, 2, 8) == 0
    assert tokens_per_expert(0, 2, 8, 0.0) == [0] * 8
    assert tokens_per_expert(0, 2, 8, 1.5) == [0] * 8


# --- C1/C2: an EP group holding fewer experts than top_k --------------------------------------------------------------


@pytest.mark.parametrize(("tokens", "top_k", "experts", "expected"),
                         [(3, 2, 1, [6]),  # one expert takes both picks of each of 3 tokens: 6 pairs
                          (1, 8, 3, [3, 3, 2]),  # 8 pairs over 3 experts: 8 / 3 = 2 rem 2, the first two one more
                          (5, 8, 4, [10, 10, 10, 10])])  # 40 pairs over 4: 10 each
@pytest.mark.parametrize("skew", [0.0, 1.0])
def test_fewer_experts_than_top_k_take_all_the_pairs(tokens: int, top_k: int, experts: int, expected: list[int],
                                                     skew: float) -> None:
    """C1 (k = top_k, not min(top_k, E)) and C2 (seen = pairs // k, not rounded up): with E < top_k every token
    reaches every expert, so the E experts share the tokens x top_k pairs as evenly as whole tokens go (the larger
    remainders to the lower index), at any skew, and the counts sum to the pairs."""
    counts = tokens_per_expert(tokens, top_k, experts, skew)
    assert counts == expected
    assert sum(counts) == tokens * top_k


# --- C10: Zipf apportioning holds every expert over its cap at once -------------------------------------------------


def test_zipf_three_tokens_top_4_of_8_at_skew_3() -> None:
    """C10 (`left -= cap`, not cap x the experts held at it). By the docstring's rule, derived by hand:
    weights 1/(i+1)^3; picks k w_i / sum w held at 1: expert 0 (3.35), then 1 (1.93), then 2 (1.07) each over 1 in
    turn, the rest (k - 3 = 1 left) 0.486, 0.249, 0.144, 0.091, 0.061. seen = ceil(12 / 4) = 3; reach 1 - (1 - p)^3:
    1, 1, 1, 0.865, 0.576, 0.373, 0.248, 0.171, sum 5.23 -> 5 experts reached. Extra weights seen p / r - 1: 2, 2, 2,
    0.688, 0.296; 12 - 5 = 7 extra pairs over them, at most seen - 1 = 2 each: the first three (7 / 6.98 x 2 > 2)
    all held at 2 at once, 7 - 6 = 1 left over 0.688 : 0.296 -> 0.699, 0.301, floors 2, 2, 2, 0, 0 and the one
    remaining unit to the largest remainder (expert 3): 3, 3, 3, 2, 1, 0, 0, 0."""
    assert tokens_per_expert(3, 4, 8, 3.0) == [3, 3, 3, 2, 1, 0, 0, 0]


@pytest.mark.parametrize(("tokens", "skew"), [(3, 3.0), (8, 1.5), (512, 1.5), (13, 2.0), (100, 3.0)])
def test_zipf_counts_are_the_pairs_at_most_a_token_each(tokens: int, skew: float) -> None:
    """C10: whatever the skew, whole tokens summing to the tokens x top_k pairs, no expert getting one token twice
    (at most `tokens` each), the more popular expert never fewer."""
    counts = tokens_per_expert(tokens, 4, 8, skew)
    assert sum(counts) == tokens * 4
    assert max(counts) <= tokens
    assert counts == sorted(counts, reverse=True)


# --- M4: a PP stage's layers counted once per stage holding that many -------------------------------------------------


def test_decoder_layers_sum_over_uneven_pp_stages() -> None:
    """M4 (`stages *` dropped): GPT-3 7B's 32 layers over PP 3 are stages of 11, 11 and 10 layers, run one after
    another, each with its own SBI fill and drain: 2 x device_s(11) + device_s(10), and an expert exchange after
    each of the 32 layers."""
    model = neupims.system("neupims", "gpt3-7b", {"parallelism.by_workload.gpt3-7b.pp": 3})
    (runs,) = model.stage_runs.values()
    assert runs == ((11, 2), (10, 1))
    phases = layer_phases(model, (2048,) * 256)
    assert phases.sub_batch_interleaving  # fill and drain per stage: device_s is not linear in the layers
    expected = 2 * phases.device_s(11) + phases.device_s(10)
    assert _decoder_layers_s(runs, phases) == pytest.approx(expected, rel=1e-12)
    exchange_s = 1e-5
    assert _decoder_layers_s(runs, phases, exchange_s) == pytest.approx(expected + 32 * exchange_s, rel=1e-12)


# --- T1: only_when_faster defaults to false ------------------------------------------------------------------------


def test_only_when_faster_is_false_when_not_given(tmp_path: Path) -> None:
    """T1 (Schedule.only_when_faster defaulting to True): the neupims preset without its `only_when_faster: true`
    switches SBI on from min_batch alone, so GPT-3 175B's 256 decodes of 80 tokens run SBI (where it loses, and
    the preset itself runs them overlapped)."""
    preset = Path(library.__file__).parents[1] / "systems" / "system_presets" / "neupims.yaml"
    lines = preset.read_text().splitlines()
    kept = [line for line in lines if not line.strip().startswith("only_when_faster:")]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "neupims.yaml"
    path.write_text("\n".join(kept) + "\n")
    system = load_system(str(path))
    assert system.schedule.only_when_faster is False
    contexts = (80,) * 256
    assert layer_phases(neupims.system(system, "gpt3-175b"), contexts).sub_batch_interleaving
    assert not layer_phases(neupims.system("neupims", "gpt3-175b"), contexts).sub_batch_interleaving


# --- Q7: Megatron-SP's decode combines one token -------------------------------------------------------------------


def test_megatron_sp_decode_combines_one_token() -> None:
    """Q7 (the decode's combine over 2 tokens): head-parallel decode over 2 GPUs of a node (tp 1) all-gathers and
    reduce-scatters the one new token's bf16 hidden vector n = h x 2 bytes: one ring all-reduce's bytes, 2 (P - 1)
    steps of n / P over NVLink 4 (`collectives.all_reduce_s`), alpha + (n / 2) / beta each."""
    llama70 = library.load_workload_spec("llama3-70b")
    n = int(llama70.params["hidden"]) * BF16_BYTES
    timing = parallel_time(ParallelSpec("megatron-sp", 2, llama70, 32768, HGX.gpu, HGX, tp=1, direction="decode"))
    expected = 2 * (2 - 1) * (NVLINK4.latency_s + (n / 2) / NVLINK4.bytes_per_s_per_direction)
    assert timing.comm_s == pytest.approx(expected, rel=1e-12)


# --- T2: a one-device group is named by the innermost link ---------------------------------------------------------


def test_a_one_device_group_is_the_innermost_link() -> None:
    """T2 (a group of one device on a topology with levels had no link): it moves nothing, and is named by the
    innermost level's link, NVLink 4 on hgx-h100, not the NIC."""
    link = HGX.group_link([0])
    assert link is not None and link.name == "nvlink4-h100"
    assert HGX.group_link([3]).name == "nvlink4-h100"


# --- K2 (and F2's successor): mixed layers weighed by their counts ----------------------------------------------------

ALL_MOE = library.load_workload_spec("mixtral-8x7b")
DENSE_MODEL = replace(ALL_MOE, name="mixtral-8x7b-dense",
                      params={k: v for k, v in ALL_MOE.params.items() if k not in ("experts", "top_k")})
# every 4th layer MoE: 24 dense layers (DENSE_MODEL's) and 8 MoE layers (ALL_MOE's), the same attention and LM head
QUARTER = replace(ALL_MOE, name="mixtral-8x7b-quarter",
                  params={**ALL_MOE.params, "moe_every": 4, "dense_ffn_dim": 14336})
CONTEXT = 32768


def _three_to_one(f) -> float:
    """What a time summed over QUARTER's layers is by counting alone: 24 layers of DENSE_MODEL's and 8 of ALL_MOE's,
    the rest shared, so (3 x dense + 1 x all-MoE) / 4."""
    return (3 * f(DENSE_MODEL) + f(ALL_MOE)) / 4


def test_a_three_to_one_mix_has_24_dense_and_8_moe_layers() -> None:
    kinds = {kind: count for kind, _, count in non_attention_kinds(QUARTER, Step("decode", 1, 1))}
    assert kinds == {DENSE: 24, MOE: 8}


def test_quest_decode_weighs_the_kinds_by_their_counts() -> None:
    """K2 (each kind weighed layers / kinds, 16 and 16, not 24 and 8): with a 3:1 mix the halves' mean is not
    the count-weighted mean."""
    def decode_s(workload):
        return kv_selection.quest_decode(workload, H200, CONTEXT, 2048).time_s

    assert decode_s(ALL_MOE) > 1.2 * decode_s(DENSE_MODEL)  # the kinds differ, so the weights show
    assert decode_s(QUARTER) == pytest.approx(_three_to_one(decode_s), rel=1e-9)


def test_sparse_prefill_weighs_the_kinds_by_their_counts() -> None:
    """F2's successor: `sparse_prefill.dense_ops_s` lost its kind, and the eager cost (`_eager_ops_s`) takes each
    kind's own ops from `step.layers_time_s`; a kind dropped there (every layer costed as MoE) or the kinds weighed
    evenly changes this 3:1 mix's layer ops."""
    def ops_s(workload):
        return sparse_prefill.model_ops_s(workload, H200, CONTEXT)

    assert ops_s(ALL_MOE) > 1.2 * ops_s(DENSE_MODEL)
    assert ops_s(QUARTER) == pytest.approx(_three_to_one(ops_s), rel=1e-9)


# --- F3: a prefill's other ops include the LM head ------------------------------------------------------------------


def test_model_ops_include_the_lm_head() -> None:
    """F3 (the LM head dropped from model_ops_s): Llama-3-8B's 32 layers' other ops over a 32K prompt, and the LM
    head over its last token: at least its vocab x hidden bf16 weights read at the H200's DRAM bandwidth."""
    workload = library.load_workload_spec("llama3-8b")
    assert int(workload.params["layers"]) == 32 and "experts" not in workload.params
    head_s = sparse_prefill.model_ops_s(workload, H200, CONTEXT) - 32 * sparse_prefill.dense_ops_s(workload, H200,
                                                                                                      CONTEXT)
    weights = workload.params["vocab"] * workload.params["hidden"] * BF16_BYTES
    assert head_s >= weights / H200.dram_bytes_per_s
    device = calibrated_gpu_device(H200, sparse_prefill.DENSE_KERNEL)
    assert head_s == pytest.approx(device.cost([lm_head_op(workload, 1)]).time_s, rel=1e-6)


# --- B7/B13/B11: a serving block without `batching` is mixed, and its key says nothing new -------------------------

BLOCK = {"rate_per_s": 2.0, "requests": 4, "lengths": "sharegpt", "seed": 0, "max_batch": 8}


def test_a_serving_block_without_batching_is_mixed() -> None:
    """B7 (serving_settings' default prefill-first) and B13 (ServingSettings' default): Orca's mixed batching, as
    `simulate` without --batching."""
    assert DEFAULT_BATCHING == "mixed" and BATCHING["mixed"] is True
    assert ServingConfig().mix_prefill_decode is True
    read = serving_settings(dict(BLOCK), "<test>", {})
    built = ServingSettings(2.0, 4, "sharegpt", 0, 8)
    for settings in (read, built):
        assert settings.batching == "mixed"
        assert serving_config(settings, {}).mix_prefill_decode is True
    assert serving_config(read, {"serving.batching": "prefill-first"}).mix_prefill_decode is False


def test_a_mixed_point_key_has_no_batching_entry() -> None:
    """B11 (the batching always in the key): a mixed point's serving entry is the one points swept before the
    batching was a knob hold (so their records stand); a prefill-first point's names it."""
    system = load_system("vllm-h100")
    workload = library.load_workload_spec("llama3-8b")
    settings = serving_settings(dict(BLOCK), "<test>", {})
    before = {"rate_per_s": 2.0, "requests": 4, "lengths": "sharegpt", "seed": 0, "max_batch": 8,
              "max_prefill_tokens": None}
    mixed = system_config(system, workload, settings, {}, ())
    assert mixed["serving"] == before
    named = system_config(system, workload, settings, {"serving.batching": "mixed"}, ())
    assert named["serving"] == before
    first = system_config(system, workload, settings, {"serving.batching": "prefill-first"}, ())
    assert first["serving"] == {**before, "batching": "prefill-first"}
