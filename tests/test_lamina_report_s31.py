"""The Lamina report page and pipeline trace as a reader sees them (issue 16, an audit's findings): the event
model's replica spans name what runs in them (the previous layer's post-attention ops, the LM head, then the
layer's norm + QKV), the ping-pong figure draws a steady window, a rotational staggered pipeline (3 micro-batches
on 2 replicas) is drawn and traced beside it, tokens per dollar is drawn, and the page's text says what the
points are (similar cost, vLLM's scheduler limit, the paper's BW_min bound up to batch 300)."""

from __future__ import annotations

import re

import pytest

from archsim.report import lamina as page
from archsim.systems import lamina_reproduce as lamina
from archsim.systems.offload_events import model_pipeline

CONTEXT, BATCH, TOKENS = 1024, 64, 2
_NAME = re.compile(r"^mb(\d+) t(\d+) (?:L(\d+) (post|dense)|(LM head))$")


@pytest.fixture(scope="module")
def ping_pong():
    """LLaMA3-70B on Lamina DOP (2, 4): ping-pong, 64 requests at 1024 tokens, 2 tokens, with spans."""
    return lamina.pipeline_run(batch=BATCH, context=CONTEXT, tokens=TOKENS)


def _replica_spans(run, j: int) -> list:
    return sorted((s for s in run.spans if s.resource.startswith("replica") and s.name.startswith(f"mb{j} ")),
                  key=lambda s: s.start_s)


def test_a_slice_is_the_last_layers_post_the_head_then_the_layers_dense(ping_pong) -> None:
    """A slice of layer k: the ops after attention k - 1 (`post_s`, tagged layer k - 1; at k = 0 the previous
    token's last layer), at a token's first slice the previous token's LM head (`heads_s[j]`), then the norm and
    QKV of layer k (norm_s + q_s + kv_s), back to back on the replica (the module docstring). The "L1 dense" span
    held L0's post-attention ops (mb0 t0 L0 dense 40.0 us; L79 364.3 us) and no span was named for the head."""
    model, run = ping_pong
    contexts = [CONTEXT] * BATCH
    layers, heads = model.micro_batch_layers(contexts), model.heads_s(contexts)
    last = model.layers - 1
    for j, (layer, head_s) in enumerate(zip(layers, heads, strict=True)):
        spans = _replica_spans(run, j)
        names = [s.name for s in spans]
        expected = [f"mb{j} t0 L0 dense"]
        for k in range(1, model.layers):
            expected += [f"mb{j} t0 L{k - 1} post", f"mb{j} t0 L{k} dense"]
        expected += [f"mb{j} t0 L{last} post", f"mb{j} t0 LM head", f"mb{j} t1 L0 dense"]
        for k in range(1, model.layers):
            expected += [f"mb{j} t1 L{k - 1} post", f"mb{j} t1 L{k} dense"]
        assert names == expected  # token 1's tail (L79 post, head) runs in token 2's slice: not kept
        for span in spans:
            part = _NAME.match(span.name)
            duration = span.end_s - span.start_s
            if part.group(4) == "post":
                assert duration == pytest.approx(layer.post_s, rel=1e-9)
            elif part.group(4) == "dense":
                assert duration == pytest.approx(layer.norm_s + layer.q_s + layer.kv_s, rel=1e-9)
            else:
                assert duration == pytest.approx(head_s, rel=1e-9) and head_s > 0
        head = names.index(f"mb{j} t0 LM head")
        post, lm_head, dense = spans[head - 1:head + 2]
        assert post.end_s == lm_head.start_s and lm_head.end_s == pytest.approx(dense.start_s, rel=1e-12)


def test_the_labels_do_not_move_the_run(ping_pong) -> None:
    """Spans are labels: the run with them is the run without them, token by token."""
    model, run = ping_pong
    bare = model_pipeline(model, [CONTEXT] * BATCH, TOKENS)
    assert bare.token_done_s == run.token_done_s and not bare.spans


def test_the_ping_pong_figure_draws_a_steady_window(ping_pong) -> None:
    """The figure starts where micro-batch 0's token 0 is back (its token 1: no start-up, where replica 0 idled
    from 40 to 364 us while micro-batch 1 waited a slice) and runs over its first `PIPELINE_LAYERS` layers; the
    LM heads are in it."""
    _, run = ping_pong
    from_s = run.token_done_s[0][0]
    rows = page.pipeline_rows(run.spans, token=page.PIPELINE_TOKEN, from_s=from_s)
    assert page.PIPELINE_TOKEN == 1
    assert (rows.end_s > from_s).all()
    assert {"mb0 t0 LM head", "mb1 t0 LM head"} <= set(rows.name)
    assert rows[rows.part == "LM head"].layer.isna().all()
    dense = rows[(rows.micro_batch == 0) & (rows.part == "dense")]
    assert set(dense.token) == {1} and set(dense.layer) == set(range(page.PIPELINE_LAYERS))
    fig = page.pipeline_figure(rows, page.pipeline_resources(run.spans), "ping-pong", from_s=from_s)
    assert fig.axes[0].get_xlim()[0] == pytest.approx(from_s * 1e6)


def test_a_staggered_pipeline_is_drawn_and_traced() -> None:
    """Rotational staggered pipelining (pim.md §3.4): 3 micro-batches on 2 replicas of TP 2 and the pool of 4,
    DOP (4, 4); slice k of micro-batch j on replica (j + k) mod 2, so micro-batch 0's slices alternate replicas,
    and the trace has a track per replica. The system is lamina_reproduce's (`staggered_system`), the report only
    draws it."""
    model, run = lamina.pipeline_run(batch=BATCH, context=CONTEXT, tokens=TOKENS, staggered=True)
    assert model.system == lamina.staggered_system(lamina.BW_MODEL)
    assert (model.micro_batches, model.replicas, model.compute.parallelism.tp, model.pool_devices) == (3, 2, 2, 4)
    assert model.system.schedule.kind == "staggered" and "dop(4,4)" in model.name
    dense = [s for s in _replica_spans(run, 0) if s.name.endswith(" dense")]
    assert [s.resource for s in dense[:4]] == ["replica 0", "replica 1", "replica 0", "replica 1"]
    trace = lamina.run_trace(model, run, BATCH, CONTEXT)
    tracks = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"replica 0", "replica 1"} <= tracks
    assert "LM head" in trace["otherData"]["spans"]


def _record(model: str, trace: str, system: str, cost_per_h: float, tok_s: float, batch: float) -> dict:
    return {"model": model, "trace": trace, "system": system, "cost_per_h": cost_per_h, "throughput_tok_s": tok_s,
            "tokens_per_usd": tok_s * 3600 / cost_per_h, "batch": batch}


# pim.md §3.5: DOP (1, 2) at $20.32/h against 2 H100 at $22.12/h; (2, 4) at $40.64/h against 4 H100 at $44.24/h
RECORDS = [_record("llama-33b", "azure-conv", lamina.SYSTEM, 20.32, 2000.0, 90.0),
           _record("llama-33b", "azure-conv", lamina.BASELINE, 22.12, 1000.0, 40.0),
           _record("llama-33b", "azure-conv", lamina.UNCAPPED, 22.12, 1000.0, 40.0),
           _record("llama3-70b", "azure-conv", lamina.SYSTEM, 40.64, 9000.0, 950.0),
           _record("llama3-70b", "azure-conv", lamina.BASELINE, 44.24, 8000.0, 256.0),
           _record("llama3-70b", "azure-conv", lamina.UNCAPPED, 44.24, 9000.0, 366.0)]


def test_tokens_per_dollar_is_drawn_beside_throughput() -> None:
    """A bar per system of tokens per dollar (throughput x 3600 / price per hour), the ratio over each pair:
    llama-33b 2000 x 3600 / 20.32 against 1000 x 3600 / 22.12, 2.177x."""
    figures = page.pair_figures(RECORDS)
    assert list(figures) == ["throughput", "tokens_per_usd", "batch"]
    rows, fig = figures["tokens_per_usd"]
    assert rows[lamina.SYSTEM].tolist() == pytest.approx([2000 * 3600 / 20.32, 9000 * 3600 / 40.64])
    assert rows["ratio"].iloc[0] == pytest.approx(2000 / 20.32 / (1000 / 22.12))
    heights = sorted(bar.get_height() for bar in fig.axes[0].patches)
    assert heights == pytest.approx(sorted(rows[list(page.SYSTEMS)].to_numpy().ravel()))


def test_the_text_says_similar_cost_and_the_schedulers_limit() -> None:
    """The costs differ ($20.32 against $22.12): not "equal cost"; vLLM's batch is capped at 256 (LLaMA3-70B on
    Azure-Conv: 256 where the uncapped baseline reaches 366), so the scheduler is not "unbounded"."""
    cost = page.cost_text(RECORDS)
    assert "equal cost" not in cost and "similar cost" in cost
    assert "$20.32" in cost and "$22.12" in cost and "$40.64" in cost and "$44.24" in cost
    batch = page.batch_text(RECORDS)
    assert "unbounded" not in batch and str(lamina.VLLM_MAX_NUM_SEQS) in batch
    assert "llama3-70b azure-conv" in batch and "366" in batch and "llama-33b" not in batch


def test_the_papers_bw_min_bound_is_drawn_up_to_batch_300() -> None:
    """pim.md: BW_min <= 30 GB/s at batch <= 300; the line stopped at no batch (drawn across 1-1000)."""
    rows = page.pd.DataFrame(lamina.bw_min())
    cross = {"batch": 300, "context": 128, "slowdown": 0.27, "alpha": 0.2}
    fig = page.bw_min_figure(rows, page.link_rows(), cross)
    paper = [c for c in fig.axes[0].collections if c.get_label().startswith("paper")]
    assert len(paper) == 1
    (segment,) = paper[0].get_segments()
    assert segment[:, 0].max() == page.PAPER_BW_MAX_BATCH == 300
    assert segment[:, 1].tolist() == [30.0, 30.0]
