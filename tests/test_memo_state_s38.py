"""Remembered results are not shared state (audit s38): a caller that edits what a device returns changes no later
answer, the batch path groups points only with points it may plan alike, and the caches of `archsim.memo` stay
whole when threads interleave.

Expected values: each answer is compared with the one the same call gave before the edit, or with the single-point
path (`analytical.evaluate`) for the same point; these are equivalence tests, the models' numbers are checked
elsewhere (tests/test_more_devices.py, tests/test_batch_eval.py).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.memo import identity_cache, per_object
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_points
from archsim.point import prepare
from archsim.systems.architecture_device import ArchitectureDevice
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.step import Step, layer_op
from archsim.systems.system_spec import load_system

MIXTRAL_TP4_HEADS = {"heads": 8, "kv_heads": 2}  # Mixtral-8x7B at TP4: 32 / 4 query heads, 8 / 4 K/V heads


def _edit(mapping) -> None:
    """Clear `mapping` as a careless caller would; one that cannot be edited refuses (TypeError)."""
    with contextlib.suppress(TypeError, AttributeError):
        mapping.clear()


def test_editing_an_npu_cost_changes_no_later_cost() -> None:
    """NeuPIMs' NPU (npu-only) on GPT-3 7B: the decode ops of a batch of 8 costed, each cost's busy seconds
    cleared, and the same ops costed again, on the same device and on a new model's: the same busy seconds."""
    model = system_model(load_system("npu-only"), library.load_workload_spec("gpt3-7b"))
    device = model.devices["npu"]
    ops = model.ops("decode", 8, 1)
    before = [dict(device.cost((op,), 1.0).busy_s) for op in ops]
    for op in ops:
        _edit(device.cost((op,), 1.0).busy_s)
    assert [dict(device.cost((op,), 1.0).busy_s) for op in ops] == before
    fresh = system_model(load_system("npu-only"), library.load_workload_spec("gpt3-7b"))
    assert [dict(fresh.devices["npu"].cost((op,), 1.0).busy_s) for op in fresh.ops("decode", 8, 1)] == before
    assert fresh.iteration(Batch((), (1024,) * 8)).busy_s["npu"] > 0


def test_editing_an_architecture_devices_result_changes_no_later_cost() -> None:
    """A FuseMax array under the library's QKV mapping running Mixtral's TP4 QKV projection of a 512-token prompt:
    its Result's dicts cleared by the caller, the device's cost and Result of the op are those it gave before."""
    device = ArchitectureDevice("fx", library.load_architecture_spec("fusemax"),
                                library.load_mapping_spec("linear-qkv-fusemax"))
    mixtral = library.load_workload_spec("mixtral-8x7b")
    op = layer_op(replace(mixtral, params={**mixtral.params, **MIXTRAL_TP4_HEADS}), Step("prefill", 1, 512), "llama",
                  "qkv")
    cost, result = device.cost([op]), device.result(op)
    assert cost.busy_s["fx_array2d"] > 0 and cost.memory_s > 0
    edited = device.result(op)
    for mapping in (edited.utilization, edited.memory_s, edited.traffic_bytes, edited.energy_by, edited.params,
                    edited.footprint_bytes, *(e.ops for e in edited.einsums)):
        _edit(mapping)
    assert device.cost([op]) == cost
    assert device.result(op) == result


def _word_points() -> tuple[tuple, tuple]:
    """FuseMax on BERT-Base at 4,096 tokens with 2-byte tensors, on its 2-byte architecture and on a 4-byte copy."""
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096})
    wide = p.arch.with_changes(word_bytes=4)
    return (p.binding, p.analysis, p.arch, p.mapping), (p.binding, p.analysis, wide, p.mapping)


@pytest.mark.parametrize("reverse", [False, True])
def test_points_of_another_word_size_are_not_planned_together(reverse: bool) -> None:
    """The single path runs the 2-byte point and refuses the 4-byte one (its word is not the tensors'); the batch
    path gives each the same answer in either order (it planned both with the first point's word before)."""
    points = list(_word_points())
    narrow_latency_s = evaluate(*points[0]).latency_s
    with pytest.raises(SpecError, match="4-byte words") as refused:
        evaluate(*points[1])
    at = {"narrow": 1, "wide": 0} if reverse else {"narrow": 0, "wide": 1}
    batch = evaluate_points(points[::-1] if reverse else points)
    assert batch.feasible[at["narrow"]] and batch.latency_s[at["narrow"]] == narrow_latency_s
    assert batch.result(at["narrow"]).latency_s == narrow_latency_s
    assert not batch.feasible[at["wide"]] and batch.reason[at["wide"]] == str(refused.value)
    with pytest.raises(SpecError, match="4-byte words"):
        batch.result(at["wide"])


def _failures_interleaved(scenario: Callable[[], tuple[Callable, Callable[[], bool], Callable[[], object]]]
                          ) -> tuple[list[str], int]:
    """What goes wrong when another thread runs between two steps of a cached call, for every such place.

    `scenario()` gives a fresh (cached function, the call under test returning whether its answer is right, another
    thread's work). The call runs once per bytecode of the cached function's own frame, the other work run just
    before that bytecode (where the interpreter may hand the GIL to another thread): deterministic, every
    interleaving of one whole other call tried. The failures (exceptions raised, or "wrong" answers) and the number
    of interleavings tried."""
    failures, at = [], 1
    while True:
        failure, seen = _other_before_bytecode(*scenario(), at)
        failures += [failure] if failure else []
        if seen < at:
            return failures, at - 1
        at += 1


def _other_before_bytecode(cached: Callable, call: Callable[[], bool], other: Callable[[], object], at: int
                           ) -> tuple[str | None, int]:
    """`call()` with `other()` run just before the at-th bytecode (from 1) of `cached`'s own frame (not traced: a
    trace function runs untraced): what went wrong (None where nothing did) and the bytecodes seen."""
    seen = 0

    def step(frame, event, arg):
        nonlocal seen
        if event == "opcode":
            seen += 1
            if seen == at:
                other()
        return step

    def enter(frame, event, arg):
        if frame.f_code is not cached.__code__:
            return None
        frame.f_trace_opcodes = True
        return step

    previous = sys.gettrace()
    sys.settrace(enter)
    try:
        failure = None if call() else "wrong"
    except Exception as error:  # what the other thread made the call raise
        failure = repr(error)
    finally:
        sys.settrace(previous)
    return failure, seen


def _objects(n: int) -> list[object]:
    return [object() for _ in range(n)]


def _identity_hit_while_evicted():
    """A hit on a's entry while another thread's misses evict it (maxsize 2)."""
    a, b, c = _objects(3)
    cache = identity_cache(maxsize=2)(id)
    cache(a)
    return cache, lambda: cache(a) == id(a), lambda: (cache(b), cache(c))


def _identity_miss_while_cleared():
    """A miss that evicts the oldest entry while another thread clears the cache."""
    a, b, c = _objects(3)
    cache = identity_cache(maxsize=2)(id)
    cache(a), cache(b)
    return cache, lambda: cache(c) == id(c), cache.cache_clear


def _per_object_miss_while_missing():
    """A miss that evicts the oldest entry while another thread's miss evicts it too (maxsize 2)."""
    a, b, c, d = _objects(4)
    cache = per_object(maxsize=2)(id)
    cache(a), cache(b)
    return cache, lambda: cache(c) == id(c), lambda: cache(d)


def _per_object_miss_while_cleared():
    """A miss that evicts the oldest entry while another thread clears the cache."""
    a, b, c = _objects(3)
    cache = per_object(maxsize=2)(id)
    cache(a), cache(b)
    return cache, lambda: cache(c) == id(c), cache.cache_clear


@pytest.mark.parametrize("scenario", [_identity_hit_while_evicted, _identity_miss_while_cleared,
                                      _per_object_miss_while_missing, _per_object_miss_while_cleared])
def test_a_cache_stays_whole_when_another_thread_runs_between_its_steps(scenario) -> None:
    failures, tried = _failures_interleaved(scenario)
    assert failures == [] and tried > 20  # each bytecode of the call: a cached call runs a few dozen
