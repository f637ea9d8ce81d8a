"""The mapper against a brute-force enumeration of its own space (auditor, session 47).

Each search loop takes a divisor of what its rank leaves after the group's fixed factors; a rank with no residual
loop is split exactly (its last search loop takes what the others leave). The brute force below enumerates that
space with plain trial division, scores every candidate with the mapper's own `score` and the same group
evaluator, and compares:
- up to its budget the search is exhaustive: its choice scores as well as the best of the whole space (the FFN
  GEMMs of OPT-66B at 196,608 tokens on FLAT offer 39 x 18 = 702 candidates per group: the old 256 budget, halving
  the widest loop's options, kept 120 and missed, moving 7.23e11 B of DRAM against 3.75e11 B);
- above it, the thinned search keeps as many candidates as the budget allows and then refines its best: no single
  search loop changed to any other divisor (the rank's last loop compensating) scores better.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from cli_errors import one_line_error

from archsim import library
from archsim.errors import SpecError
from archsim.mapping import factors
from archsim.mapping.load import mapping_from_dict
from archsim.mapping.mapper import score, search, search_many
from archsim.mapping.spec import SEARCH
from archsim.model.analytical import evaluate
from archsim.point import prepare

# FuseMax's attention with its outer loops searched too, on FuseMax's hardware with a 2 MiB buffer and 25 GiB/s of
# DRAM: B x H x P x M1 = 4 x 6 x 10 x 10 = 2,400 candidates at BERT-Base, 12,288 tokens, batch 8.
FMX2 = {
    "name": "fmx2", "cascade": "attention-1pass", "architecture": "fusemax", "set": {"M0": 256},
    "groups": [{
        "name": "attention",
        "binding": {"array2d": ["QK", "LM", "SLN", "SLD", "SLNV"],
                    "array1d": ["RM", "PRM", "SPD", "RD", "SPNV", "RNV", "AV"]},
        "loops": [{"level": "DRAM", "ranks": {"B": "search", "H": "search", "P": "search", "M1": "search"}},
                  {"level": "GlobalBuffer", "ranks": {"B": None, "H": None, "P": "search", "M1": None, "E": None,
                                                      "F": None}},
                  {"spatial": "array2d", "ranks": {"P": "M0", "M0": "M0"}},
                  {"spatial": "array1d", "ranks": {"P": "M0"}}],
        "keep": {"GlobalBuffer": ["Q", "K", "V", "RM", "RD", "RNV"]},
        "overlap": "max(QK+LM, RD+RNV+AV) + RM + max(SLN+SLD, PRM+SPD) + max(SLNV, SPNV)",
    }],
}
FMX2_SIZES = {"seq_len": 12288, "batch": 8}
FFN_SIZES = {"seq_len": 196608, "batch": 1}


def _small_fusemax():
    return library.load_architecture_spec("fusemax").with_changes(**{
        "memories.GlobalBuffer.capacity_bytes": 2 * 2**20, "memories.DRAM.bandwidth_bytes_per_s": 25 * 2**30})


@pytest.fixture(scope="module")
def fmx2():
    return mapping_from_dict(FMX2, "fmx2.yaml")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _space(point, spec, gi: int):
    """Every candidate of group `gi`'s search loops (loop index -> factor) in the mapper's space, by brute force."""
    group, chosen = spec.groups[gi], point.mapping.groups[gi]
    slots = [i for i, lp in enumerate(group.loops) if lp.factor == SEARCH]
    residual = {lp.rank for lp in group.loops if lp.factor is None and not lp.is_spatial}
    free = {}
    for rank in {group.loops[i].rank for i in slots}:
        fixed = [lp for i, lp in enumerate(chosen.loops) if lp.rank == rank and i not in slots and lp.factor]
        spatial = [math.prod(lp.factor for lp in fixed if lp.spatial == unit) for unit in {lp.spatial for lp in fixed}]
        temporal = math.prod(lp.factor for lp in fixed if not lp.is_spatial)
        free[rank] = point.binding.rank_sizes[rank] // (temporal * max(spatial, default=1))
    for combo in itertools.product(*(_divisors(free[group.loops[i].rank]) for i in slots)):
        by_rank = {}
        for i, factor in zip(slots, combo, strict=True):
            by_rank[group.loops[i].rank] = by_rank.get(group.loops[i].rank, 1) * factor
        if all(free[r] % p == 0 if r in residual else p == free[r] for r, p in by_rank.items()):
            yield dict(zip(slots, combo, strict=True))


def _score(point, gi: int, factors: dict[int, int]):
    groups = list(point.mapping.groups)
    groups[gi] = groups[gi].with_factors(factors)
    trial = replace(point.mapping, groups=tuple(groups))
    return score(evaluate(point.binding, point.analysis, point.arch, trial, only_group=gi))


def _chosen(point, spec, gi: int) -> dict[int, int]:
    return {i: point.mapping.groups[gi].loops[i].factor
            for i, lp in enumerate(spec.groups[gi].loops) if lp.factor == SEARCH}


def test_up_to_its_budget_the_search_is_exhaustive_on_the_shipped_ffn():
    """linear-ffn-flat, OPT-66B at 196,608 tokens: 702 candidates per group, each group's choice the best of all."""
    spec = library.load_mapping_spec("linear-ffn-flat")
    point = prepare(spec, workload="opt-66b", sets=FFN_SIZES)
    for gi in range(len(spec.groups)):
        scores = [_score(point, gi, f) for f in _space(point, spec, gi)]
        assert len(scores) == 702
        assert _score(point, gi, _chosen(point, spec, gi)) == min(scores)
    # the auditor's hand mapping, S = 32 and P = 384 at DRAM in both groups: the choice moves no more DRAM bytes
    fixed = replace(spec, groups=tuple(g.with_factors({i: {"S": 32, "P": 384}[lp.rank]
                                                       for i, lp in enumerate(g.loops) if lp.factor == SEARCH})
                                       for g in spec.groups))
    dram = evaluate(point.binding, point.analysis, point.arch, point.mapping).dram_traffic_bytes
    assert dram <= evaluate(point.binding, point.analysis, point.arch, fixed).dram_traffic_bytes


def test_up_to_its_budget_the_search_is_exhaustive_on_four_searched_loops(fmx2):
    """The auditor's fmx2: 2,400 candidates; the choice had taken 0.55 s where the space holds 0.034 s."""
    point = prepare(fmx2, arch=_small_fusemax(), workload="bert-base", sets=FMX2_SIZES)
    scores = [_score(point, 0, f) for f in _space(point, fmx2, 0)]
    assert len(scores) == 2400
    assert _score(point, 0, _chosen(point, fmx2, 0)) == min(scores)


@pytest.mark.parametrize("case", ["fmx2", "ffn"])
@pytest.mark.parametrize("budget", [16, 64, 256])
def test_above_its_budget_the_search_reaches_a_local_optimum(fmx2, case, budget):
    """Thinned to `budget` candidates and refined: no change of one search loop (a rank's last loop, where it has no
    residual, taking what the others leave: P at FuseMax's buffer) improves the choice. The old search, halving the
    widest loop's options, left the FFN GEMMs a better one at 16 (S = 36 -> 32, the same time, less energy) and
    evaluated fewer candidates than its budget; on fmx2 it stopped at 0.55 s (a local optimum too), where the
    refined thinned search with a budget of 256 reaches 0.056 s and the whole space holds 0.034 s."""
    if case == "fmx2":
        spec, point = fmx2, prepare(fmx2, arch=_small_fusemax(), workload="bert-base", sets=FMX2_SIZES)
    else:
        spec = library.load_mapping_spec("linear-ffn-flat")
        point = prepare(spec, workload="opt-66b", sets=FFN_SIZES)
    trials = []

    def counted(trial, gi):
        trials.append(trial)
        return evaluate(point.binding, point.analysis, point.arch, trial, only_group=gi)

    point = replace(point, mapping=search(point.binding, point.arch, spec, counted, max_candidates=budget))
    for gi, group in enumerate(spec.groups):
        best = _chosen(point, spec, gi)
        best_score = _score(point, gi, best)
        residual = {lp.rank for lp in group.loops if lp.factor is None and not lp.is_spatial}
        last = {group.loops[i].rank: i for i in best}
        derived = {i for r, i in last.items() if r not in residual}
        neighbours = 0
        for f in _space(point, spec, gi):
            if len([i for i in f if f[i] != best[i] and i not in derived]) == 1:
                neighbours += 1
                assert best_score <= _score(point, gi, f), (gi, best, f)
        # every other divisor of each searched loop: B = 8, H = 12, P = 48 (at DRAM), M1 = 48; S = 36,864, P = 768
        assert neighbours == (3 + 5 + 9 + 9 if case == "fmx2" else 38 + 17)
    assert len(trials) > budget  # the thinned enumeration spent its budget, then the refinement tried more


def test_thinned_options_spend_the_budget():
    """Each loop keeps as many options as the budget allows: the product within it, and no loop able to keep one
    more; each keeps 1 and its largest, in the order given (largest first)."""
    for sizes, budget in [([4, 6, 10, 10], 256), ([39, 18], 256), ([13, 3], 16), ([100, 100], 1000), ([5], 3)]:
        options = [[2**e for e in reversed(range(n))] for n in sizes]  # the divisors of 2^(n-1), largest first
        kept = factors.thinned(options, budget)
        counts = [len(k) for k in kept]
        assert math.prod(counts) <= budget
        for j, (k, n) in enumerate(zip(counts, sizes, strict=True)):
            assert k == n or math.prod(counts) // k * (k + 1) > budget, (sizes, counts, j)
        for k, o in zip(kept, options, strict=True):
            assert k[0] == o[0] and k[-1] == 1 and k == sorted(k, reverse=True) and set(k) <= set(o)


def test_spread_keeps_exactly_k():
    """Divisors crowd in the middle of a log scale: nearest-above picks had collided, keeping fewer than asked."""
    values = _divisors(720)
    for k in range(1, len(values) + 1):
        picked = factors.spread(values, k)
        assert len(picked) == k and picked == sorted(set(picked)) and set(picked) <= set(values)
        assert picked[0] == 1 and (k == 1 or picked[-1] == 720)


def _renamed(tmp_path: Path, names: list[str | None]) -> Path:
    """mappings/linear-ffn-fusemax.yaml with its two groups named `names` (None: no name, the default)."""
    data = yaml.safe_load((Path(__file__).parents[1] / "mappings" / "linear-ffn-fusemax.yaml").read_text())
    for group, name in zip(data["groups"], names, strict=True):
        group.pop("name", None)
        if name is not None:
            group["name"] = name
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


DEFAULT_TAKEN = "'groups[1]' (the default name of this unnamed group) is already the name of groups[0]"


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("names, earlier", [(["same", "same"], "'same' is already the name of groups[0]"),
                                            (["groups[1]", None], DEFAULT_TAKEN)])
def test_a_repeated_group_name_is_refused(tmp_path, cli, command, names, earlier):
    """Groups are told apart by name (which tensors cross groups and so live in DRAM): two groups named alike had
    lost every tensor the two share, tensor A never reaching DRAM (8.15e8 B moved against 4.04e9 B, 3.3x fast).
    A name written as another group's default counts."""
    path = _renamed(tmp_path, names)
    args = [command, str(path)] if command == "check" else [command, "-m", str(path), "-w", "bert-base"]
    one_line_error(cli(*args, expect=2), f"error: {path}: groups[1].name: ", earlier)


def test_distinct_group_names_move_what_crosses_groups(tmp_path, cli_json):
    """Named apart, the two FFN groups run as the library's mapping does: A goes to DRAM between them."""
    library_run = cli_json("run", "-m", "linear-ffn-fusemax", "-w", "bert-base")
    renamed = cli_json("run", "-m", str(_renamed(tmp_path, ["one", "two"])), "-w", "bert-base")
    assert renamed["traffic_bytes"] == library_run["traffic_bytes"]


def test_a_mapping_changed_in_python_is_refused_a_repeated_group_name():
    spec = library.load_mapping_spec("linear-ffn-fusemax")
    with pytest.raises(SpecError) as error:
        replace(spec, groups=(spec.groups[0], replace(spec.groups[1], name=spec.groups[0].name)))
    assert str(error.value).endswith("groups[1].name: 'ffn1' is already the name of groups[0]; expected a name no "
                                     "other group has")


def test_run_shows_the_mappers_choice_in_the_mappings_form(tmp_path, cli, cli_json):
    """`archsim run` names the loops the mapper filled, per group, as YAML entries to paste over the `search` ones
    (text and --json, outside the stored `record`); the mapping with them pasted runs to the same numbers, every
    factor fixed."""
    args = ("-m", "linear-ffn-flat", "-w", "opt-66b", "--set", "seq_len=196608", "--set", "batch=1")
    point = prepare("linear-ffn-flat", workload="opt-66b", sets=FFN_SIZES)
    expected = {g.name: {"loops[0]": {"level": "DRAM", "ranks": {"S": g.loops[0].factor, "B": None,
                                                                 "P": g.loops[2].factor}}}
                for g in point.mapping.groups}
    shown = cli_json("run", *args)
    assert shown["searched_loops"] == expected and "searched_loops" not in shown["record"]
    text = cli("run", *args).output
    for group, entries in expected.items():
        ranks = entries["loops[0]"]["ranks"]
        assert f"{group} loops[0]: {{level: DRAM, ranks: {{S: {ranks['S']}, B: ~, P: {ranks['P']}}}}}" in text
    data = yaml.safe_load((Path(__file__).parents[1] / "mappings" / "linear-ffn-flat.yaml").read_text())
    for group in data["groups"]:
        group["loops"][0] = expected[group["name"]]["loops[0]"]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(data, sort_keys=False))
    pasted = cli_json("run", "-m", str(fixed), *args[2:])
    assert pasted["searched_loops"] == {}
    assert pasted["latency_s"] == shown["latency_s"] and pasted["energy_pj"] == shown["energy_pj"]


def test_a_thinned_search_of_many_architectures_chooses_what_each_alone_does(fmx2):
    """`search_many` refines the points of one candidate together (one scoring call for them), each point taking
    the path it takes alone: buffers and bandwidths apart, the refinement parts them."""
    base = prepare(fmx2, arch=_small_fusemax(), workload="bert-base", sets=FMX2_SIZES)
    archs = [base.arch.with_changes(**{"memories.GlobalBuffer.capacity_bytes": kib * 1024,
                                       "memories.DRAM.bandwidth_bytes_per_s": gbs * 2**30})
             for kib in (512, 2048, 8192) for gbs in (25, 400)]

    def scored(trial, gi, members):
        return [score(evaluate(base.binding, base.analysis, archs[p], trial, only_group=gi)) for p in members]

    together = search_many(base.binding, archs, fmx2, scored, max_candidates=64)
    alone = [search(base.binding, arch, fmx2, lambda trial, gi, arch=arch: evaluate(
        base.binding, base.analysis, arch, trial, only_group=gi), max_candidates=64) for arch in archs]
    factors = [[lp.factor for lp in m.groups[0].loops] for m in together]
    assert factors == [[lp.factor for lp in m.groups[0].loops] for m in alone]
    assert len({tuple(f) for f in factors}) > 1
