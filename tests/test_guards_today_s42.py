"""Guards for the mutants the audit of s42's changes left alive (helper-507): each test pins a boundary or a branch
that changes a printed number or a refusal.

- A group spills while its overflow is at most its spillable tiles, and is refused one byte beyond
  (`analytical._fit`).
- The token-weighted percentile (`serving.percentile`) and the watermark's waiver on an empty cache.
- A device whose preset changes without a price is unpriced even when its spec gave none (`repriced_devices`), and a
  sweep that sweeps the price beside the preset is accepted.
- A linked axis's values once each; the size limit's bound itself; a bank-PIM's word widths; a memory-pool's.
- A tie broken by the axes in name order, whatever the frame's column order."""

from __future__ import annotations

import math

import click
import pandas as pd
import pytest
import yaml

from archsim.commands.options import Size
from archsim.dse.pareto import best_label
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.point import prepare
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.pim import PIMSpec, word_problem
from archsim.systems.requests import Request
from archsim.systems.serving import ServingConfig, percentile, simulate_serving
from archsim.systems.system_checks import _word_problem
from archsim.systems.system_spec import load_system, with_fields


# ------------------------------------------------------------------------------ a spill at the capacity's bound
def test_a_group_spills_up_to_its_spillable_tiles_and_is_refused_beyond() -> None:
    """FLAT at 4096 tokens keeps one head's 4096 x 4096 fp16 score block (33,554,432 B, spillable to DRAM) beside
    its other tiles in the global buffer. With room for the other tiles only, the block's overflow is exactly what
    can spill: feasible, QK read and written through DRAM. One byte less, and the other tiles do not fit: refused."""
    p = prepare("flat", workload="bert-base", sets={"seq_len": 4096})
    footprint = evaluate(p.binding, p.analysis, p.arch, p.mapping).footprint_bytes["GlobalBuffer"]
    others = footprint - 4096 * 4096 * 2

    def at(capacity: float):
        arch = p.arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": capacity})
        return evaluate(p.binding, p.analysis, arch, p.mapping)

    spilled = at(others)
    assert spilled.feasible and spilled.traffic_bytes["DRAM"]["QK"] > 0
    refused = at(others - 1)
    assert not refused.feasible and "over its capacity" in refused.reason


# ------------------------------------------------------------------------------------------------ served runs
def test_a_weighted_percentile_counts_each_value_its_weight_times() -> None:
    """Iterations of 1, 2 and 3 s emitting 1, 1 and 8 tokens: 8 of the 10 tokens waited 3 s, so the token p50 is
    3 s (the smallest time whose tokens reach half); unweighted, numpy's linear p50 is the middle time, 2 s."""
    assert percentile([1.0, 2.0, 3.0], 50, [1, 1, 8]) == 3.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 10, [1, 1, 8]) == 1.0
    assert math.isnan(percentile([], 50, []))


class _Toy:
    """An IterationModel of one KV byte per token, 1 s per iteration."""

    name, kv_bytes_per_token, static_w = "toy", 1.0, 0.0

    def __init__(self, kv_capacity_bytes: float) -> None:
        self.kv_capacity_bytes = kv_capacity_bytes

    def iteration(self, batch: Batch) -> IterationCost:
        return IterationCost(1.0, energy_j=1.0, busy_s={})


def test_the_watermark_is_waived_on_an_empty_cache() -> None:
    """100 one-token pages, watermark 1.9 % (1 page): a 100-token prompt fills the cache, which the watermark
    would forbid; on an empty cache it is waived, so any request that fits can start (vLLM's own check refuses it
    for good: archsim's stated departure, module docstring)."""
    result = simulate_serving(_Toy(100), [Request(0, 0.0, 100, 1)],
                              ServingConfig(page_tokens=1, watermark_fraction=0.019))
    assert not result.rejected_ids and result.requests[0].first_token_s == 1.0


# ------------------------------------------------------------------------------------------------------ prices
def test_a_new_preset_on_a_device_without_a_price_stays_unpriced() -> None:
    gpu = load_system("gpu")
    assert gpu.devices["gpu"].price_per_hour is None
    assert with_fields(gpu, {"devices.gpu.preset": "h200-sxm"}).devices["gpu"].price_per_hour is None


def test_a_sweep_of_presets_and_their_prices_is_accepted(tmp_path, invoke) -> None:
    """The refusal's own advice: sweep the price too."""
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({
        "name": "pools", "description": "d", "system": "lamina", "workload": "llama3-8b",
        "serving": {"requests": 4, "lengths": "azure-conv", "seed": 0, "max_batch": 16, "rate_per_s": 30},
        "axes": {"system.devices.memory.preset": ["h20", "h200-sxm"],
                 "system.devices.memory.price_per_hour": [4.63, 9.0]},
        "sampling": {"kind": "grid"}, "objectives": ["throughput_tok_s", "cost_per_token_usd"]}))
    code, out = invoke("check", str(path))
    assert code == 0, out


# --------------------------------------------------------------------------------------------- sweep and options
def test_a_linked_axis_value_given_twice_is_refused(tmp_path, invoke) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump({
        "name": "twice", "description": "d", "system": "lamina", "workload": "llama3-8b",
        "serving": {"requests": 4, "lengths": "azure-conv", "seed": 0, "max_batch": 16, "rate_per_s": 30},
        "axes": {"linked.mem": {"values": [2, 4, 2], "set": {"system.devices.memory.count": "mem",
                                                             "system.parallelism.attention_pool": "mem"}}},
        "sampling": {"kind": "grid"}, "objectives": ["throughput_tok_s", "latency_s"]}))
    code, out = invoke("check", str(path))
    assert code == 2 and "axes.linked.mem.values[2]: expected each value once" in out, out


@pytest.mark.parametrize(("batch", "accepted"), [("1000", True), ("1001", False)])
def test_the_size_limit_takes_the_limit_itself(monkeypatch, batch: str, accepted: bool) -> None:
    """A size option (`options.Size`: --max-batch, --batch) takes up to ARCHSIM_MAX_SIZE, the bound included."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "1000")
    option = click.Option(["--max-batch"], type=Size())
    if accepted:
        assert option.type.convert(batch, option, None) == 1000
        return
    with pytest.raises(SpecError, match="1001 is beyond the limit of 1000"):
        option.type.convert(batch, option, None)


# ------------------------------------------------------------------------------------------------------ widths
def test_a_bank_pim_computes_the_widths_that_divide_its_column() -> None:
    """NeuPIMs' COMP reads 16 MACs x 2 bytes = 32-byte columns: whole 1-, 2-, 4- and 8-byte words, not 3."""
    pim = PIMSpec()
    assert [w for w in range(1, 9) if word_problem(pim, w) is None] == [1, 2, 4, 8]


def test_a_memory_pool_is_checked_by_its_gpus_rule() -> None:
    """A memory-pool is a GPU: 4-byte words have no tensor-core path (its arrays' rule would take them)."""
    pool = load_system("lamina").devices["memory"]
    assert pool.kind == "memory-pool" and "no tensor-core rate for 4-byte words" in _word_problem(pool, 4)


# --------------------------------------------------------------------------------------------------------- ties
def test_a_tie_reads_the_axes_in_name_order_whatever_the_column_order() -> None:
    """Tied points differing on two axes: the one least on the axis first by name (arch.b before workload.a)."""
    rows = pd.DataFrame({"workload.a": [1, 2], "arch.b": [2, 1], "area_um2": [1.0, 1.0], "key": ["k1", "k2"]})
    assert rows.loc[best_label(rows, "area_um2"), "key"] == "k2"
