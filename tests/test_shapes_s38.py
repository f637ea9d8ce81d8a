"""Session 38's shape audit, `archsim sparse` (auditor's finding 1): a prefill point where neither side fits the GPU
has no time, so it has no part of one either: its `other_ops_s` (the layers' other ops, the same on both sides,
`Prefill.time_s` = other_ops_s + attention_s + kv_host_s) is NaN, null in `--json` (was: dense's other ops, 150.7 s
beside n/a at 1.9M tokens of Llama-3-8B on an 80 GiB A100).

Hand counts for Llama-3-8B on an 80 GiB A100 (tests/test_sparse_prefill_memory_s36.py): with the KV cache on the
host a prefill holds 16,060,514,304 B of weights and 4,096 + 32,768 B a token (one layer's K and V, the layer's
input, normed copy, Q and O) within 85,899,345,920 B: (85,899,345,920 - 16,060,514,304) / 36,864 = 1,894,499.56, so
1,894,499 tokens run and 1,900,000 do not.
"""

from __future__ import annotations

import json
import math

from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.systems.sparse_points import flex_point

LLAMA8 = library.load_workload_spec("llama3-8b")
A100 = load_gpu("a100-80gb-sxm4")
LONGEST_TOKENS = 1_894_499  # the hand count above


def test_a_prefill_neither_side_runs_has_no_other_ops_time() -> None:
    point = flex_point(LLAMA8, A100, 1_900_000, 0.1)
    assert not point["fits"] and not point["dense_fits"]
    assert math.isnan(point["time_s"]) and math.isnan(point["dense_time_s"])
    assert math.isnan(point["other_ops_s"])


def test_a_prefill_that_runs_keeps_its_other_ops_as_a_part_of_its_time() -> None:
    point = flex_point(LLAMA8, A100, LONGEST_TOKENS, 0.1)
    assert point["fits"] and point["dense_fits"]
    assert point["other_ops_s"] > 0
    assert point["time_s"] == point["other_ops_s"] + point["attention_s"] + point["kv_host_s"]


def test_sparse_json_gives_null_other_ops_where_neither_side_fits() -> None:
    result = CliRunner().invoke(main, ["sparse", "--method", "flexprefill", "--density", "0.1", "--gpu",
                                       "a100-80gb-sxm4", "-w", "llama3-8b", "--context", "1900000", "--json"])
    assert result.exit_code == 0, result.output
    point = json.loads(result.output)["points"][0]
    assert point["time_s"] is None and point["dense_time_s"] is None
    assert point["other_ops_s"] is None


def test_sparse_table_prints_na_other_ops_where_neither_side_fits() -> None:
    """The table's one `other ops` column is n/a where neither side has a time (was 150.703 beside n/a)."""
    result = CliRunner().invoke(main, ["sparse", "--method", "flexprefill", "--density", "0.1", "--gpu",
                                       "a100-80gb-sxm4", "-w", "llama3-8b", "--context", "1900000"])
    assert result.exit_code == 0, result.output
    row = result.output.splitlines()[-2].split()  # context, time, dense, speedup, attn, estimate, kept,
    assert row[0] == "1900000" and row[6] == "0.1" and row[-1] == "OOM"  # dense attn, other ops, KV to host, GB...
    assert row[1:6] + row[7:10] == ["n/a"] * 8
