"""`archsim sparse --system lamina`: the attention-offloading memory pool's rows time one layer's decode attention of
the requests the pool holds (issue 19's "PIM and offloading": KV pages read only when selected, room freed by
streaming heads), as the offload model times it (`OffloadModel.layer(contexts).attention_s`: one kernel call over a
memory device's heads), each request bound at the method's effective context; dense at its own request count and
the context.

Expected numbers: Lamina's pool (4 H20) holds Llama-3-70B's KV by head-level partitioning, 2 of its 8 KV heads a
device. At 32K dense holds 38 requests, DuoAttention at half the heads streaming 75, Quest at budget 2048 36
(tests/test_sparse_system_option.py). Effective contexts (`kv_selection`): Quest's, its 2 dense layers of 80 at
32768 and 78 at the pages' bounds (2048 pages' KMIN and KMAX: 2048 tokens' worth) + the 2048-token budget:
ceil((2 x 32768 + 78 x 4096) / 80) = ceil(4812.8) = 4813; DuoAttention's, 4 retrieval KV heads a layer over 4
devices, one on each: (32768 + 128 + 256) / 2 = 16576 a head.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel
from archsim.systems.system_spec import load_system

ARGS = ("-w", "llama3-70b", "--gpu", "h100-sxm5", "--system", "lamina")
QUEST_EFFECTIVE_32K = math.ceil((2 * 32768 + 78 * (2048 + 2048)) / 80)
DUO_EFFECTIVE_32K = (32768 + 128 + 256) // 2


def pool_rows(*args: str) -> list[dict]:
    result = CliRunner().invoke(main, ["sparse", *ARGS, *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["system_points"]


def per_request_s(row: dict) -> tuple[float, float]:
    """(method, dense) one layer's pool attention per request held."""
    return row["time_s"] / row["requests"], row["dense_time_s"] / row["dense_requests"]


def lamina_70b() -> OffloadModel:
    model = system_model(load_system("lamina"), library.load_workload_spec("llama3-70b"))
    assert isinstance(model, OffloadModel)
    return model


@pytest.mark.parametrize("method", [("--method", "quest", "--budget", "512,2048"),
                                    ("--method", "duoattention", "--retrieval-fraction", "0.5")])
def test_pool_rows_have_finite_times(method) -> None:
    rows = pool_rows(*method, "--context", "32K,128K")
    assert rows and all(r["kind"] == "memory-pool" for r in rows)
    for row in rows:
        assert 0 < row["time_s"] < math.inf and 0 < row["dense_time_s"] < math.inf
        assert row["requests"] >= 1 and row["dense_requests"] >= 1
        assert row["effective_context"] <= row["context"]


def test_quest_pool_time_per_request_falls_as_the_budget_falls() -> None:
    """At 128K Quest reads its pages' bounds (8192 tokens' worth) + the budget in 78 of 80 layers: fewer tokens a
    request as the budget falls, every budget holding the same requests (the metadata does not depend on it)."""
    rows = pool_rows("--method", "quest", "--budget", "8192,2048,512", "--context", "128K")
    assert [r["budget"] for r in rows] == [8192, 2048, 512]
    assert len({r["requests"] for r in rows}) == 1
    effective = [r["effective_context"] for r in rows]
    assert effective == [math.ceil((2 * 131072 + 78 * (8192 + budget)) / 80) for budget in (8192, 2048, 512)]
    times = [per_request_s(r)[0] for r in rows]
    assert times[0] > times[1] > times[2]
    assert all(t < per_request_s(r)[1] for t, r in zip(times, rows, strict=True))


def test_duoattention_with_every_head_retrieval_is_dense() -> None:
    """Retrieval fraction 1: every head keeps and reads the whole context, so the pool holds dense's requests and
    takes dense's time."""
    (row,) = pool_rows("--method", "duoattention", "--retrieval-fraction", "1", "--context", "32K")
    assert row["effective_context"] == 32768
    assert row["requests"] == row["dense_requests"] == 38
    assert row["time_s"] == row["dense_time_s"]


@pytest.mark.parametrize(("method", "effective", "requests"), [
    (("--method", "quest", "--budget", "2048"), QUEST_EFFECTIVE_32K, 36),
    (("--method", "duoattention", "--retrieval-fraction", "0.5"), DUO_EFFECTIVE_32K, 75)])
def test_a_pool_row_is_the_offload_models_attention_at_the_effective_context(method, effective, requests) -> None:
    """The row's times are the offload model's one-layer pool attention (`OffloadModel.layer(...).attention_s`) of
    the requests held at the effective context, and of dense's 38 at 32768; the per-request time is the shorter."""
    (row,) = pool_rows(*method, "--context", "32K")
    model = lamina_70b()
    assert (row["effective_context"], row["requests"], row["dense_requests"]) == (effective, requests, 38)
    assert row["time_s"] == model.layer([effective] * requests).attention_s
    assert row["dense_time_s"] == model.layer([32768] * 38).attention_s
    method_s, dense_s = per_request_s(row)
    assert method_s < dense_s


def test_the_table_prints_the_pool_times() -> None:
    """The pool row of the table has its times and per-request times, no '-' in them."""
    result = CliRunner().invoke(main, ["sparse", *ARGS, "--method", "duoattention", "--retrieval-fraction", "0.5",
                                       "--context", "32K"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("memory ")]
    fields = line.split()
    assert fields[:5] == ["memory", "memory-pool", "32768", "-", str(DUO_EFFECTIVE_32K)]
    assert "-" not in fields[6:] and fields[-2:] == ["75", "38"]
