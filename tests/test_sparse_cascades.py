"""Sparse-prefill and KV-selection cascades (issue 19): MInference's A-shape, vertical-slash and block-sparse heads,
FlexPrefill, DuoAttention (decode, prefill), RazorAttention, Quest and TokenSelect decode; the vertical-slash density
at kernel granularity; per-head pattern maps.

Expectations: (a) each cascade equals its reference in archsim.cascade.references, dense softmax attention under
the method's mask built the textbook way (argsort top-k; forced positions set to +inf as MInference's code does), in
float64 (error < 1e-9), at several sizes and seeds, and a cascade with a step of the method broken misses it by
> 1e-3; (b) Quest's loaded fraction 1/page + K/pages (Quest Sec. 3; 64K context, 4K budget -> 8x less) from
`analyze`'s tensor bytes; (c) MInference App. F's > 90 % sparsity past 200K and > 95 % past 500K from the mask rule
at kernel granularity; (d) exact counts of the static masks from hand formulas.
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.references import REFERENCES
from archsim.cascade.sparse_density import vertical_slash_density, vertical_slash_kept_points
from archsim.errors import SpecError
from archsim.spec_files import read_yaml
from archsim.workload_patterns import load_pattern_map, mean_vertical_slash_density, pattern_map_from_dict

TOLERANCE = 1e-9  # float64; the cascade and the reference both subtract the maximum before exp

GQA, MHA = {"heads": 4, "kv_heads": 2}, {"heads": 2, "kv_heads": 2}
SIZES = {
    "minference-a-shape": [{}, {**MHA, "seq_len": 33, "sinks": 1, "window": 5},
                           {"seq_len": 20, "sinks": 0, "window": 1}],
    "minference-vertical-slash": [{}, {**MHA, "seq_len": 40, "last_q": 16, "k_v": 10, "k_s": 3, "sink_columns": 3,
                                       "local_diagonals": 1}, {"seq_len": 24, "last_q": 4, "k_v": 2, "k_s": 12}],
    "minference-block-sparse": [{}, {**MHA, "seq_len": 64, "block": 4, "k_b": 5},
                                {"seq_len": 32, "block": 16, "k_b": 1}],
    "duoattention-decode": [{}, {**MHA, "seq_len": 64, "sinks": 1, "recent": 16}, {"seq_len": 8}],
    "duoattention-prefill": [{}, {**MHA, "seq_len": 40, "sinks": 0, "recent": 3}],
    "razorattention-decode": [{}, {**MHA, "seq_len": 100, "min_window": 30}, {"seq_len": 8}, {"seq_len": 37}],
    "quest-decode": [{}, {"seq_len": 96, "page": 8, "budget_pages": 3}, {"seq_len": 32, "page": 16, "budget_pages": 1}],
    # random inputs spread attention evenly: a small gamma makes the selection sparse; tau 0 / 10 forces
    # vertical-slash / block-sparse on every head
    "flexprefill": [{}, {"seq_len": 96, "gamma": 0.3, "tau": 0.0}, {"seq_len": 64, "gamma": 0.5, "tau": 10.0},
                    {**MHA, "seq_len": 64, "block": 16, "gamma": 0.3, "tau": 10.0}],
    "tokenselect-decode": [{}, {**MHA, "seq_len": 64, "k": 20, "sinks": 0, "local": 1}, {**GQA, "heads": 8, "k": 1}],
}

def _inputs(binding: Binding, seed: int) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs; a head map has both kinds of head (retrieval > 0 first, then alternating)."""
    inputs = random_inputs(binding, seed)
    if "RETRIEVAL" in inputs:
        inputs["RETRIEVAL"] = np.where(np.arange(inputs["RETRIEVAL"].size) % 2 == 0, 1.0, -1.0)
    return inputs

def _error(binding: Binding, inputs: dict[str, np.ndarray]) -> float:
    want = REFERENCES[binding.cascade.reference](inputs, binding.params)["AV"]
    got = execute(binding, inputs)["AV"]
    assert got.shape == want.shape and np.isfinite(got).all()
    return float(np.max(np.abs(got - want)))

@pytest.mark.parametrize(("name", "params"), [(n, p) for n, sizes in SIZES.items() for p in sizes],
                         ids=[f"{n}-{i}" for n, sizes in SIZES.items() for i in range(len(sizes))])
def test_cascade_equals_dense_attention_under_the_methods_mask(name: str, params: dict) -> None:
    binding = bind(library.load_cascade_spec(name), params)
    for seed in (0, 1, 2):
        assert _error(binding, _inputs(binding, seed)) < TOLERANCE

BROKEN: list[tuple[str, str, str, dict]] = [
    # the forced diagonals counted outside k_s (one slash too many per forced one)
    ("minference-vertical-slash", "SR[b,g,r,d] < k_s - local_diagonals", "SR[b,g,r,d] < k_s", {}),
    # slashes read along the anti-diagonal's direction (m - p instead of p - m)
    ("minference-vertical-slash", "where d == p - m", "where d == m - p", {}),
    # one key block more than k_b per query block
    ("minference-block-sparse", "BR[b,g,r,i,j] < k_b", "BR[b,g,r,i,j] <= k_b", {}),
    # the compensation token left out of the softmax's denominator
    ("razorattention-decode", "(SD[b,g,r] + SC[b,g,r])", "SD[b,g,r]", {}),
    # Quest's bound from the page maxima only (not an upper bound for negative q_i)
    ("quest-decode", "max(Q[b,h,e] * KMIN[b,h,j,e], Q[b,h,e] * KMAX[b,h,j,e])", "Q[b,h,e] * KMAX[b,h,j,e]", {}),
    # TokenSelect's vote from the raw scores instead of the per-head softmax
    ("tokenselect-decode", "sum(g, r: P[b,g,r,m])", "sum(g, r: QK[b,g,r,m])", {}),
    # FlexPrefill's head test inverted (block-sparse where the estimate is far from A-hat)
    ("flexprefill", "sqrt(JS[b,g,r]) < tau", "sqrt(JS[b,g,r]) > tau", {"seq_len": 64, "gamma": 0.3, "tau": 0.15}),
    # the vertical coverage against gamma of one row instead of the last block's rows
    ("flexprefill", "VG[b,g,r,m] < gamma * block", "VG[b,g,r,m] < gamma", {"seq_len": 96, "gamma": 0.3, "tau": 0.0}),
]

# broken steps that leave a tensor unread: refused when the cascade loads, naming it (tests/test_cascade_lang_s51.py)
UNREAD = {"Q[b,h,e] * KMAX[b,h,j,e]": "inputs.KMIN", "sum(g, r: QK[b,g,r,m])": "einsums[3] (SD)"}

@pytest.mark.parametrize(("name", "right", "wrong", "params"), BROKEN,
                         ids=[f"{n}-{i}" for i, (n, *_) in enumerate(BROKEN)])
def test_a_broken_step_is_caught(name: str, right: str, wrong: str, params: dict) -> None:
    data = read_yaml(library.find("cascades", name))
    assert data["einsums"].count(right) == 1
    data["einsums"] = data["einsums"].replace(right, wrong)
    if wrong in UNREAD:
        with pytest.raises(SpecError) as refused:
            cascade_from_dict(data)
        assert refused.value.where == UNREAD[wrong], refused.value
        return
    broken = bind(cascade_from_dict(data), params)
    errors = [_error(broken, _inputs(broken, seed)) for seed in range(4)]
    assert max(errors) > 1e-3, errors

@pytest.mark.parametrize("name", ["minference-vertical-slash", "flexprefill"])
def test_the_default_density_is_the_executed_one(name: str) -> None:
    """The analysis counts `density` of the causal points: at the defaults it is the executed mask's mean."""
    binding = bind(library.load_cascade_spec(name))
    n = int(binding.params["seq_len"])
    for seed in range(5):
        scores = execute(binding, _inputs(binding, seed))["QK"]
        kept = np.isfinite(scores).sum() / (scores.size / n**2)
        assert kept / (n * (n + 1) / 2) == pytest.approx(binding.params["density"], abs=0.03)

@pytest.mark.parametrize(("seq_len", "block", "k_b"), [
    (48, 8, 2), (64, 4, 5), (64, 8, 3), (32, 16, 1), (40, 8, 4), (40, 8, 5), (48, 8, 9), (96, 16, 100)],
    ids=lambda v: str(v))
def test_block_sparse_counts_its_top_k_blocks(seq_len: int, block: int, k_b: int) -> None:
    """Top-k keeps min(k_b, i + 1) of query block i's causal key blocks (k_b below and above the n blocks). The
    count assumes the diagonal block is among them, attended in its causal half (block (block + 1) / 2 points; the
    others whole, block^2): the executed mask holds exactly that plus block (block - 1) / 2 points per query block
    whose diagonal block the selection dropped (random scores drop some; with k_b >= n none can be)."""
    binding = bind(library.load_cascade_spec("minference-block-sparse"), {"seq_len": seq_len, "block": block,
                                                                          "k_b": k_b})
    n, heads = seq_len // block, int(binding.params["heads"])
    per_head = sum((min(k_b, i + 1) - 1) * block * block + block * (block + 1) // 2 for i in range(n))
    assert analyze(binding).points["GM"] == heads * per_head
    for seed in range(3):
        tensors = execute(binding, _inputs(binding, seed))
        rows = tensors["BSEL"].reshape(heads, n, n)
        assert (np.count_nonzero(rows, axis=-1) == np.minimum(k_b, np.arange(n) + 1)).all()
        dropped = int(np.sum(np.diagonal(rows, axis1=-2, axis2=-1) == 0))
        assert np.isfinite(tensors["QK"]).sum() == heads * per_head + dropped * block * (block - 1) // 2
        if k_b >= n:
            assert dropped == 0

def test_quest_loads_one_over_page_plus_budget_over_pages() -> None:
    """Quest Sec. 3: page metadata (min and max keys, 2 x d per page) plus the K selected pages' keys and values
    is 1/PageSize + K/PageNum of the KV cache; 64K context, page 16, a 4096-token budget: 1/16 + 256/4096 = 1/8."""
    binding = bind(library.load_cascade_spec("quest-decode"),
                   {"batch": 1, "heads": 32, "seq_len": 65536, "head_dim": 128, "page": 16, "budget_pages": 256})
    tensor_bytes = {t.name: t.bytes for t in analyze(binding).tensors}
    loaded = sum(tensor_bytes[t] for t in ("KMIN", "KMAX", "KS", "VS"))
    assert loaded / (tensor_bytes["K"] + tensor_bytes["V"]) == pytest.approx(1 / 16 + 256 / 4096, rel=1e-12)
    assert loaded / (tensor_bytes["K"] + tensor_bytes["V"]) == pytest.approx(1 / 8)

def test_vertical_slash_kernel_points_by_hand() -> None:
    """n = 128, 64-row blocks, k_v = 2, k_s = 3. Rows 0-63: the slash band is columns 0-63 (clipped at 0), no room
    for verticals left of it: 64 x 64. Rows 64-127: band columns 62-127 (66 wide) + 2 vertical strips: 64 x 68."""
    assert vertical_slash_kept_points(128, 2, 3) == 64 * 64 + 64 * 68
    assert vertical_slash_density(128, 2, 3) == (64 * 64 + 64 * 68) / (128 * 129 / 2)

def test_vertical_slash_sparsity_past_200k_and_500k() -> None:
    """MInference App. F: > 90 % sparsity past 200K and > 95 % past 500K relative to causal FlashAttention, for the
    most common shipped setting (1000, 6096) (473 of LLaMA-3-8B-262K's 1024 heads) and for the whole map. The
    setting's per-row width is about k_v + k_s + 63 = 7159 (Sec. 3.1's lower bound), less in the first rows:
    about 1 - 7159 / 100000 at 200K (the mean causal row)."""
    for n, sparsity in ((200_000, 0.90), (500_000, 0.95), (1_000_000, 0.95)):
        assert 1 - vertical_slash_density(n, 1000, 6096) > sparsity
        assert 1 - mean_vertical_slash_density(load_pattern_map("llama3-8b-262k-minference"), n) > sparsity
    assert 1 - vertical_slash_density(200_000, 1000, 6096) == pytest.approx(1 - 7159 / 100_000, abs=2e-3)
    assert 1 - vertical_slash_density(100_000, 1000, 6096) < 0.90  # not yet at 100K

def test_a_shape_counts_exactly_the_static_mask() -> None:
    """Paper budget (1024 sinks + 4096 window) at 100K tokens: row p keeps min(p + 1, 4096) window keys plus
    max(0, min(1024, p - 4095)) sinks left of the window; the analysis counts that, times batch and heads."""
    n, sinks, window = 100_000, 1024, 4096
    binding = bind(library.load_cascade_spec("minference-a-shape"),
                   {"batch": 1, "heads": 32, "kv_heads": 8, "seq_len": n, "head_dim": 128, "sinks": sinks,
                    "window": window})
    rows = np.arange(n)
    kept = int(np.sum(np.minimum(rows + 1, window) + np.clip(rows - window + 1, 0, sinks)))
    assert analyze(binding).points["GM"] == 32 * kept

def test_vertical_slash_estimation_is_counted() -> None:
    """The estimation's scores are last_q causal rows: sum_{p = n - last_q}^{n - 1} (p + 1) points per head and
    channel; the attention counts `density` of the causal points."""
    n, last_q, heads, head_dim = 4096, 64, 8, 16
    binding = bind(library.load_cascade_spec("minference-vertical-slash"),
                   {"batch": 1, "heads": heads, "kv_heads": 2, "seq_len": n, "head_dim": head_dim, "last_q": last_q,
                    "density": 0.25})
    points = analyze(binding).points
    assert points["EQK"] == heads * head_dim * sum(p + 1 for p in range(n - last_q, n))
    assert points["GM"] == round(heads * n * n * 0.25 * (n + 1) / (2 * n))

def test_duoattention_with_every_head_retrieval_is_causal_attention() -> None:
    binding = bind(library.load_cascade_spec("duoattention-prefill"))
    inputs = random_inputs(binding, 3)
    inputs["RETRIEVAL"] = np.ones_like(inputs["RETRIEVAL"])
    want = REFERENCES["attention_causal_gqa"](inputs, binding.params)["AV"]
    assert np.max(np.abs(execute(binding, inputs)["AV"] - want)) < TOLERANCE

def test_razorattention_below_the_window_is_dense_decode() -> None:
    """Inputs shorter than min_window are not compressed: every head sees the whole cache, no compensation."""
    binding = bind(library.load_cascade_spec("razorattention-decode"), {"seq_len": 8})
    inputs = _inputs(binding, 0)
    want = REFERENCES["attention_decode_gqa"](inputs, binding.params)["AV"]
    assert np.max(np.abs(execute(binding, inputs)["AV"] - want)) < TOLERANCE

def test_shipped_pattern_maps() -> None:
    """seqpar-sparse.md Sec. 3.1 and 3.3: 1024 MInference heads of LLaMA-3-8B-262K; DuoAttention 50 % of Llama-3-8B's
    256 KV heads and 25 % of Llama-2-7B's 1024 heads are retrieval heads, streaming ones keep 128 sinks + 256 recent."""
    minference = load_pattern_map("llama3-8b-262k-minference")
    assert minference.total_heads == 1024 and minference.fraction("vertical_slash") == 1.0
    assert [(p.settings["k_v"], p.settings["k_s"], p.heads) for p in minference.patterns] == [
        (1000, 6096, 473), (30, 800, 278), (100, 800, 153), (3500, 100, 89), (500, 700, 31)]
    for name, heads, retrieval in (("llama3-8b-duo-50", 256, 0.5), ("llama2-7b-duo-25", 1024, 0.25)):
        duo = load_pattern_map(name)
        assert duo.head_kind == "kv" and duo.total_heads == heads and duo.fraction("retrieval") == retrieval
        assert {tuple(p.settings.items()) for p in duo.patterns if p.pattern == "streaming"} == {
            (("sinks", 128), ("recent", 256))}

GOOD_MAP = {"name": "m", "model": "w", "layers": 2, "heads": 2, "head_kind": "query",
            "patterns": [{"pattern": "vertical_slash", "k_v": 30, "k_s": 800, "heads": 3},
                         {"pattern": "a_shape", "sinks": 1024, "window": 4096, "heads": 1}]}

@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda d: d["patterns"][0].update(heads=4), "patterns", "sum to 5, expected layers x heads = 2 x 2 = 4"),
    (lambda d: d.update(layers=0), "layers", "positive integer"),
    (lambda d: d.update(head_kind="group"), "head_kind", "query, kv"),
    (lambda d: d["patterns"][1].update(pattern="sparse"), "patterns[1].pattern", "vertical_slash"),
    (lambda d: d["patterns"][0].pop("k_s"), "patterns[0].k_s", "needs k_v, k_s"),
    (lambda d: d["patterns"][0].update(k_s=2.5), "patterns[0].k_s", "positive integer"),
    (lambda d: d["patterns"][1].update(recent=256), "patterns[1].recent", "unknown key"),
    (lambda d: d.update(patterns=[]), "patterns", "non-empty list"),
    (lambda d: d.update(extra=1), "extra", "unknown key"),
], ids=["total-heads", "layers", "head-kind", "pattern", "missing-setting", "setting-type", "foreign-setting",
        "empty", "top-key"])
def test_bad_pattern_map_names_the_field(change, field: str, words: str) -> None:
    data = {**GOOD_MAP, "patterns": [dict(p) for p in GOOD_MAP["patterns"]]}
    assert pattern_map_from_dict(data, "map.yaml").total_heads == 4
    change(data)
    with pytest.raises(SpecError) as caught:
        pattern_map_from_dict(data, "map.yaml")
    assert caught.value.source == "map.yaml" and caught.value.where == field and words in caught.value.message

def test_mean_density_refuses_other_patterns() -> None:
    with pytest.raises(SpecError, match="vertical_slash heads only"):
        mean_vertical_slash_density(load_pattern_map("llama3-8b-duo-50"), 1000)
