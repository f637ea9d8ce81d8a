"""Options `archsim parallel` and its sweeps accepted and never read (audit, scratch /tmp/s23/a-unread), each now
refused where no point models the value (exit 2 naming the option or the sweep's YAML path), and left off the
points of a mixed grid that do not model it:

- `--kernel` / `parallel.kernel` with decode (a decode step runs Flash-Decoding) or with LASP alone (its chunks run
  Lightning Attention-2): FlashAttention-2 and -3 gave the same JSON; the kernel they run is still taken;
- `parallel.ulysses` with no usp point (the CLI refused `--ulysses`), and the Ulysses degree recorded on a ring row
  of a `[ring, usp]` grid, in the CLI too;
- `--no-causal` / `parallel.causal: false` with decode: only the record's `causal` label changed (a decode step's
  one query attends every cached token: causal, which `--causal` says and is taken).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from archsim.dse.spec import load_sweep_spec
from archsim.dse.store import read_records
from archsim.errors import SpecError

DECODE = ("parallel", "--scheme", "ring", "--direction", "decode", "--devices", "8", "-w", "llama3-8b",
          "--seq-len", "32K")
LASP = ("parallel", "--scheme", "lasp1", "--devices", "8", "-w", "linear-llama3-1b", "--seq-len", "32K")
BASE = {"workload": "llama3-8b", "seq_len": 32768, "topology": "hgx-h100"}


def _sweep(tmp_path: Path, block: dict, axes: dict) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "parallel": {**BASE, **block}, "axes": axes,
                                    "objectives": ["latency_s", "efficiency"]}))
    return path


def _refused_at(path: Path) -> str:
    with pytest.raises(SpecError) as error:
        load_sweep_spec(str(path))
    assert error.value.source == str(path)
    return error.value.where


# --- 1. the kernel ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [(*DECODE, "--kernel", "FlashAttention-3"), (*DECODE, "--kernel", "FlashAttention-2"),
                                  (*LASP, "--kernel", "FlashAttention-3")])
def test_a_kernel_no_point_runs_is_refused_naming_the_option(cli, args) -> None:
    output = cli(*args, expect=2).output
    runs = "Flash-Decoding" if "decode" in args else "archsim Lightning Attention-2 (Triton)"
    assert output.startswith(f"error: archsim parallel: --kernel {args[-1]!r} sets the softmax schemes' prefill "
                             "kernel, which no point runs") and f"runs {runs}; drop it" in output


@pytest.mark.parametrize(("args", "kernel"), [(DECODE, "Flash-Decoding"),
                                              (LASP, "archsim Lightning Attention-2 (Triton)")])
def test_the_kernel_a_point_runs_is_taken(cli_json, args, kernel) -> None:
    (row,) = cli_json(*args, "--kernel", kernel)["points"]
    assert row["kernel"] == kernel and row["feasible"]


def test_a_kernel_beside_lasp_still_times_the_softmax_scheme(cli_json) -> None:
    """A grid of ring and lasp1 reads --kernel at ring: accepted, the LASP row records its own kernel."""
    lasp, ring = cli_json(*LASP[:1], "--scheme", "lasp1,ring", *LASP[3:], "--kernel", "FlashAttention-3")["points"]
    assert ring["kernel"] == "FlashAttention-3" and lasp["kernel"] == "archsim Lightning Attention-2 (Triton)"


@pytest.mark.parametrize(("block", "axes", "where"), [
    ({"direction": "decode", "kernel": "FlashAttention-3", "scheme": "ring"}, {"parallel.devices": [4, 8]},
     "parallel.kernel"),
    ({"direction": "decode", "scheme": "ring", "devices": 8},
     {"parallel.kernel": ["FlashAttention-2", "FlashAttention-3"]}, "axes.parallel.kernel"),
    ({"devices": 8, "kernel": "FlashAttention-3", "workload": "linear-llama3-1b"},
     {"parallel.scheme": ["lasp1", "lasp2"]}, "parallel.kernel"),
    ({"devices": 8, "scheme": "lasp2", "workload": "linear-llama3-1b"},
     {"parallel.kernel": ["archsim Lightning Attention-2 (Triton)", "FlashAttention-2"]}, "axes.parallel.kernel[1]"),
])
def test_a_sweeps_kernel_no_point_runs_is_refused_at_its_path(tmp_path, block, axes, where) -> None:
    assert _refused_at(_sweep(tmp_path, block, axes)) == where


def test_a_sweeps_kernel_is_kept_when_a_point_runs_it(tmp_path) -> None:
    """A direction axis with a prefill point reads the kernel there."""
    path = _sweep(tmp_path, {"scheme": "ring", "devices": 8, "kernel": "FlashAttention-3"},
                  {"parallel.direction": ["fwd", "decode"]})
    assert load_sweep_spec(str(path)).parallel["kernel"] == "FlashAttention-3"


# --- 2. the Ulysses degree -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("block", "axes", "where"), [
    ({"scheme": "ring", "ulysses": 4}, {"parallel.devices": [4, 8]}, "parallel.ulysses"),
    ({"devices": 8}, {"parallel.scheme": ["ring", "zigzag"], "parallel.ulysses": [2, 4]}, "axes.parallel.ulysses"),
])
def test_a_sweeps_ulysses_without_usp_is_refused_at_its_path(tmp_path, block, axes, where) -> None:
    assert _refused_at(_sweep(tmp_path, block, axes)) == where


def test_a_ring_row_beside_usp_records_no_ulysses_degree(tmp_path, cli, cli_json) -> None:
    """Sweep and CLI alike: the usp row has its degree, the ring row none (it records 4 and was keyed by it)."""
    path, db = _sweep(tmp_path, {"devices": 8, "ulysses": 4}, {"parallel.scheme": ["ring", "usp"]}), tmp_path / "u.db"
    cli("sweep", str(path), "--db", str(db), "--local")
    records = read_records(db).set_index("scheme")
    assert math.isnan(records.loc["ring", "ulysses"]) and records.loc["usp", "ulysses"] == 4
    ring, usp = cli_json("parallel", "--scheme", "ring,usp", "--ulysses", "4", "--devices", "8", "-w", "llama3-8b",
                         "--seq-len", "32K")["points"]
    assert ring["ulysses"] is None and usp["ulysses"] == 4
    assert ring["latency_s"] == pytest.approx(records.loc["ring", "latency_s"], rel=1e-12)


# --- 3. the causal mask at decode ------------------------------------------------------------------------------------


def test_no_causal_with_decode_is_refused_naming_it(cli) -> None:
    assert cli(*DECODE, "--no-causal", expect=2).output.startswith(
        "error: archsim parallel: --no-causal sets the prefill's mask: a decode step's one query attends every cached "
        "token (causal); drop it")


@pytest.mark.parametrize("flag", [(), ("--causal",)])
def test_decode_records_causal(cli, flag) -> None:
    """What a decode step is modelled as: its one query attends every cached token."""
    (row,) = json.loads(cli(*DECODE, *flag, "--json").output)["points"]
    assert row["causal"] is True and row["kernel"] == "Flash-Decoding"


def test_a_sweeps_causal_at_decode_is_refused_and_a_mixed_one_records_decode_causal(tmp_path, cli) -> None:
    assert _refused_at(_sweep(tmp_path, {"scheme": "ring", "causal": False, "direction": "decode"},
                              {"parallel.devices": [4, 8]})) == "parallel.causal"
    assert _refused_at(_sweep(tmp_path, {"scheme": "ring", "devices": 8, "direction": "decode"},
                              {"parallel.causal": [True, False]})) == "axes.parallel.causal[1]"
    path, db = _sweep(tmp_path, {"scheme": "ring", "devices": 8, "causal": False},
                      {"parallel.direction": ["fwd", "decode"]}), tmp_path / "c.db"
    cli("sweep", str(path), "--db", str(db), "--local")
    causal = read_records(db).set_index("direction")["causal"]
    assert not causal["fwd"] and causal["decode"]


def test_an_empty_kernel_is_refused_not_taken_for_the_default(cli) -> None:
    """`--kernel ""` was read as no --kernel: FlashAttention-2 timed for a value the user gave."""
    output = cli("parallel", "--scheme", "ring", "--devices", "8", "-w", "llama3-8b", "--seq-len", "32K", "--kernel",
                 "", expect=2).output
    assert output.startswith("error: --kernel: expected one of")
