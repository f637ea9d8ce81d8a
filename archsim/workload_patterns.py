"""Per-head sparse-attention pattern maps: workload data saying which pattern each head of a model runs.

    name: llama3-8b-262k-minference
    model: llama3-8b          # the workload the map was made for (required)
    description: one line
    source: where the counts come from
    layers: 32
    heads: 32                 # heads per layer the map covers
    head_kind: query          # query (attention heads) or kv (KV heads: DuoAttention's gates are per KV head)
    patterns:                 # head counts; they sum to layers x heads
      - {pattern: vertical_slash, k_v: 1000, k_s: 6096, heads: 473}
      - {pattern: streaming, sinks: 128, recent: 256, heads: 128}

Patterns and their settings (whole numbers, in tokens; positive but where zero means something, `ZERO_OK`):
`vertical_slash` (k_v >= 0, k_s: MInference Alg. 2; the sizes as written: MInference's code runs
max(k_v, 30) and max(k_s, 50), forcing the first 30 columns, so a k_v of 0 runs 30 verticals,
`sparse_density.vertical_slash_sizes`; seqpar-sparse.md §3.1), `block_sparse` (k_b blocks
of `block` tokens: Alg. 3), `a_shape` (sinks >= 0, window: no sink is a sliding window), `streaming` (sinks >= 0,
recent >= 0, not both 0: DuoAttention's streaming heads, as `kv_selection` takes them), `retrieval` and `dense` (full
KV, no settings; DuoAttention takes a dense head as a retrieval head). A map says how many heads run each
setting, not which ones: the shipped MInference and DuoAttention configs are used here for their counts (a model
of time or memory needs the mix, not the head order). A map is a setting of the model it was made for (MInference
searches its patterns on a model, DuoAttention trains its gates on one: seqpar-sparse.md §3.1, §3.3), so `model`
names that workload, with no default, and the sparse models run a map only on the workload of that name
(`archsim.systems.sparse_points.check_map`); to apply a map to another model anyway, copy it and set `model:`.
Every bad value is a SpecError naming the file and field;
every count and setting is within the size limit (ARCHSIM_MAX_SIZE), as a workload's sizes are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsim import library
from archsim.errors import LimitError, SpecError, check_keys, kind_of
from archsim.spec_files import read_yaml
from archsim.workload import max_size, size_limit_problem

PACKAGE = "archsim.library.workloads.patterns"  # workloads/patterns/ in the repository
SETTINGS = {
    "vertical_slash": ("k_v", "k_s"),
    "block_sparse": ("k_b", "block"),
    "a_shape": ("sinks", "window"),
    "streaming": ("sinks", "recent"),
    "retrieval": (),
    "dense": (),
}
ZERO_OK = {("vertical_slash", "k_v"), ("a_shape", "sinks"), ("streaming", "sinks"), ("streaming", "recent")}
HEAD_KINDS = ("query", "kv")
TOP_KEYS = ("name", "model", "description", "source", "layers", "heads", "head_kind", "patterns")


@dataclass(frozen=True)
class HeadPattern:
    """One line of a map's `patterns`: a pattern, its settings (tokens) and how many heads of the whole model run it."""

    pattern: str
    heads: int  # heads of the whole model running this setting
    settings: dict[str, int]


@dataclass(frozen=True)
class PatternMap:
    """A model's per-head pattern map (module docstring): how many of its `layers` x `heads` heads (query or KV
    heads, `head_kind`) run each pattern and setting."""

    name: str
    model: str  # the name of the workload it was made for
    description: str
    source: str
    layers: int
    heads: int  # per layer
    head_kind: str
    patterns: tuple[HeadPattern, ...]
    path: str = field(default="<python>", compare=False)  # the file it was read from, for messages

    @property
    def total_heads(self) -> int:
        return self.layers * self.heads

    def fraction(self, pattern: str) -> float:
        """Share of the model's heads that run `pattern` (any settings)."""
        return sum(p.heads for p in self.patterns if p.pattern == pattern) / self.total_heads


def load_pattern_map(name_or_path: str | Path) -> PatternMap:
    """A shipped map by name (workloads/patterns/<name>.yaml) or a YAML file by path."""
    path = library.find("pattern maps", name_or_path, PACKAGE)
    return pattern_map_from_dict(read_yaml(path), str(path))


def _count(value: Any, source: str, where: str, minimum: int = 1) -> int:
    """A whole number of at least `minimum` within the size limit (`archsim.workload.max_size`, as a workload's
    sizes: a model refusing it later would name its own option, `--sinks`, not this field)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise SpecError(source, where, f"expected {expected}, got {value!r}")
    problem = size_limit_problem(value, max_size())
    if problem:
        raise LimitError(source, where, problem)
    return value


def _text(data: dict, key: str, source: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise SpecError(source, key, f"expected text, got {value!r}")
    return value


def pattern_map_from_dict(data: Any, source: str = "<python>") -> PatternMap:
    """Validate `data` (the YAML form, module docstring) into a PatternMap blamed on `source`; every bad value is a
    SpecError naming the field."""
    if not isinstance(data, dict):
        raise SpecError(source, "", "expected a mapping with name, model, layers, heads, head_kind, patterns")
    check_keys(data, TOP_KEYS, source)
    name = data.get("name")
    if name is None or name == "":
        raise SpecError(source, "name", "missing (expected the map's name)")
    if not isinstance(name, str):
        raise SpecError(source, "name", f"expected a string, got {kind_of(name)} {name!r}")
    model = data.get("model")
    if model is None or model == "":
        raise SpecError(source, "model", "missing (expected the name of the workload the map was made for, e.g. "
                                         "llama3-8b: a map is that model's setting, applied to no other)")
    if not isinstance(model, str):
        raise SpecError(source, "model", f"expected a workload's name, got {kind_of(model)} {model!r}")
    layers = _count(data.get("layers"), source, "layers")
    heads = _count(data.get("heads"), source, "heads")
    head_kind = data.get("head_kind")
    if head_kind not in HEAD_KINDS:
        raise SpecError(source, "head_kind", f"expected one of {', '.join(HEAD_KINDS)}, got {head_kind!r}")
    raw = data.get("patterns")
    if not isinstance(raw, list) or not raw:
        raise SpecError(source, "patterns", "expected a non-empty list of {pattern: ..., heads: ..., settings}")
    patterns = tuple(_head_pattern(entry, source, f"patterns[{i}]") for i, entry in enumerate(raw))
    total = sum(p.heads for p in patterns)
    if total != layers * heads:
        raise SpecError(source, "patterns", f"the head counts sum to {total}, expected layers x heads = "
                                            f"{layers} x {heads} = {layers * heads}")
    return PatternMap(name, model, _text(data, "description", source), _text(data, "source", source), layers, heads,
                      head_kind, patterns, source)


def _head_pattern(entry: Any, source: str, where: str) -> HeadPattern:
    if not isinstance(entry, dict):
        raise SpecError(source, where, f"expected a mapping such as {{pattern: vertical_slash, k_v: 1000, "
                                       f"k_s: 6096, heads: 473}}, got {entry!r}")
    pattern = entry.get("pattern")
    if not isinstance(pattern, str) or pattern not in SETTINGS:  # a mapping or list is no name (nor hashable)
        raise SpecError(source, f"{where}.pattern", f"expected one of {', '.join(SETTINGS)}, got {pattern!r}")
    names = SETTINGS[pattern]
    check_keys(entry, ("pattern", "heads", *names), source, where)
    for key in names:
        if key not in entry:
            raise SpecError(source, f"{where}.{key}", f"missing ({pattern} needs {', '.join(names)})")
    settings = {key: _count(entry[key], source, f"{where}.{key}", 0 if (pattern, key) in ZERO_OK else 1)
                for key in names}
    if pattern == "streaming" and not settings["sinks"] + settings["recent"]:
        raise SpecError(source, f"{where}.recent", "expected sinks + recent >= 1: a streaming head attends to some "
                                                   "tokens")
    return HeadPattern(pattern, _count(entry.get("heads"), source, f"{where}.heads"), settings)


def mean_vertical_slash_density(patterns: PatternMap, n: int, block: int = 64) -> float:
    """Head-weighted density (kept over causal points) of a map whose heads are all vertical-slash, at kernel
    granularity (`archsim.cascade.sparse_density`), at the sizes MInference runs (`sparse_density.vertical_slash_sizes`:
    k_v >= 30, k_s >= 50, both at most n)."""
    from archsim.cascade.sparse_density import vertical_slash_kept_points, vertical_slash_sizes

    others = sorted({p.pattern for p in patterns.patterns} - {"vertical_slash"})
    if others:
        raise SpecError(patterns.name, "patterns", f"expected vertical_slash heads only, got {', '.join(others)}")
    kept = sum(p.heads * vertical_slash_kept_points(n, *vertical_slash_sizes(p.settings["k_v"], p.settings["k_s"], n),
                                                    block)
               for p in patterns.patterns)
    return kept / (patterns.total_heads * math.comb(n + 1, 2))
