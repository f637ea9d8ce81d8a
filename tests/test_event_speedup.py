"""The event model's engine (`archsim.model.event.run_tasks`: tasks as callbacks on a heap ordered as SimPy's
event queue, resources without a process per request) against the straightforward engine: one SimPy process per
task over
`simpy.PriorityResource` units and `simpy.Resource` channels (`with request: yield timeout(duration)`, the
resource released one zero-time step after the task ends). Both run the same tile tasks; the fast engine
schedules the same events in the same order, less each process's start and end, so every task's ready, start and
end time, and the task it waited on, must be equal: not within a tolerance, bit for bit.

Points: each overlap policy kind (`max`, FuseMax's pipeline expression, +Architecture's stall term, `sequential`),
GEMMs on both designs, DRAM contention (a tenth of the bandwidth), single and triple buffering, and a 16K-token
FuseMax point at a smaller task budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import pytest
import simpy

from archsim.model.analytical import evaluate
from archsim.model.event import run_tasks, simulate
from archsim.model.event_tasks import Task, tile_tasks
from archsim.point import prepare

POINTS = [  # mapping, tokens, variant, simulate's keywords
    ("fusemax", 1024, None, {}),
    ("flat", 1024, None, {}),
    ("unfused", 4096, None, {}),
    ("fusemax-arch", 1024, None, {}),
    ("linear-ffn-flat", 1024, None, {}),
    ("linear-qkv-fusemax", 4096, None, {}),
    ("flat", 1024, "sequential", {}),
    ("fusemax", 1024, "dram/10", {}),
    ("fusemax", 4096, None, {"buffers": 1}),
    ("flat", 4096, None, {"buffers": 3}),
    ("fusemax", 16384, None, {"max_tasks": 1000}),
]


def _reference_run(arch, tasks: list[Task]) -> int:
    """The process-per-task engine: returns the events processed."""
    env = simpy.Environment(initial_time=0.0)
    resources = {u.name: simpy.PriorityResource(env, capacity=1) for u in arch.units}
    resources.update({m.name: simpy.Resource(env, capacity=1) for m in arch.memories if m.bandwidth_bytes_per_s})
    done = {id(task): env.event() for task in tasks}  # each task's end
    holders: dict[str, Task] = {}
    for age, task in enumerate(tasks):
        env.process(_reference_task(env, task, resources.get(task.resource) if task.resource else None, age, holders,
                                    done))
    events = 0
    while env.peek() < math.inf:
        env.step()
        events += 1
    return events


def _reference_task(env, task: Task, resource, age: int, holders: dict[str, Task],
                    done: dict[int, simpy.Event]) -> Iterator[simpy.Event]:
    for dep in task.deps:
        yield done[id(dep)]
    task.ready_s = env.now
    if resource is not None and task.duration_s > 0:
        priority = {"priority": age} if isinstance(resource, simpy.PriorityResource) else {}
        with resource.request(**priority) as request:
            yield request
            task.start_s = env.now
            if task.start_s > task.ready_s:
                task.blocker = holders[task.resource]
            yield env.timeout(task.duration_s)
            task.end_s = env.now
            done[id(task)].succeed()
            yield env.timeout(0)
            holders[task.resource] = task
    else:
        task.start_s = env.now
        if task.duration_s > 0:
            yield env.timeout(task.duration_s)
        task.end_s = env.now
        done[id(task)].succeed()


def _inputs(mapping_name: str, seq_len: int, variant: str | None):
    p = prepare(mapping_name, workload="bert-base", sets={"seq_len": seq_len})
    arch, mapping = p.arch, p.mapping
    if variant == "dram/10":
        dram_bps = arch.memory("DRAM").bandwidth_bytes_per_s / 10
        arch = arch.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": dram_bps})
    elif variant == "sequential":
        mapping = replace(mapping, groups=tuple(replace(g, overlap="sequential") for g in mapping.groups))
    return p, arch, mapping


def _timing(tasks: list[Task]) -> list[tuple]:
    """Each task's times and the positions of the tasks its stalls are blamed on."""
    index = {id(t): i for i, t in enumerate(tasks)}
    return [(t.name, t.ready_s, t.start_s, t.end_s, index.get(id(t.last)), index.get(id(t.blocker))) for t in tasks]


@pytest.mark.parametrize(("mapping_name", "seq_len", "variant", "options"), POINTS)
def test_engine_equals_process_per_task(mapping_name: str, seq_len: int, variant: str | None, options: dict) -> None:
    p, arch, mapping = _inputs(mapping_name, seq_len, variant)
    parts = [evaluate(p.binding, p.analysis, arch, mapping, only_group=i) for i in range(len(mapping.groups))]
    max_tasks, buffers = options.get("max_tasks", 4000), options.get("buffers", 2)
    fast, reference = (tile_tasks(p.binding, arch, mapping, parts, max_tasks, buffers) for _ in range(2))
    events = run_tasks(arch, fast)
    reference_events = _reference_run(arch, reference)
    assert _timing(fast) == _timing(reference)
    # The fast engine drops two events per task (a process's start and its end), nothing else.
    assert events == reference_events - 2 * len(reference)
    run = simulate(p.binding, p.analysis, arch, mapping, **options)
    assert run.events == events
    assert run.result.latency_s == max(t.end_s for t in reference)
