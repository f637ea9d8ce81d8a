"""The sparse prefill and KV-cache selection reproduction report (`archsim report --reproduction sparse`): the edge
that writes figures, CSVs and index.html for `archsim.systems.sparse_reproduce.run_all`.

Files in the output directory, each PNG beside the CSV it is drawn from:
- summary.csv: the headline rows, ours vs the public figures, within the issue's tolerance or not, and the reason.
- prefill.png/.csv: end-to-end prefill time of dense FlashAttention-2 and MInference against the context (ours as
  lines at every length, the benchmark's as points; log-log).
- density.png/.csv: the kernel-granularity sparsity of the shipped vertical-slash map
  (`workload_patterns.mean_vertical_slash_density`) against the context, with App. F's floors.
- decode.png/.csv: DuoAttention's decode time and memory against the context with dense beside (hollow markers:
  the point does not fit the GPU), and Quest's attention time against the budget per GPU with dense dashed.
The prefill gap's reason is the headline's `minference_reason` (`sparse_reproduce.prefill_gap`, the template the
reproduction's strict xfail also reads); nothing here computes it.
The folder is written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from archsim.report.figures import _colour, _figure, _title
from archsim.report.point import _save, _section, gaps_html, write_index, write_whole
from archsim.systems import sparse_reproduce as sparse
from archsim.workload_patterns import load_pattern_map, mean_vertical_slash_density


# ------------------------------------------------------------------------------------------------ tables
def summary_rows(data: dict) -> pd.DataFrame:
    """The headline rows of `run_all`'s `data`: metric, ours, paper, within and reason."""
    rows = []
    for r in data["minference"]:
        for name, ours, paper in (("dense FA-2", r["dense_s"], r["paper_dense_s"]),
                                  ("MInference", r["minference_s"], r["paper_minference_s"])):
            within = abs(ours / paper - 1) <= sparse.PREFILL_TOLERANCE
            rows.append({"metric": f"{name} prefill at {r['context'] // 1000}K (s)", "ours": ours, "paper": paper,
                         "within": within, "reason": "" if within else data["headline"]["minference_reason"]})
    slower = next(r for r in data["minference"] if r["context"] == min(sparse.PAPER["minference_prefill_s"]))
    rows.append({"metric": f"MInference over dense prefill at {slower['context'] // 1000}K (x)",
                 "ours": slower["minference_s"] / slower["dense_s"],
                 "paper": slower["paper_minference_s"] / slower["paper_dense_s"],
                 "within": data["headline"]["minference_slower_at_10k"], "reason": ""})
    for r in data["density"]:
        rows.append({"metric": f"vertical-slash sparsity at {r['context'] // 1000}K (above)", "ours": r["sparsity"],
                     "paper": r["above"], "within": r["sparsity"] > r["above"], "reason": ""})
    for r in data["duo_up_to"]:
        for name, key in (("memory saving", "memory"), ("decode speed-up", "decode")):
            rows.append({"metric": f"DuoAttention {name}, {r['model']} at {r['context'] // 1000}K (x)",
                         "ours": r[key], "paper": r[f"paper_{key}"], "within": None, "reason": sparse.DUO_NO_CLAIM})
    return pd.DataFrame(rows, columns=["metric", "ours", "paper", "within", "reason"])


def prefill_table(data: dict) -> pd.DataFrame:
    """Ours at every MInference length, the benchmark's where it has one."""
    ours = pd.DataFrame([p for p in data["points"] if p["method"] == "MInference"])
    ours = ours[["context", "dense_time_s", "time_s"]].rename(columns={"dense_time_s": "dense_s",
                                                                       "time_s": "minference_s"})
    paper = pd.DataFrame(data["minference"])[["context", "paper_dense_s", "paper_minference_s"]]
    return ours.merge(paper, on="context", how="left")


def density_table(data: dict) -> pd.DataFrame:
    """The shipped map's sparsity at every MInference length, App. F's floor where it sets one."""
    pattern_map = load_pattern_map(sparse.MINFERENCE_MAP)
    floors = {r["context"]: r["above"] for r in data["density"]}
    lengths = sorted(set(sparse.MINFERENCE_LENGTHS) | set(floors))
    return pd.DataFrame([{"context": n, "sparsity": 1 - mean_vertical_slash_density(pattern_map, n),
                          "above": floors.get(n)} for n in lengths])


# ------------------------------------------------------------------------------------------------ figures
def prefill_figure(rows: pd.DataFrame) -> Figure:
    """prefill.png (module docstring): end-to-end prefill time of dense FlashAttention-2 and MInference against the
    context, ours as lines, the benchmark's as points (log-log)."""
    fig = _figure(10.0, 5.0)
    _title(fig, f"End-to-end prefill, {sparse.MINFERENCE_MODEL} on one {sparse.MINFERENCE_GPU}: dense "
                f"FlashAttention-2 and MInference ({sparse.MINFERENCE_MAP}); lines ours, points the benchmark's "
                f"(tolerance {sparse.PREFILL_TOLERANCE:.0%})")
    ax = fig.add_axes((0.09, 0.12, 0.66, 0.7))
    for i, (name, ours, paper) in enumerate((("dense FA-2", "dense_s", "paper_dense_s"),
                                             ("MInference", "minference_s", "paper_minference_s"))):
        ax.plot(rows["context"], rows[ours], marker="o", ms=4, color=_colour(i), label=f"{name}, ours")
        known = rows.dropna(subset=[paper])
        ax.scatter(known["context"], known[paper], marker="s", s=40, facecolors="none", edgecolors=_colour(i),
                   linewidths=1.4, zorder=3, label=f"{name}, benchmark")
    ax.set(xscale="log", yscale="log", xlabel="prompt tokens (log)", ylabel="prefill time (s, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def density_figure(rows: pd.DataFrame) -> Figure:
    """density.png: the shipped vertical-slash map's kernel-granularity sparsity against the context, with App. F's
    floors dashed from the context each holds."""
    fig = _figure(10.0, 4.8)
    _title(fig, f"Kernel-granularity sparsity of the shipped vertical-slash map ({sparse.MINFERENCE_MAP}) against "
                "the context; App. F: above the floor from that context on")
    ax = fig.add_axes((0.09, 0.12, 0.66, 0.7))
    ax.plot(rows["context"], rows["sparsity"], marker="o", ms=4, color=_colour(0), label="ours")
    floors = rows.dropna(subset=["above"])
    end = rows["context"].max()
    for j, r in enumerate(floors.itertuples()):
        ax.plot([r.context, end], [r.above, r.above], color=_colour(3 + j), ls="--", lw=1.2,
                label=f"App. F: above {r.above:.0%} from {r.context // 1000}K")
    ax.set(xscale="log", ylim=(0, 1.02), xlabel="context (tokens, log)", ylabel="sparsity (1 - density)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


def decode_figure(rows: pd.DataFrame) -> Figure:
    """Three panels: DuoAttention time and memory against the context, Quest attention against the budget."""
    fig = _figure(14.0, 4.8)
    _title(fig, f"Decode with KV-cache selection: DuoAttention on one {sparse.DUO_GPU} (retrieval-head fraction of "
                "the shipped maps; dashed: dense; hollow: does not fit the GPU) and Quest's self-attention of one "
                f"layer ({sparse.QUEST_MODEL} shapes) against the budget, dense dashed")
    duo = rows[rows["method"] == "DuoAttention"]
    for k, (column, dense, label, scale) in enumerate((("time_s", "dense_time_s", "decode per token (ms)", 1e3),
                                                       ("memory_bytes", "dense_memory_bytes", "memory (GB)", 1e-9))):
        ax = fig.add_axes((0.07 + k * 0.26, 0.14, 0.19, 0.66))
        for i, (model, mine) in enumerate(duo.groupby("model", sort=False)):
            fraction = mine["retrieval_fraction"].iloc[0]
            ax.plot(mine["context"], mine[column] * scale, color=_colour(i), label=f"{model} {fraction:.0%}")
            ax.plot(mine["context"], mine[dense] * scale, color=_colour(i), ls="--", lw=1)
            fits = mine["fits"].astype(bool)
            ax.scatter(mine["context"], mine[column] * scale, s=22, color=_colour(i),
                       facecolors=[_colour(i) if f else "none" for f in fits], zorder=3)
        ax.set(xscale="log", yscale="log", xlabel="context (tokens, log)", ylabel=f"{label}, log")
        ax.grid(True, which="both", alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, frameon=False, loc="upper left")
    ax = fig.add_axes((0.63, 0.14, 0.22, 0.66))
    quest = rows[(rows["method"] == "Quest") & (rows["phase"] == "attention")]
    for i, ((gpu, n), mine) in enumerate(quest.groupby(["gpu", "context"], sort=False)):
        ax.plot(mine["budget"], mine["time_s"] * 1e6, marker="o", ms=3, color=_colour(i), label=f"{gpu} {n}")
        ax.axhline(mine["dense_time_s"].iloc[0] * 1e6, color=_colour(i), ls="--", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="Quest budget (tokens, log)", ylabel="attention per layer (us, log)")
    ax.set_xticks(list(sparse.QUEST_BUDGETS), [str(b) for b in sparse.QUEST_BUDGETS])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, title="GPU, context",
              title_fontsize=7)
    return fig


# ------------------------------------------------------------------------------------------------ page
def write_sparse_report(data: dict, out_dir: Path) -> Path:
    """Write the report of `sparse_reproduce.run_all()`'s `data` into `out_dir` (whole); returns the index path."""
    return write_whole(out_dir, _write_page, data)


def _write_page(out_dir: Path, data: dict) -> None:
    table = summary_rows(data)
    _save(out_dir, "summary", table)
    prefill = prefill_table(data)
    _save(out_dir, "prefill", prefill, prefill_figure(prefill))
    density = density_table(data)
    _save(out_dir, "density", density, density_figure(density))
    decode = pd.DataFrame([p for p in data["points"] if p["method"] in ("DuoAttention", "Quest")])
    _save(out_dir, "decode", decode, decode_figure(decode))
    sections = [
        _section("prefill", "MInference prefill",
                 "End to end (<code>archsim.systems.sparse_prefill</code>): each sparse head as MInference runs it "
                 "(the estimate as eager launches, the index build, a Triton forward over the pattern's key "
                 "tiles), heads one after another, the layer's other ops dense. The benchmark's points: "
                 "MInference's experiments/README.md, single A100-80G (seqpar-sparse.md §3.1)."),
        _section("density", "Vertical-slash density",
                 "One minus the mean density of the shipped per-head settings' masks at kernel granularity; "
                 "App. F: above 90 % past 200K and 95 % past 500K."),
        _section("decode", "DuoAttention and Quest decode",
                 "<code>archsim.systems.kv_selection</code>: DuoAttention keeps a full cache only for retrieval "
                 "heads (streaming heads: sink + recent window); Quest loads 1/page of the keys' bounds plus the "
                 "budget's pages. The CSV has Quest's end-to-end decode rows too (phase decode)."),
    ]
    outside = gaps_html(table)
    intro = ("<p>Ours (archsim's sparse prefill and KV-cache selection models) beside the public figures "
             "(../shared/reference/seqpar-sparse.md §3). Where ours are outside the issue's tolerance, the "
             f"modelling reason (the rows that share one together):</p><ul>{outside}</ul>")
    write_index(out_dir, "Sparse prefill and KV-cache selection reproduction", intro, table, sections)
