"""Workload specs: named model shapes that bind cascade parameters (batch, seq_len, heads, ...).

    name: bert-base
    description: one line
    source: where the numbers come from
    params: {batch: 64, seq_len: 1024, hidden: 768, heads: 12, kv_heads: 12, head_dim: 64, ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsim.cascade.load import read_yaml
from archsim.errors import SpecError, check_keys

WORKLOAD_KEYS = {"name", "description", "source", "params"}


@dataclass(frozen=True)
class Workload:
    name: str
    description: str
    source: str
    params: dict[str, float]


def load_workload(path: str | Path) -> Workload:
    path = Path(path)
    return workload_from_dict(read_yaml(path), str(path))


def workload_from_dict(data: Any, source: str = "<python>") -> Workload:
    if not isinstance(data, dict):
        raise SpecError(source, "", "expected a mapping with name, description, source, params")
    check_keys(data, sorted(WORKLOAD_KEYS), source)
    if not isinstance(data.get("name"), str):
        raise SpecError(source, "name", "missing (expected the workload's name)")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise SpecError(source, "params", "expected a mapping of parameter names to positive numbers")
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise SpecError(source, f"params.{key}", f"expected a positive number, got {value!r}")
    return Workload(data["name"], str(data.get("description", "")), str(data.get("source", "")),
                    {str(k): float(v) for k, v in params.items()})
