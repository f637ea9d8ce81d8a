"""Ring Attention Table 3's TPU rows (issue 18; ../shared/reference/seqpar-sparse.md §2.1: TPUv3-512, TPUv4-1024,
TPUv5e-256): computed by the same memory model as the A100 rows (`seqpar_memory.table3_rows` over
`TABLE3_TPUS`), printed beside the paper's entries with the same factor and flags. No tolerance is claimed for them
(the issue's must-show names the A100 rows): these tests hold that the rows exist and are the model's."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from archsim import library
from archsim.commands.seqpar_cmd import _table3
from archsim.systems import seqpar_reproduce as seqpar
from archsim.systems.chip import load_chip
from archsim.systems.seqpar_memory import (
    TABLE3_SCHEMES,
    TABLE3_TPUS,
    table3_rows,
    token_multiple,
    training_memory,
)
from archsim.workload import max_size

GIB = 2**30
KEYS = {"hardware", "devices", "gpu", "model", "scheme", "device_memory_bytes", "max_context_tokens",
        "pow2_context_tokens"}


@functools.cache
def _reproduced() -> tuple[dict, ...]:
    return tuple(seqpar.table3_rows())


def _tpu_rows() -> list[dict]:
    devices = {tpu.device for tpu in TABLE3_TPUS}
    return [r for r in _reproduced() if r["gpu"] in devices]


def test_every_tpu_entry_of_the_paper_has_a_row_per_reading():
    """Each paper TPU entry (hardware, model) x the four columns, once per device reading of its slice (v3-512 as
    512 TensorCores of 16 GiB and as 256 chips of 32 GiB), with the A100 rows' keys and the paper's context."""
    rows = _tpu_rows()
    cases = {(r["gpu"], r["hardware"], r["model"], r["scheme"]) for r in rows}
    assert len(cases) == len(rows) == 4 * 10
    for (hardware, model), entries in seqpar.PAPER["table3_k"].items():
        if hardware.startswith("TPU"):
            readings = [tpu for tpu in TABLE3_TPUS if tpu.hardware == hardware]
            assert readings and all(model in tpu.models for tpu in readings)
            for tpu in readings:
                for scheme, entry in zip(seqpar.TABLE3_COLUMNS, entries, strict=True):
                    row = next(r for r in rows if (r["gpu"], r["hardware"], r["model"], r["scheme"])
                               == (tpu.device, hardware, model, scheme))
                    assert row["paper_context_tokens"] == entry * 1024
    assert {r["devices"] for r in rows if r["hardware"] == "TPUv3-512"} == {512, 256}
    assert all(set(r) >= KEYS for r in _reproduced())


def test_the_capacity_is_the_chip_presets_share():
    """A TPU device holds its chip_fraction of the chip preset's memory_bytes: a v3 TensorCore 16 GiB, a v3 or v4
    chip 32 GiB, a v5e chip 16 GiB."""
    capacity = {r["gpu"]: r["device_memory_bytes"] for r in _tpu_rows()}
    assert capacity == {"tpu-v3-core": 16 * GIB, "tpu-v3": 32 * GIB, "tpu-v4": 32 * GIB, "tpu-v5e": 16 * GIB}
    for tpu in TABLE3_TPUS:
        assert capacity[tpu.device] == load_chip(tpu.chip).memory_bytes * tpu.chip_fraction


@pytest.mark.parametrize("index", range(4 * 10))
def test_a_row_is_the_models_largest_fitting_context(index: int):
    """Run the memory model directly: the row's context fits the device and one token multiple more does not."""
    row = _tpu_rows()[index]
    workload = library.load_workload_spec(row["model"])
    tokens, multiple = row["max_context_tokens"], token_multiple(row["scheme"], row["devices"])
    capacity = row["device_memory_bytes"]
    assert tokens > 0
    assert training_memory(workload, row["scheme"], row["devices"], tokens).total_bytes <= capacity
    assert training_memory(workload, row["scheme"], row["devices"], tokens + multiple).total_bytes > capacity


def test_ring_passes_the_size_limit_on_a_large_slice():
    """A ring device binds N / P tokens: on 512 v4 chips LLaMA-3B's ring context (about 39M) is past the size limit
    on N (2^24) that had capped it at exactly the paper's 16384K."""
    ring = next(r for r in _tpu_rows() if (r["gpu"], r["model"], r["scheme"]) == ("tpu-v4", "llama-3b", "ring"))
    assert ring["max_context_tokens"] > max_size()


def test_ring_context_rises_with_the_device_count():
    """The same v4 chip and model on 128, 256 and 512 devices: Ring's context grows about with P (BPT's barely:
    only the sharded model states shrink)."""
    v4 = next(tpu for tpu in TABLE3_TPUS if tpu.device == "tpu-v4")
    ring = []
    for devices in (128, 256, 512):
        rows = table3_rows((), (replace(v4, devices=devices, models=("llama-7b",)),))
        assert [r["scheme"] for r in rows] == list(TABLE3_SCHEMES)
        ring.append(next(r["max_context_tokens"] for r in rows if r["scheme"] == "ring"))
    assert ring[0] < ring[1] < ring[2]
    assert 1.8 <= ring[1] / ring[0] <= 2.2 and 1.8 <= ring[2] / ring[1] <= 2.2


def test_outside_entries_carry_a_reason_with_the_runs_numbers():
    """Each TPU entry outside 1.25x carries its reason, filled (no "<field>"), none inside; a memory reason quotes the
    model's memory at the bound below the device's capacity when ours is longer."""
    rows = _tpu_rows()
    assert any(not r["within"] for r in rows) and any(r["within"] for r in rows)
    for r in rows:
        if r["within"]:
            assert r["reason"] == ""
            continue
        assert r["reason"] and "<" not in r["reason"]
        if r["scheme"] == "ring":
            assert f"on {r['devices']} devices" in r["reason"]
        else:
            assert r["reason"].startswith("not attributed: at ") and f"of a {r['gpu']} device's" in r["reason"]


def test_the_printed_block_has_the_tpu_rows(capsys):
    """`archsim reproduce seqpar`'s Table 3 block prints each TPU row beside the paper's entry, with its factor and no
    verdict (no tolerance is claimed for them: the summary's rule, `seqpar_reproduce.tolerance_claimed`)."""
    _table3(list(_reproduced()))
    output = capsys.readouterr().out
    for r in _tpu_rows():
        line = next(line for line in output.splitlines()
                    if line.split()[:4] == [r["gpu"], r["hardware"], r["model"], r["scheme"]])
        assert f"paper {r['paper_context_tokens'] // 1024:>5}K  x{r['ratio']:.2f}" in line
        assert line.endswith("(no tolerance claimed)")
    assert "TPUv3-512 both as 512 TensorCores of 16 GiB" in output
