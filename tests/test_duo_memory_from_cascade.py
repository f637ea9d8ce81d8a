"""DuoAttention's KV memory is the `duoattention-decode` cascade's count (issue 19: "DuoAttention's memory at 500K
(weights + KV of retrieval heads + windows), from the cascades' byte counts").

Expected numbers are closed forms from the shapes: one token of one KV head of one layer is K and V, head_dim 128,
fp16 = 2 x 128 x 2 = 512 B; a layer with n retrieval KV heads of G keeps n x context + (G - n) x min(context,
sinks + recent) tokens per KV head. They are checked against the cascade's own analysis (`analyze`: its K and V
bytes times the kept fraction of QK's points under the `duo` mask), and a cascade whose mask keeps more tokens moves
the memory: the number is read from the cascade, not computed beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import bind
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection as ks
from archsim.systems.sparse_points import duo_window
from archsim.workload_patterns import load_pattern_map

TOKEN_HEAD_LAYER_BYTES = 2 * 128 * 2  # K and V x head_dim 128 x fp16
LAYERS = 32


def _cascade_kept_bytes(workload, context: int, retrieval: int, sinks: int, recent: int) -> float:
    """One layer's kept K and V as the cascade's analysis counts them: K and V bytes times QK's kept points over its
    unmasked points (B x G x R x M x E)."""
    cascade = library.load_cascade_spec("duoattention-decode")
    kv_heads = int(workload.params["kv_heads"])
    binding = bind(cascade, workload, {"batch": 1, "seq_len": context, "sinks": sinks, "recent": recent,
                                       "retrieval_fraction": retrieval / kv_heads})
    analysis = analyze(binding)
    tensors = {t.name: t.bytes for t in analysis.tensors}
    unmasked = (kv_heads * (int(workload.params["heads"]) // kv_heads) * context * int(workload.params["head_dim"]))
    return (tensors["K"] + tensors["V"]) * analysis.points["QK"] / unmasked


@pytest.mark.parametrize(("model", "context", "retrieval_per_layer", "sinks", "recent"), [
    ("llama3-8b", 500_000, 4, 128, 256),  # 50 % of 8 KV heads: the reproduction's 48.85 GB point
    ("llama2-7b", 20_000, 8, 128, 256),  # 25 % of 32 heads (MHA)
    ("llama3-8b", 300, 4, 128, 256),  # the window holds the whole context: every head keeps all 300 tokens
])
def test_duo_memory_is_the_cascades_count(model: str, context: int, retrieval_per_layer: int, sinks: int,
                                         recent: int) -> None:
    workload, a100 = library.load_workload_spec(model), load_gpu("a100-80gb-sxm4")
    kv_heads = int(workload.params["kv_heads"])
    fraction = retrieval_per_layer / kv_heads
    result = ks.duo_decode(workload, a100, context, fraction, sinks=sinks, recent=recent)
    kv = result.memory_bytes - ks.weight_bytes(workload)
    window = min(context, sinks + recent)
    closed_form = LAYERS * TOKEN_HEAD_LAYER_BYTES * (retrieval_per_layer * context
                                                     + (kv_heads - retrieval_per_layer) * window)
    assert kv == closed_form
    assert kv == LAYERS * _cascade_kept_bytes(workload, context, retrieval_per_layer, sinks, recent)
    retrieval = (retrieval_per_layer,) * LAYERS
    assert ks.duo_kv_bytes(workload, context, retrieval, sinks, recent) == closed_form


def test_duo_memory_at_500k_is_the_audits_48_85_gb() -> None:
    """Llama-3-8B, 50 % retrieval heads (the shipped map), 500K tokens: weights 16,060,514,304 B (test_kv_selection:
    the HF count less the final norm, fp16) plus 32 x 512 x (4 x 500000 + 4 x 384) B of KV = 48.85 GB."""
    workload = library.load_workload_spec("llama3-8b")
    fraction, sinks, recent = duo_window(workload, load_pattern_map("llama3-8b-duo-50"))
    assert (fraction, sinks, recent) == (0.5, 128, 256)
    result = ks.duo_decode(workload, load_gpu("a100-80gb-sxm4"), 500_000, fraction, sinks=sinks, recent=recent)
    assert result.memory_bytes == 16_060_514_304 + 32 * 512 * (4 * 500_000 + 4 * 384)
    assert round(result.memory_bytes / 1e9, 2) == 48.85


def test_a_cascade_keeping_more_moves_the_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The `duo` mask read from a copy of the cascade whose streaming heads keep twice the sinks: the memory grows
    by (G - n) x sinks more tokens per layer, 32 x 512 x 4 x 128 B on Llama-3-8B at 50 %."""
    original = library.load_cascade_spec
    data = yaml.safe_load(Path(original("duoattention-decode").source).read_text())
    data["masks"]["duo"] = {"predicate": "RETRIEVAL[g] > 0 or m < 2 * sinks or m >= seq_len - recent",
                            "density": "retrieval_fraction + (1 - retrieval_fraction) * (2 * sinks + recent) / seq_len"}
    path = tmp_path / "duoattention-decode.yaml"
    path.write_text(yaml.safe_dump(data))
    workload, a100 = library.load_workload_spec("llama3-8b"), load_gpu("a100-80gb-sxm4")
    before = ks.duo_decode(workload, a100, 100_000, 0.5).memory_bytes
    monkeypatch.setattr(library, "load_cascade_spec",
                        lambda name: original(path if name == "duoattention-decode" else name))
    after = ks.duo_decode(workload, a100, 100_000, 0.5).memory_bytes
    assert after - before == 32 * 512 * 4 * 128
