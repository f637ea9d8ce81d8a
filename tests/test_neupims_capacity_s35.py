"""Capacity of the NeuPIMs points and of a bank-PIM's channels: the reproduction times batches that do not fit (the
paper's protocol) but says so per point, and a request longer than a channel's 1 GiB holds is refused."""

from __future__ import annotations

import json
import math

import pytest

from archsim.systems import neupims, neupims_reproduce
from archsim.systems.iteration import Batch
from archsim.systems.requests import Request
from archsim.systems.serving import simulate_serving, unservable
from archsim.systems.step import UnrunnableOp

# the audit's decode batches whose weights and KV cache exceed the NPU's 33.8 GB
OVER_MEMORY = {("gpt3-13b", 384), ("gpt3-13b", 512), ("gpt3-30b", 512), ("gpt3-175b", 512)}


@pytest.fixture(scope="module")
def points() -> list[dict]:
    return neupims_reproduce.reproduce(models=("gpt3-7b", "gpt3-13b", "gpt3-30b", "gpt3-175b"),
                                       datasets=("sharegpt",), batches=(256, 384, 512), samples=10)


def test_points_over_memory_do_not_fit(points):
    for r in points:
        if (r["model"], r["batch"]) in OVER_MEMORY and r["mode"] != "gpu":
            assert not r["fits"], r
            assert r["memory_bytes"] > 33.8e9
            assert "33.8 GB" in r["unfit_reason"]
    gpt3_7b_256 = [r for r in points if (r["model"], r["batch"]) == ("gpt3-7b", 256)]
    assert all(r["fits"] and r["unfit_reason"] == "" for r in gpt3_7b_256)


def test_round_robin_channel_overflow_is_marked(points):
    """Naive NPU+PIM's round-robin overflows a channel at 13B ShareGPT 256 though the device holds the batch."""
    point = next(r for r in points if (r["mode"], r["model"], r["batch"]) == ("npu+pim", "gpt3-13b", 256))
    assert point["memory_bytes"] < 33.8e9
    assert not point["fits"] and "channel" in point["unfit_reason"]
    assert next(r for r in points if (r["mode"], r["model"], r["batch"]) == ("neupims", "gpt3-13b", 256))["fits"]


def test_headline_beside_fitting_only(points):
    rows = {row["metric"]: row for row in neupims_reproduce.compare(points)}
    every = neupims_reproduce.summary(points)
    fitting = neupims_reproduce.summary([r for r in points if r["fits"]])
    assert rows["neupims/npu-only"]["ours"] == every["neupims/npu-only"]  # the paper's protocol kept
    assert rows["neupims/npu-only"]["ours_fitting"] == fitting["neupims/npu-only"]
    assert rows["neupims/npu-only"]["ours_fitting"] != rows["neupims/npu-only"]["ours"]


def test_decode_batch_overflowing_a_channel_is_unrunnable():
    """gpt3-7b TP4: 32 layers x 4 KB a token, 8192 tokens to a 1 GiB channel; one request of 9000 overflows it.
    Several requests that together overflow one are not refused (a capacity-aware placement would move one on)."""
    model = neupims.system("npu+pim", "gpt3-7b")
    assert model.request_kv_tokens == 8192
    assert math.isfinite(model.iteration(Batch(decode_context_tokens=[8000])).time_s)
    with pytest.raises(UnrunnableOp, match=r"a request of 9000 tokens keeps .* beyond the channel's 1.1 GB \(1 GiB\)"):
        model.iteration(Batch(decode_context_tokens=[9000]))
    assert math.isfinite(model.iteration(Batch(decode_context_tokens=[6000] * 64)).time_s)  # 2 a channel: 12000
    unchecked = neupims.system("npu+pim", "gpt3-7b", channel_check=False)  # the paper's protocol: timed all the same
    assert unchecked.iteration(Batch(decode_context_tokens=[9000])).time_s > 0


def test_served_request_longer_than_a_channel_is_rejected_on_arrival():
    """A prompt of 12000 tokens, and one of 8000 whose 1000 outputs outgrow the channel (8192 tokens): rejected on
    arrival, as too long for one channel's KV (the cache holds 232,672 tokens: not for the cache, session 36); the
    run serves the rest (it stopped with an UnrunnableOp at the first overflowing decode, session 35's review)."""
    model = neupims.system("neupims", "gpt3-7b")
    requests = [Request(0, 0.0, 12000, 16), Request(1, 0.0, 100, 16), Request(2, 0.0, 8000, 1000)]
    result = simulate_serving(model, requests)
    assert result.rejected_ids == (0, 2) and result.unrunnable_ids == ()
    assert [r.id for r in result.requests] == [1]
    assert not result.record().feasible
    assert "2 of 3 requests are too long for one bank-PIM channel's KV (8192 tokens)" in result.rejection
    alone = unservable(model, [Request(0, 0.0, 8000, 1000)])
    assert alone is not None and "beyond the 8192 tokens one request's KV may hold" in alone


def test_the_general_builder_holds_channels_to_their_capacity():
    """One systems layer: a model from `system_model` (sweeps, user systems) checks its bank-PIM's channels; npu-only's
    HBM, plain memory on which no op is placed, is no device of the model and checks nothing."""
    from archsim import library
    from archsim.systems.models import system_model
    from archsim.systems.system_model import SystemModel
    from archsim.systems.system_spec import load_system

    gpt3_7b = library.load_workload_spec("gpt3-7b")
    model = system_model(load_system("npu+pim"), gpt3_7b)
    assert type(model) is SystemModel
    assert model.devices["pim"].channel_kv_bytes_per_token == 32 * 4096.0
    with pytest.raises(UnrunnableOp, match=r"a prompt of 9000 tokens .* one channel of devices\.pim"):
        model.check_memory([], [100, 9000])
    model.check_memory([], [8000])
    npu_only = system_model(load_system("npu-only"), gpt3_7b)
    assert "hbm" not in npu_only.devices
    npu_only.check_memory([], [12000])
    unchecked = neupims.system("npu+pim", "gpt3-7b", channel_check=False)
    assert type(unchecked) is SystemModel and unchecked.devices["pim"].channel_kv_bytes_per_token is None
    unchecked.check_memory([], [12000])


def test_a_stock_length_distribution_runs_to_the_end(cli):
    """`archsim simulate -s neupims -w gpt3-7b --lengths azure-conv` exited 2 with the channel check raising at the
    first overflowing decode; its requests longer than a channel are now rejected and the rest served."""
    result = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "20", "--requests", "1000", "--lengths",
                 "azure-conv", "--json")
    record = json.loads(result.output)
    assert record["rejected"] == 4 and record["requests"] == 996
