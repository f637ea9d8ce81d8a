"""Timelines: the `Span` (one task on one resource) and its Chrome trace-event JSON, loadable in Perfetto

One complete event (`ph: "X"`) per span, times in microseconds; one process (the device) with one thread per
resource (compute unit or memory channel), named by metadata events (`ph: "M"`) in order of first use.
Format: the Trace Event Format document (Google, "Trace Event Format", JSON Object Format).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsim.outputs import write_text

DEVICE_PID = 1
US_PER_S = 1e6


@dataclass(slots=True)
class Span:
    """One task on one resource (a compute unit or a memory channel), for the timeline and the trace. It lives here,
    not in the event model, so that whatever records a timeline (the serving simulator, the DRAM channel) does not
    load SimPy. A record that nothing changes once made, but not a frozen dataclass: a frozen one's __init__ sets
    each field through object.__setattr__, ~3x the time, and the event model makes thousands per point."""

    resource: str
    name: str
    start_s: float
    end_s: float
    args: dict[str, Any] = field(default_factory=dict)


def chrome_trace(timeline: Iterable[Span], other_data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trace as a JSON-ready dict: {"traceEvents": [...], "displayTimeUnit": "ns"}, and "otherData" (what the
    trace is: its run's settings, what its spans hold) where `other_data` is given."""
    tids: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for span in timeline:
        tid = tids.setdefault(span.resource, len(tids) + 1)
        events.append({
            "name": span.name,
            "cat": span.resource,
            "ph": "X",
            "ts": span.start_s * US_PER_S,
            "dur": (span.end_s - span.start_s) * US_PER_S,
            "pid": DEVICE_PID,
            "tid": tid,
            "args": {k: _json_value(v) for k, v in span.args.items()},
        })
    names = [{"name": "thread_name", "ph": "M", "pid": DEVICE_PID, "tid": tid, "args": {"name": resource}}
             for resource, tid in tids.items()]
    names.append({"name": "process_name", "ph": "M", "pid": DEVICE_PID, "tid": 0, "args": {"name": "device"}})
    trace = {"traceEvents": names + events, "displayTimeUnit": "ns"}
    return trace if other_data is None else {**trace, "otherData": other_data}


def write_chrome_trace(timeline: Iterable[Span], path: str | Path, other_data: dict[str, Any] | None = None) -> Path:
    """Write the trace (`chrome_trace`) to `path` (a .json file; missing parent folders are created), atomically
    (`archsim.outputs.write_text`); returns the path. A path that cannot be written is a SpecError naming it."""
    path = Path(path)
    write_text(path, json.dumps(chrome_trace(timeline, other_data)))
    return path


def _json_value(value: Any) -> Any:
    """Numbers (numpy ones included) as floats or ints, anything else, and NaN or an infinity (which JSON cannot
    hold), as a string."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else str(number)
