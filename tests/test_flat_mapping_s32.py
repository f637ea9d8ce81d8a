"""The linear-layer mappings run a weight larger than the global buffer, and FLAT's mapping says when flat-offchip
is the faster residency.

Expected traffic is derived by hand from the workloads' sizes (2-byte words; a weight tiled k ways along its output
columns is read once in all, its input once per tile, its output written once): the mapper takes the fewest tiles
whose tiles fit, the others moving more input for the same compute-bound time.
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.point import run_point

MIB = 2**20


def _sizes(workload: str) -> dict[str, int]:
    return {k: int(v) for k, v in library.load_workload_spec(workload).params.items()}


def test_qkv_projection_tiles_a_weight_over_the_fusemax_buffer() -> None:
    """Llama-3-8B: WQ is 32 x 128 x 4096 x 2 B = 32 MiB, twice FuseMax's 16 MiB buffer. Two tiles of 16 MiB leave no
    room for a 256-row block of X (2 MiB); four of 8 MiB fit, so X is read 4 times for Q and once each for K and V
    (WK, WV: 8 x 128 x 4096 x 2 B = 8 MiB, whole)."""
    s = _sizes("llama3-8b")
    r = run_point("linear-qkv-fusemax", workload="llama3-8b")
    assert r.feasible, r.reason
    x_bytes = s["batch"] * s["seq_len"] * s["hidden"] * 2
    dram = r.traffic_bytes["DRAM"]
    assert dram["WQ"] == 32 * MIB
    assert dram["WK"] == dram["WV"] == 8 * MIB
    assert dram["X"] == (4 + 1 + 1) * x_bytes
    assert dram["Q"] == x_bytes  # heads x head_dim = hidden: written once


def test_qkv_projection_tiles_every_weight_over_the_flat_buffer() -> None:
    """GPT-3 13B: WQ, WK, WV are 40 x 128 x 5120 x 2 B = 50 MiB each, over FLAT's 32 MiB; two tiles of 25 MiB fit
    beside a 256-row block of X (2.5 MiB) and of the output (1.25 MiB), so X is read twice per GEMM."""
    s = _sizes("gpt3-13b")
    r = run_point("linear-qkv-flat", workload="gpt3-13b")
    assert r.feasible, r.reason
    x_bytes = s["batch"] * s["seq_len"] * s["hidden"] * 2
    dram = r.traffic_bytes["DRAM"]
    assert dram["WQ"] == dram["WK"] == dram["WV"] == 50 * MIB
    assert dram["X"] == 3 * 2 * x_bytes


@pytest.mark.parametrize(("mapping", "tiles"), [("linear-out-fusemax", 4), ("linear-out-flat", 2)])
def test_output_projection_tiles_a_weight_over_the_buffer(mapping: str, tiles: int) -> None:
    """Llama-3-8B: WO is 32 MiB. FuseMax's 16 MiB takes four column tiles of 8 MiB beside a 256-row block of AV
    (2 MiB); FLAT's 32 MiB two of 16 MiB. AV is read once per tile, Z written once."""
    s = _sizes("llama3-8b")
    r = run_point(mapping, workload="llama3-8b")
    assert r.feasible, r.reason
    rows_bytes = s["batch"] * s["seq_len"] * s["hidden"] * 2
    dram = r.traffic_bytes["DRAM"]
    assert dram["WO"] == 32 * MIB
    assert dram["AV"] == tiles * rows_bytes
    assert dram["Z"] == rows_bytes


@pytest.mark.parametrize("mapping", ["linear-qkv-fusemax", "linear-qkv-flat", "linear-out-fusemax",
                                     "linear-out-flat"])
def test_a_weight_that_fits_stays_whole(mapping: str) -> None:
    """BERT-base (the reproduced shapes): each 768 x 768 weight (1.125 MiB) fits whole, so every operand moves once
    per GEMM, as the artifact's end-to-end model has it (docs/fusemax-artifact-model.md section 6)."""
    s = _sizes("bert-base")
    r = run_point(mapping, workload="bert-base")
    rows_bytes = s["batch"] * s["seq_len"] * s["hidden"] * 2
    weight_bytes = s["hidden"] ** 2 * 2
    dram = r.traffic_bytes["DRAM"]
    if mapping.startswith("linear-qkv"):
        assert dram == {"Q": rows_bytes, "WQ": weight_bytes, "X": 3 * rows_bytes, "K": rows_bytes,
                        "WK": weight_bytes, "V": rows_bytes, "WV": weight_bytes}
    else:
        assert dram == {"AV": rows_bytes, "WO": weight_bytes, "Z": rows_bytes}


def test_flat_description_names_the_faster_residency_at_long_lengths() -> None:
    """`run -m flat` keeps its on-chip rule at every length; at 256K flat-offchip is faster (1013.88 s against
    1477.98 s for BERT-base), and flat's description says to run it there."""
    assert "flat-offchip" in library.load_mapping_spec("flat").description
    on_chip = run_point("flat", workload="bert-base", sets={"seq_len": 262144})
    off_chip = run_point("flat-offchip", workload="bert-base", sets={"seq_len": 262144})
    assert off_chip.latency_s < on_chip.latency_s


@pytest.mark.parametrize("pe_dim", [128, 512])
def test_flat_follows_its_arrays_width(pe_dim: int) -> None:
    """flat.yaml's spatial loops and row blocks read the arrays' fan-out (`fanout(UNIT, AXIS)`), so an array of 128
    or 512 PEs a side runs FLAT (at 128 it had been refused: 256 rows spread over 128 PEs; at 512 it ran 256 of the
    1-D array's 512 lanes, its 2-D array at 0.03). FLAT is bound by its d-lane 1-D array: BERT-base at 4K takes
    256 / d of its time at d = 256, the 1-D array busy throughout."""
    def run(d: int):
        arch = library.load_architecture_spec("flat").with_changes(**{"units.array2d.shape": (d, d),
                                                                      "units.array1d.shape": (d,)})
        return run_point(library.load_mapping_spec("flat"), arch=arch, workload="bert-base", sets={"seq_len": 4096})
    base, resized = run(256), run(pe_dim)
    assert resized.feasible, resized.reason
    assert resized.utilization["array1d"] == pytest.approx(1.0, rel=1e-3)
    assert resized.latency_s == pytest.approx(base.latency_s * 256 / pe_dim, rel=2e-3)


def test_fanout_names_the_units_and_axes_it_knows() -> None:
    """A mapping's `fanout(UNIT, AXIS)` of no unit or axis is refused naming the architecture's units and shapes."""
    from archsim.errors import SpecError
    from archsim.mapping.resolve import _unit_axis

    arch = library.load_architecture_spec("flat")
    assert _unit_axis("array2d", 1, arch, "m.yaml", "loops[2]") == 256
    with pytest.raises(SpecError, match=r"unknown unit or axis 'array1d', 1 \(units: .*array1d \[256\]"):
        _unit_axis("array1d", 1, arch, "m.yaml", "loops[2]")
