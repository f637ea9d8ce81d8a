"""Sweeps of systems and of multi-device attention: bad input refused at load, and records that do not depend on
where the spec lies.

1. A parallel sweep with a usp point and no Ulysses degree anywhere is refused at load (every usp row would be
   rejected for want of it), naming `parallel.ulysses`, as an unused degree is.
2. A point's reason is stored as its field and message, without the spec file's path, which its key does not hold:
   a store of a copied spec exports the same bytes as one of the original.
3. A wrong key in an `axes` entry is blamed on the axis (or the linked template), not on its first value (`[0]`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from archsim.dse.points import evaluate_point, expand, load_base
from archsim.dse.spec import load_sweep
from archsim.errors import SpecError

PARALLEL = {"workload": "llama3-8b", "seq_len": 16384, "topology": "hgx-h100-8"}
LAMINA = {"name": "lamina-s31", "system": "lamina", "workload": "llama3-70b",
          "serving": {"rate_per_s": 5.0, "requests": 4, "lengths": "azure-conv", "seed": 0, "max_batch": 64},
          "objectives": ["throughput_tok_s", "latency_s"]}


def _refusal(path: Path) -> SpecError:
    with pytest.raises(SpecError) as refused:
        load_sweep(path)
    return refused.value


# --- 1. usp without a Ulysses degree -------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "axes"), [
    ({"devices": 4}, {"parallel.scheme": ["ring", "usp"]}),
    ({"scheme": "usp"}, {"parallel.devices": [2, 4]}),
])
def test_a_usp_point_without_a_ulysses_degree_is_refused_at_load(tmp_path, block, axes, write_yaml, invoke) -> None:
    path = write_yaml(tmp_path / "usp.yaml", {"name": "usp", "parallel": {**PARALLEL, **block}, "axes": axes})
    error = _refusal(path)
    assert (error.source, error.where) == (str(path), "parallel.ulysses") and "usp needs" in error.message
    code, output = invoke("sweep", str(path), "--db", str(tmp_path / "usp.sqlite"), "--local")
    assert code == 2 and f"{path}: parallel.ulysses: " in output and "usp needs" in output


@pytest.mark.parametrize(("block", "axes"), [
    ({"devices": 4, "ulysses": 2}, {"parallel.scheme": ["ring", "usp"]}),
    ({"devices": 4, "scheme": "usp"}, {"parallel.ulysses": [2, 4]}),
])
def test_a_usp_point_with_its_degree_in_the_block_or_an_axis_loads(tmp_path, block, axes, write_yaml) -> None:
    path = write_yaml(tmp_path / "usp.yaml", {"name": "usp", "parallel": {**PARALLEL, **block}, "axes": axes})
    assert load_sweep(path).kind == "parallel"


# --- 2. reasons without the file's path ----------------------------------------------------------------------------


def _records(path: Path) -> list[dict]:
    spec = load_sweep(path)
    base = load_base(spec)
    return [evaluate_point(spec, base, point) for point in expand(spec)]


def test_a_parallel_points_reason_is_its_field_and_message_whatever_the_files_path(tmp_path, write_yaml) -> None:
    """Ring over 3 devices cannot cut 16384 tokens into 3 equal chunks: the reason names parallel.seq_len, not the
    file, so a copy of the spec elsewhere stores the same record."""
    data = {"name": "odd", "parallel": {**PARALLEL, "scheme": "ring"}, "axes": {"parallel.devices": [3]}}
    first = write_yaml(tmp_path / "a" / "odd.yaml", data)
    second = tmp_path / "b" / "copy.yaml"
    second.parent.mkdir()
    shutil.copy(first, second)
    (one,), (other,) = _records(first), _records(second)
    assert not one["feasible"] and one["reason"].startswith("parallel.seq_len: ring cuts the sequence into 3 equal")
    assert str(tmp_path) not in one["reason"] and json.dumps(one) == json.dumps(other)  # NaN metrics alike


def test_a_system_points_reason_is_its_field_and_message_not_the_presets_path(tmp_path, write_yaml) -> None:
    """Lamina's compute count 4 at tp 2 x 1 replica: the reason names devices.compute.count, not lamina.yaml's path
    (which lies wherever archsim is installed)."""
    path = write_yaml(tmp_path / "lamina.yaml", {**LAMINA, "axes": {"system.devices.compute.count": [4]}})
    (record,) = _records(path)
    assert not record["feasible"]
    assert record["reason"] == ("devices.compute.count: expected tp x replicas = 2 x 1 = 2 compute devices "
                                "(micro_batches - 1 replicas), got 4")


# --- 3. key errors blamed on the axis ------------------------------------------------------------------------------


@pytest.mark.parametrize(("axes", "where", "message"), [
    ({"serving.seed": [1]}, "axes.serving.seed", "a serving axis is one of"),
    ({"system.devices.memory.cout": [2]}, "axes.system.devices.memory.cout", "unknown key"),
    ({"system.devices.memry.count": [2]}, "axes.system.devices.memry.count", "not a field of this system"),
    ({"linked.m": {"values": [2], "set": {"system.devices.memory.cout": "m"}}},
     "axes.linked.m.set.system.devices.memory.cout", "unknown key"),
])
def test_a_wrong_key_in_an_axis_is_blamed_on_the_axis_not_a_value(tmp_path, axes, where, message, write_yaml) -> None:
    error = _refusal(write_yaml(tmp_path / "keys.yaml", {**LAMINA, "axes": axes}))
    assert error.where == where and error.message.startswith(message)


def test_a_wrong_value_of_a_known_key_still_names_its_index(tmp_path, write_yaml) -> None:
    error = _refusal(write_yaml(tmp_path / "value.yaml", {**LAMINA, "axes": {"serving.max_batch": [8, 0]}}))
    assert error.where == "axes.serving.max_batch[1]"
