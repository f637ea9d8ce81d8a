"""Guard for issue 17's speed-up of `archsim.model.analytical.evaluate`: the optimised path must return the very
same `Result` as the code before it, bit for bit, on every point below.

Why a snapshot and not the papers: the speed-up is a refactor (work that depends only on the mapping and cascade
structure is computed once and remembered), so no number may move, not even in its last bit (a float summed in
another order would); the paper comparisons (tests/test_fusemax_*.py) have tolerances and would not see that.

What is kept (tests/data/eval_speed_snapshot.json, `results`): `Result.model_dict()` of each point (`to_dict()` with
an infeasible point's numbers, which `to_dict()` leaves null), compared as JSON text (floats written with `repr`,
which round-trips exactly; dict order included). The points cover every mapping in `mappings/` at 4K tokens of
BERT-base, the benchmark's FuseMax point at 64K, the FLAT mappings at 64K (tiles that spill), FuseMax's chosen
mapping on a 1 MiB buffer and on a 32-PE-wide array (infeasible: capacity and fan-out), a slower DRAM, and single
groups as the mapper scores them (`only_group`).

Where the snapshot comes from: the code at commit 0730ad8, before the speed-up (archsim/model, mapping and cascade
unmodified).
Refreshing it, deliberately (only when a result is meant to move, with the reason in the commit and the README):
    ARCHSIM_UPDATE_SNAPSHOT=1 .venv/bin/pytest tests/test_eval_speed_equal.py
rewrites the file from the current code (recording `git rev-parse HEAD`) and skips the comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from archsim import library
from archsim.mapping import resolve
from archsim.model.analytical import evaluate
from archsim.point import prepare

SNAPSHOT = Path(__file__).parent / "data" / "eval_speed_snapshot.json"
MIB, GIB = 2**20, 2**30
MAPPINGS = ("flat-offchip", "flat", "fusemax-arch", "fusemax-cascade", "fusemax", "linear-ffn-flat",
            "linear-ffn-fusemax", "linear-out-flat", "linear-out-fusemax", "linear-qkv-flat", "linear-qkv-fusemax",
            "unfused")


def results() -> dict[str, dict]:
    """Every point's `Result.model_dict()`, by a readable key."""
    out = {}
    for name in MAPPINGS:
        p = prepare(name, workload="bert-base", sets={"seq_len": 4096})
        out[f"{name} bert-base 4096"] = evaluate(p.binding, p.analysis, p.arch, p.mapping)
        for g in range(len(p.mapping.groups)):
            out[f"{name} bert-base 4096 only_group {g}"] = evaluate(p.binding, p.analysis, p.arch, p.mapping,
                                                                    only_group=g)
    for name in ("fusemax", "flat", "flat-offchip", "fusemax-arch"):
        p = prepare(name, workload="bert-base", sets={"seq_len": 65536})
        out[f"{name} bert-base 65536"] = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    # Llama-3-8B's shapes through the multi-head cascade (point.py refuses its 8 KV heads there, and its decoder
    # block on an unmasked cascade; this point is about d = 128 and batch 16, and attention-1pass reads neither)
    llama = library.load_workload_spec("llama3-8b")
    mha = replace(llama, params={**llama.params, "kv_heads": llama.params["heads"]}, block=None)
    p = prepare("fusemax", workload=mha, sets={"seq_len": 16384})
    out["fusemax llama3-8b 16384"] = evaluate(p.binding, p.analysis, p.arch, p.mapping)
    p = prepare("fusemax", workload="bert-base", sets={"seq_len": 16384})
    small = p.arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": 1 * MIB})
    out["fusemax bert-base 16384 chosen mapping, 1 MiB buffer"] = evaluate(p.binding, p.analysis, small, p.mapping)
    slow = p.arch.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": 64 * GIB})
    q = prepare("fusemax", arch=slow, workload="bert-base", sets={"seq_len": 16384})
    out["fusemax bert-base 16384 DRAM 64 GiB/s"] = evaluate(q.binding, q.analysis, q.arch, q.mapping)
    narrow = p.arch.with_changes(**{"units.array2d.shape": [32, 256]})
    out["fusemax bert-base 16384 chosen mapping, 32 x 256 array"] = evaluate(p.binding, p.analysis, narrow,
                                                                             p.mapping)
    return {key: r.model_dict() for key, r in out.items()}


def test_evaluate_gives_the_snapshot_bit_for_bit() -> None:
    now = results()
    if os.environ.get("ARCHSIM_UPDATE_SNAPSHOT"):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
        SNAPSHOT.write_text(json.dumps({"commit": commit, "results": now}, indent=1) + "\n")
        pytest.skip("snapshot rewritten")
    stored = json.loads(SNAPSHOT.read_text())["results"]
    assert list(now) == list(stored)
    moved = [key for key in stored if json.dumps(now[key]) != json.dumps(stored[key])]
    assert not moved, f"results that differ from the snapshot: {moved}"


def test_a_repeated_evaluation_equals_one_with_the_caches_cleared() -> None:
    """The second call (everything remembered) and a call after clearing the caches agree with the first."""
    p = prepare("flat", workload="bert-base", sets={"seq_len": 65536})
    first = json.dumps(evaluate(p.binding, p.analysis, p.arch, p.mapping).to_dict())
    again = json.dumps(evaluate(p.binding, p.analysis, p.arch, p.mapping).to_dict())
    resolve.resolve_group.cache_clear()
    resolve.check_bindings.cache_clear()
    fresh = json.dumps(evaluate(p.binding, p.analysis, p.arch, p.mapping).to_dict())
    assert first == again == fresh
