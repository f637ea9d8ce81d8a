"""The caches of issue 17 never change an answer: specs are re-read when their file's bytes change, a remembered
resolution is returned only for the very same arguments, and a cached evaluation equals an uncached one."""

from __future__ import annotations

import math
from pathlib import Path

from archsim import library
from archsim.mapping import resolve
from archsim.memo import identity_cache
from archsim.model.analytical import evaluate
from archsim.point import prepare


def test_a_spec_file_is_parsed_again_when_its_bytes_change(tmp_path: Path) -> None:
    text = library.find("workloads", "bert-base").read_text()
    path = tmp_path / "w.yaml"
    path.write_text(text)
    first = library.load_workload_spec(str(path))
    assert library.load_workload_spec(str(path)) is first  # same bytes: the parsed spec is reused
    path.write_text(text.replace("seq_len: 1024", "seq_len: 1025"))  # same size, maybe the same mtime
    second = library.load_workload_spec(str(path))
    assert second.params["seq_len"] == 1025 and first.params["seq_len"] == 1024


def test_identity_cache_returns_a_result_only_for_the_same_objects() -> None:
    calls = []

    @identity_cache(maxsize=2)
    def size(items: list, label: str) -> int:
        calls.append(label)
        return len(items)

    a, b = [1, 2], [1, 2]
    assert size(a, "x") == 2 and size(a, "x" + "") == 2 and len(calls) == 1  # equal strings, same list: a hit
    assert size(b, "x") == 2 and len(calls) == 2  # an equal but different list: computed again
    size([], "y"), size([], "z")
    assert size(a, "x") == 2 and len(calls) == 5  # a's entry was evicted beyond maxsize: computed again


def test_identity_cache_never_mistakes_an_int_for_an_object_whose_id_it_equals() -> None:
    @identity_cache(maxsize=4)
    def kind(x: object) -> str:
        return type(x).__name__

    thing = object()
    assert kind(id(thing)) == "int"  # remembered under the int's value, which is thing's id
    assert kind(thing) == "object"  # thing's key is the same number, but it is no value: computed, not the int's


def test_cached_evaluation_equals_the_uncached_one() -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096})
    cached = [evaluate(point.binding, point.analysis, point.arch, point.mapping) for _ in range(2)]
    resolve.resolve_group.cache_clear()
    resolve.check_bindings.cache_clear()
    fresh = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    assert cached[0] == cached[1] == fresh


def test_prepare_remembers_what_a_point_depends_on_and_nothing_else() -> None:
    """Equal sets and the same specs give the same binding and mapper choice; another length or architecture is
    bound and searched anew, and its result is what an uncached run computes."""
    from archsim import point as point_module

    first = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096})
    again = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096.0})
    assert again.binding is first.binding and again.mapping is first.mapping
    longer = prepare("fusemax", workload="bert-base", sets={"seq_len": 8192})
    assert longer.binding is not first.binding and longer.binding.params["seq_len"] == 8192
    slower = first.arch.with_changes(**{"memories.DRAM.bandwidth_bytes_per_s": 2**34})
    other = prepare("fusemax", arch=slower, workload="bert-base", sets={"seq_len": 4096})
    cached = evaluate(other.binding, other.analysis, other.arch, other.mapping)
    point_module._bound.cache_clear()
    point_module._searched.cache_clear()
    fresh = prepare("fusemax", arch=slower, workload="bert-base", sets={"seq_len": 4096})
    assert fresh.mapping == other.mapping
    assert evaluate(fresh.binding, fresh.analysis, fresh.arch, fresh.mapping) == cached


def test_analysis_read_off_a_cascades_plan_equals_counting_each_einsum() -> None:
    """`tensor_infos` and `analyze` read each cascade's ranks once (`_tensor_plan`, `_einsum_plan`); every library
    cascade, at its defaults and at other sizes, gives the shapes, bytes, points and ops that `Binding.shape`,
    `einsum_points` and `point_ops` give one by one (masked, data-dependent and recurrent Einsums included)."""
    from collections import Counter

    from archsim.cascade.analysis import analyze, einsum_points, point_ops
    from archsim.cascade.bind import bind

    def shape(binding, name):  # Binding.shape's rule, without its remembered shapes
        decl = binding.cascade.tensors[name]
        return tuple(binding.rank_sizes[r] + (r == decl.iterative) for r in decl.ranks)

    checked = 0
    for name in library.names("cascades"):
        cascade = library.load_cascade_spec(name)
        for scale in (1, 2, 3):
            sets = {k: v * scale for k, v in cascade.params.items() if k in ("seq_len", "batch") and scale > 1}
            try:
                binding = bind(cascade, None, sets)
            except Exception:  # a size that no longer divides a partition: not a binding
                continue
            analysis = analyze(binding)
            for info in analysis.tensors:
                assert info.shape == shape(binding, info.name)
                assert info.bytes == math.prod(shape(binding, info.name)) * binding.word_bytes
            assert [t.name for t in analysis.tensors] == list(cascade.tensors)
            for einsum in cascade.einsums:
                points = einsum_points(binding, einsum)
                assert analysis.points[einsum.name] == points
                assert analysis.ops[einsum.name] == {op: n * points for op, n in sorted(point_ops(einsum).items())}
            total: Counter[str] = Counter()
            for counts in analysis.ops.values():
                total.update(counts)
            assert list(analysis.total_ops().items()) == list(dict(total).items())
            checked += 1
    assert checked > 60


def test_a_workloads_checked_params_serve_every_binding_under_it() -> None:
    """`bind` remembers a (cascade, workload) pair's layered params: binding under the same workload object again,
    or under an equal copy (computed afresh), gives equal bindings, and a size given beside it still wins."""
    from dataclasses import replace

    from archsim.cascade.bind import bind

    cascade = library.load_cascade_spec("attention-decode-gqa")
    workload = library.load_workload_spec("gpt3-7b")
    first = bind(cascade, workload, {"batch": 1, "seq_len": 300}, "<step>")
    again = bind(cascade, workload, {"batch": 1, "seq_len": 301}, "<step>")
    fresh = bind(cascade, replace(workload, params=dict(workload.params)), {"batch": 1, "seq_len": 301}, "<step>")
    assert first.rank_sizes["M"] == 300 and again.rank_sizes["M"] == 301
    assert (again.params, again.rank_sizes, again.word_bytes) == (fresh.params, fresh.rank_sizes, fresh.word_bytes)
    assert again.params["seq_len"] == 301.0 and workload.params["seq_len"] != 301


def test_a_kept_value_is_worked_out_once_per_instance() -> None:
    from archsim.memo import kept

    class Thing:
        calls = 0

        @kept
        def value(self) -> int:
            Thing.calls += 1
            return 7

    a, b = Thing(), Thing()
    assert (a.value, a.value, b.value) == (7, 7, 7) and Thing.calls == 2
    assert Thing.value.__doc__ is None and "value" in vars(a)


def test_an_ops_counts_without_its_analysis_equal_the_analysiss() -> None:
    """`Op.ops`, counted from the binding alone (`Op.counts`: no analysis is built for a decode attention op read
    for its MACs), equals `analysis.total_ops()`, and the analysis an op builds on its counts equals `analyze`'s,
    for decode and prefill attention (masked) and every dense op, twins included."""
    from archsim.cascade.analysis import analyze
    from archsim.systems.step import Step, layer_ops

    workload = library.load_workload_spec("gpt3-7b")
    for step in (Step("decode", 1, 777), Step("decode", 40, 1), Step("prefill", 1, 301)):
        for fresh, analysed in zip(layer_ops(workload, step, "gpt"), layer_ops(workload, step, "gpt"), strict=True):
            assert "analysis" not in vars(fresh)
            counts = fresh.ops
            assert "analysis" not in vars(fresh)  # counted without the tensors
            assert list(counts.items()) == list(analysed.analysis.total_ops().items())
            assert list(analysed.ops.items()) == list(counts.items())
            again = analyze(fresh.binding)  # the analysis an op builds on its counts equals a fresh one
            assert (analysed.analysis.points, analysed.analysis.ops) == (again.points, again.ops)
            assert analysed.analysis.tensors == again.tensors


def test_a_causal_masks_closed_form_equals_counting_its_points() -> None:
    """`causal_points` (m <= p in closed form) equals every point checked for small boxes, and `count_true` (the
    general interval count) for square boxes of every prompt length to 1,024 (a prefill attention op binds both to
    the prompt; ShareGPT's longest), every seventh to 4,096 and 16K, and long uneven boxes; any other predicate is
    left to `count_true`."""
    import random

    from archsim.cascade.analysis import causal_points
    from archsim.cascade.mask_count import count_true

    causal = library.load_cascade_spec("attention-1pass-causal").einsums[0].mask.predicate
    for rows in range(12):
        for cols in range(12):
            assert causal_points(causal, {"m": rows, "p": cols}) == sum(
                1 for m in range(rows) for p in range(cols) if m <= p)
    for n in [*range(1, 1025), *range(1025, 4097, 7), 16384]:
        assert causal_points(causal, {"m": n, "p": n}) == count_true(causal, {"m": n, "p": n}, {})
    rng = random.Random(17)
    for _ in range(8):
        rows, cols = rng.randint(1, 2**20), rng.randint(1, 2**20)
        assert causal_points(causal, {"m": rows, "p": cols}) == count_true(causal, {"m": rows, "p": cols}, {})
    window = library.load_cascade_spec("attention-sliding-window").einsums[0].mask.predicate
    assert causal_points(window, {"m": 8, "p": 8}) is None


def test_per_object_returns_a_result_only_for_the_same_object() -> None:
    from archsim.memo import per_object

    calls = []

    @per_object(maxsize=2)
    def size(items: list) -> int:
        calls.append(1)
        return len(items)

    a, b = [1, 2], [1, 2]
    assert size(a) == size(a) == 2 and len(calls) == 1  # the same list: a hit
    assert size(b) == 2 and len(calls) == 2  # an equal but different list: computed again
    size([]), size([3])
    assert size(a) == 2 and len(calls) == 5  # a's entry was evicted beyond maxsize: computed again
