"""The library report: one row per cascade with its ranks, operations by type, bytes and passes. The folder is
written whole (`archsim.outputs.atomic_dir`): a killed run leaves the old report or the new one."""

from __future__ import annotations

import html
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from archsim.cascade.analysis import Analysis
from archsim.outputs import atomic_dir


def cascade_row(analysis: Analysis, description: str) -> dict:
    """One flat record (CSV-friendly) of an analysis."""
    passes = analysis.passes.passes
    row = {
        "cascade": analysis.cascade,
        "description": description,
        "ranks": " ".join(f"{r}={n}" for r, n in analysis.rank_sizes.items()),
        "einsums": len(analysis.ops),
        "passes": " ".join(f"{r}={n}" for r, n in passes.items() if n > 1) or "all 1",
        "max_passes": max(passes.values(), default=0),
    }
    row.update({f"ops_{op}": n for op, n in sorted(analysis.total_ops().items())})
    row["ops_total"] = sum(analysis.total_ops().values())
    row.update({f"bytes_{kind}": n for kind, n in sorted(analysis.bytes_by_kind().items())})
    return row


def write_cascade_report(rows: Iterable[dict], out_dir: Path, title: str) -> Path:
    """Write cascades.csv and index.html into `out_dir`, replacing its old report whole; returns the index path.
    A folder that cannot be written is a SpecError naming it."""
    table = pd.DataFrame(list(rows))
    op_columns = sorted(c for c in table.columns if c.startswith("ops_"))
    byte_columns = sorted(c for c in table.columns if c.startswith("bytes_"))
    rest = [c for c in table.columns if c not in op_columns and c not in byte_columns]
    table = table[rest + op_columns + byte_columns]
    counts = [c for c in ("einsums", "max_passes") if c in table.columns]
    table[counts] = table[counts].astype("Int64")  # whole counts, left empty (not 8.0) beside a cascade not analysed
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:nth-child(-n+4){text-align:left}"
        "</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        "<p>Every cascade of the library, analysed by <code>archsim analyze</code>: rank sizes, operations by "
        "type (a reduction of N elements counts N; a sum of products counts MACs; masked points are "
        "skipped), bytes of inputs, intermediates and outputs, and FuseMax's pass analysis (ranks needing "
        "more than one pass). Data: <a href='cascades.csv'>cascades.csv</a>.</p>"
        # empty as the CSV's cells (to_html writes an Int64 column's missing value <NA> whatever its na_rep)
        + table.astype(dict.fromkeys(counts, object)).fillna(dict.fromkeys(counts, "")).to_html(
            index=False, na_rep="", float_format=lambda x: f"{x:.4g}")
        + "</body></html>"
    )
    with atomic_dir(out_dir) as stage:
        table.to_csv(stage / "cascades.csv", index=False)
        (stage / "index.html").write_text(page, encoding="utf-8")  # as its meta charset says
    return out_dir / "index.html"
