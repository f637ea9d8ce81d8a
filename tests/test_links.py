"""Links (alpha-beta) and collectives: every formula against a hand derivation written here, presets against their
sources, and bad input as a SpecError naming the file and the field.

Numbers used by hand below, with their sources (the presets carry the same in comments):
- NVLink4 (H100): 900 GB/s bidirectional (gpu_specs.csv) = 450e9 B/s per direction; 0.8 us (Duplex's LLMSimulator).
- NVLink3 (A100): 600 GB/s bidirectional (gpu_specs.csv) = 300e9 per direction; 3 us (LLMSimulator).
- PCIe 5.0 x16: 32 GT/s x 16 lanes x 128/130 / 8 per direction; PCIe 4.0: 16 GT/s; 1 us (assumed).
- 400 Gb/s NIC: 400e9 / 8 = 50e9 per direction; 130 ns (LLMSimulator).
- Lamina (pim.md §3.4): round trip 33.0 us and 45.7 GB/s (GPU-initiated), 66.6 us and 35.5 GB/s (NCCL).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import yaml

from archsim.errors import SpecError
from archsim.systems.collectives import (
    all_gather_s,
    all_reduce_s,
    all_to_all_s,
    hierarchical_all_reduce_s,
    reduce_scatter_s,
    send_recv_s,
)
from archsim.systems.links import link_from_dict, link_names, load_link

GIB = 2**30
MIB = 2**20
NVLINK4 = load_link("nvlink4-h100")
NVLINK3 = load_link("nvlink3-a100")
PCIE5 = load_link("pcie5-x16")
NIC = load_link("nic-400g")


# ------------------------------------------------------------------------------------------------ presets
def test_every_preset_is_listed_and_loads_under_its_file_name() -> None:
    assert link_names() == ["ib-100g-a100", "ib-hdr-200g", "ib-ndr-400g", "lamina-gpu-initiated-400g",
                            "lamina-nccl-400g", "nic-200g-host", "nic-400g", "nvlink3-a100", "nvlink4-h100",
                            "pcie4-x16", "pcie5-x16", "tpu-v3-ici", "tpu-v4-ici", "tpu-v5e-ici"]
    for name in link_names():
        link = load_link(name)
        assert link.name == name and link.citation and Path(link.source).name == f"{name}.yaml"


def test_presets_carry_their_sources_numbers() -> None:
    assert (NVLINK4.latency_s, NVLINK4.bytes_per_s_per_direction) == (0.8e-6, 900e9 / 2)
    assert (NVLINK3.latency_s, NVLINK3.bytes_per_s_per_direction) == (3e-6, 600e9 / 2)
    assert (NIC.latency_s, NIC.bytes_per_s_per_direction) == (130e-9, 400e9 / 8)
    assert PCIE5.bytes_per_s_per_direction == pytest.approx(32e9 * 16 * 128 / 130 / 8, rel=1e-3)
    assert load_link("pcie4-x16").bytes_per_s_per_direction == pytest.approx(16e9 * 16 * 128 / 130 / 8, rel=1e-3)


def test_lamina_paths_reproduce_the_papers_round_trips_and_peak_bandwidths() -> None:
    """A ping-pong of 8 bytes is the round trip the paper prints (the bytes add 0.35 ns of 33 us: 1e-5); a 1 GiB
    message runs within 0.2 % of the peak bandwidth it prints (the latency is 33.3 us of NCCL's 30.2 ms)."""
    for name, round_trip_s, peak_bytes_per_s in (("lamina-gpu-initiated-400g", 33.0e-6, 45.7e9),
                                                  ("lamina-nccl-400g", 66.6e-6, 35.5e9)):
        link = load_link(name)
        assert 2 * send_recv_s(8, link) == pytest.approx(round_trip_s, rel=1e-4)
        assert GIB / send_recv_s(GIB, link) == pytest.approx(peak_bytes_per_s, rel=2e-3)
    assert load_link("lamina-gpu-initiated-400g").bytes_per_s_per_direction / NIC.bytes_per_s_per_direction \
        == pytest.approx(0.914)  # "91.4% of 400 Gbps"


def test_a_link_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "my-link.yaml"
    path.write_text("name: slow\nsource: made up for the test\nlatency_s: 0\nbytes_per_s_per_direction: 1.0e+9\n")
    link = load_link(str(path))
    assert (link.name, link.latency_s, link.source) == ("slow", 0.0, str(path))
    assert send_recv_s(1e9, link) == 1.0  # a bandwidth-only link: 1e9 B at 1e9 B/s


# ------------------------------------------------------------------------------------------------ formulas
def test_send_recv_is_alpha_plus_n_over_beta() -> None:
    assert send_recv_s(MIB, NVLINK4) == pytest.approx(0.8e-6 + 2**20 / 450e9, rel=1e-12)


def test_ring_all_reduce_of_1_gib_over_8_h100s() -> None:
    """2(p-1) = 14 steps of n/p: 14 alpha + 2 x 7/8 x 2^30 / 450e9 = 11.2 us + 4.1757 ms."""
    expected_s = 14 * 0.8e-6 + 2 * 7 / 8 * 2**30 / 450e9
    assert all_reduce_s(GIB, 8, NVLINK4, algorithm="ring") == pytest.approx(expected_s, rel=1e-12)
    assert expected_s == pytest.approx(4.18686e-3, rel=1e-5)


def test_tree_all_reduce_is_two_binomial_trees_of_the_whole_vector() -> None:
    """Binomial reduce + broadcast: 2 ceil(log2 p) rounds of (alpha + n/beta); 8 A100s: depth 3, 6 rounds; a
    group of 5 has depth 3 as well, and 9 has depth 4."""
    one_round_s = 3e-6 + 2**20 / 300e9
    assert all_reduce_s(MIB, 8, NVLINK3, algorithm="tree") == pytest.approx(6 * one_round_s, rel=1e-12)
    assert all_reduce_s(MIB, 5, NVLINK3, algorithm="tree") == pytest.approx(6 * one_round_s, rel=1e-12)
    assert all_reduce_s(MIB, 9, NVLINK3, algorithm="tree") == pytest.approx(8 * one_round_s, rel=1e-12)


def test_tree_wins_for_small_messages_and_ring_for_large() -> None:
    """p = 8: tree 6 alpha + 6 n/beta vs ring 14 alpha + 1.75 n/beta; they cross at n = 8 alpha beta / 4.25
    = 8 x 0.8e-6 x 450e9 / 4.25 = 677.6 kB on NVLink4."""
    crossing_bytes = 8 * 0.8e-6 * 450e9 / 4.25
    below, above = 0.9 * crossing_bytes, 1.1 * crossing_bytes
    assert all_reduce_s(below, 8, NVLINK4, algorithm="tree") < all_reduce_s(below, 8, NVLINK4, algorithm="ring")
    assert all_reduce_s(above, 8, NVLINK4, algorithm="ring") < all_reduce_s(above, 8, NVLINK4, algorithm="tree")


def test_all_gather_and_reduce_scatter_are_p_minus_1_ring_steps() -> None:
    """64 MiB over 4 devices on PCIe 5: 3 steps of 16 MiB: 3 (1 us + 2^24 / 63e9)."""
    expected_s = 3 * (1e-6 + 2**24 / 63e9)
    assert all_gather_s(64 * MIB, 4, PCIE5) == pytest.approx(expected_s, rel=1e-12)
    assert reduce_scatter_s(64 * MIB, 4, PCIE5) == pytest.approx(expected_s, rel=1e-12)


def test_ring_all_reduce_is_a_reduce_scatter_then_an_all_gather() -> None:
    for p in (2, 3, 8, 72):
        assert all_reduce_s(GIB, p, NIC, algorithm="ring") == pytest.approx(
            reduce_scatter_s(GIB, p, NIC) + all_gather_s(GIB, p, NIC), rel=1e-12)


def test_all_to_all_is_p_minus_1_pairwise_steps() -> None:
    """8 MiB per device over 8 devices with one 400 Gb/s NIC each: 7 steps of 1 MiB: 7 (130 ns + 2^20 / 50e9)."""
    assert all_to_all_s(8 * MIB, 8, NIC) == pytest.approx(7 * (130e-9 + 2**20 / 50e9), rel=1e-12)


def test_hierarchical_all_reduce_of_two_h100_nodes() -> None:
    """2 nodes x 8 H100s, 1 GiB: NVLink reduce-scatter (7 steps of n/8), a ring all-reduce of n/8 between the two
    nodes over each GPU's NIC (2 steps of n/16), an NVLink all-gather (7 steps of n/8)."""
    nvlink_s = 2 * 7 * (0.8e-6 + 2**30 / 8 / 450e9)
    nic_s = 2 * 1 * (130e-9 + 2**30 / 16 / 50e9)
    assert hierarchical_all_reduce_s(GIB, [(NVLINK4, 8), (NIC, 2)], algorithm="ring") \
        == pytest.approx(nvlink_s + nic_s, rel=1e-12)
    assert hierarchical_all_reduce_s(GIB, [(NVLINK4, 8), (NIC, 2)], algorithm="tree") \
        == pytest.approx(nvlink_s + 2 * (130e-9 + 2**30 / 8 / 50e9), rel=1e-12)


def test_hierarchy_of_one_level_is_the_flat_all_reduce_and_levels_nest() -> None:
    for algorithm in ("ring", "tree"):
        assert hierarchical_all_reduce_s(GIB, [(NIC, 16)], algorithm=algorithm) \
            == all_reduce_s(GIB, 16, NIC, algorithm=algorithm)
    three = hierarchical_all_reduce_s(GIB, [(NVLINK4, 8), (PCIE5, 2), (NIC, 4)], algorithm="ring")
    inner = reduce_scatter_s(GIB, 8, NVLINK4) + all_gather_s(GIB, 8, NVLINK4)
    assert three == pytest.approx(
        inner + hierarchical_all_reduce_s(GIB / 8, [(PCIE5, 2), (NIC, 4)], algorithm="ring"), rel=1e-12)


def test_ring_hierarchy_over_one_link_moves_the_flat_rings_bytes_in_fewer_steps() -> None:
    """Levels g and m over one link: 2(g-1) steps of n/g plus 2(m-1) of n/(gm) send 2(gm-1)/(gm) n, as the flat
    ring of gm does, in 2(g+m-2) steps instead of 2(gm-1). With alpha = 0 the two are equal."""
    bandwidth_only = dataclasses.replace(NVLINK4, latency_s=0.0)
    flat_s = all_reduce_s(GIB, 32, bandwidth_only, algorithm="ring")
    assert hierarchical_all_reduce_s(GIB, [(bandwidth_only, 8), (bandwidth_only, 4)], algorithm="ring") \
        == pytest.approx(flat_s, rel=1e-12)
    hierarchical = hierarchical_all_reduce_s(GIB, [(NVLINK4, 8), (NVLINK4, 4)], algorithm="ring")
    assert all_reduce_s(GIB, 32, NVLINK4, algorithm="ring") - hierarchical \
        == pytest.approx((2 * 31 - 2 * 10) * 0.8e-6, rel=1e-9)


ALL = {
    "all-reduce ring": lambda n, p, link: all_reduce_s(n, p, link, algorithm="ring"),
    "all-reduce tree": lambda n, p, link: all_reduce_s(n, p, link, algorithm="tree"),
    "all-gather": all_gather_s,
    "reduce-scatter": reduce_scatter_s,
    "all-to-all": all_to_all_s,
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_a_group_of_one_or_an_empty_message_costs_nothing(name: str) -> None:
    collective = ALL[name]
    assert collective(GIB, 1, NVLINK4) == 0.0
    assert collective(0, 8, NVLINK4) == 0.0
    assert send_recv_s(0, NVLINK4) == 0.0
    assert hierarchical_all_reduce_s(GIB, [(NVLINK4, 1), (NIC, 1)], algorithm="ring") == 0.0
    assert hierarchical_all_reduce_s(0, [(NVLINK4, 8), (NIC, 2)], algorithm="ring") == 0.0


@pytest.mark.parametrize("name", sorted(ALL))
def test_time_grows_with_the_message_and_the_group(name: str) -> None:
    """More bytes always cost more. A larger group never costs less: the step count (p-1, or ceil(log2 p)) grows
    and the bytes per device (p-1)/p n grow too; the tree's cost steps up only at powers of two."""
    collective = ALL[name]
    sizes = [1, 1e3, MIB, GIB, 1e12]
    for p in (2, 3, 8, 64):
        times = [collective(n, p, NVLINK4) for n in sizes]
        assert all(a < b for a, b in itertools.pairwise(times)), (p, times)
    times = [collective(MIB, p, NVLINK4) for p in range(2, 66)]
    assert all(a <= b for a, b in itertools.pairwise(times))
    assert times[-1] > times[0]


def test_hierarchical_time_grows_with_the_message_but_more_gpus_per_node_can_cut_it() -> None:
    """Bytes always cost more. But 2 nodes of 8 GPUs beat 2 nodes of 2 on 1 GiB, since every GPU brings its own
    NIC and the slower NIC carries n/g. By hand: g = 2: 2 x 1 x n/2/450e9 + 2 x n/4/50e9 = 2.386 + 10.737 ms, plus
    2 x (0.8 + 0.13) us; g = 8: 2 x 7 x n/8/450e9 + 2 x n/16/50e9 = 4.176 + 2.684 ms, plus 14 x 0.8 + 2 x 0.13 us."""
    times = [hierarchical_all_reduce_s(n, [(NVLINK4, 8), (NIC, 2)], algorithm="ring") for n in (1, 1e3, MIB, GIB)]
    assert all(a < b for a, b in itertools.pairwise(times))
    two, eight = (hierarchical_all_reduce_s(GIB, [(NVLINK4, g), (NIC, 2)], algorithm="ring") for g in (2, 8))
    assert (two, eight) == (pytest.approx(13.125e-3, rel=1e-3), pytest.approx(6.871e-3, rel=1e-3))


# ------------------------------------------------------------------------------------------------ bad input
def _preset_data(name: str) -> dict:
    return yaml.safe_load(Path(load_link(name).source).read_text())


@pytest.mark.parametrize(("edit", "field", "fragment"), [
    (lambda d: d.update(bytes_per_s_per_direction=0), "bytes_per_s_per_direction", "positive number"),
    (lambda d: d.update(bytes_per_s_per_direction=-1.0e+9), "bytes_per_s_per_direction", "positive number"),
    (lambda d: d.update(bytes_per_s_per_direction=math.inf), "bytes_per_s_per_direction", "finite"),
    (lambda d: d.update(bytes_per_s_per_direction="450e9"), "bytes_per_s_per_direction", "write 4.5e+11"),
    (lambda d: d.update(bytes_per_s_per_direction=1e-30), "bytes_per_s_per_direction", "between"),
    (lambda d: d.update(latency_s=math.nan), "latency_s", "expected a finite number, got nan"),
    (lambda d: d.update(latency_s=-1e-6), "latency_s", "a number >= 0"),
    (lambda d: d.update(latency_s=True), "latency_s", "expected a number"),
    (lambda d: d.pop("latency_s"), "latency_s", "missing"),
    (lambda d: d.update(name=""), "name", "non-empty"),
    (lambda d: d.update(source=3), "source", "expected a string"),
    (lambda d: d.update(hops=2), "hops", "unknown key"),
])
def test_bad_link_file_names_file_and_field(tmp_path: Path, edit, field: str, fragment: str) -> None:
    data = _preset_data("nvlink4-h100")
    edit(data)
    path = tmp_path / "bad-link.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_link(path)
    assert (info.value.source, info.value.where) == (str(path), field)
    assert fragment in info.value.message


def test_an_inline_link_is_blamed_on_its_yaml_path() -> None:
    data = {**_preset_data("nic-400g"), "bytes_per_s_per_direction": 0}
    with pytest.raises(SpecError, match=r"^sys\.yaml: links\.inter_node\.bytes_per_s_per_direction: expected"):
        link_from_dict(data, "sys.yaml", "links.inter_node")
    with pytest.raises(SpecError, match=r"^sys\.yaml: links\.inter_node: expected a mapping"):
        link_from_dict([1, 2], "sys.yaml", "links.inter_node")


def test_unknown_preset_and_missing_file_are_named() -> None:
    with pytest.raises(SpecError, match=r"^nvlink9: not a link preset \(known: ib-100g-a100, "):
        load_link("nvlink9")
    with pytest.raises(SpecError, match=r"^no/such/link\.yaml: no such file"):
        load_link("no/such/link.yaml")


@pytest.mark.parametrize(("call", "where"), [
    (lambda: all_reduce_s(MIB, 0, NVLINK4, algorithm="ring"), "all_reduce_s.p"),
    (lambda: all_gather_s(MIB, 2.5, NVLINK4), "all_gather_s.p"),
    (lambda: reduce_scatter_s(-1, 4, NVLINK4), "reduce_scatter_s.message_bytes"),
    (lambda: all_to_all_s(math.nan, 4, NVLINK4), "all_to_all_s.message_bytes"),
    (lambda: send_recv_s(math.inf, NVLINK4), "send_recv_s.message_bytes"),
    (lambda: send_recv_s(10**400, NVLINK4), "send_recv_s.message_bytes"),
    (lambda: all_to_all_s(MIB, 10**400, NVLINK4), "all_to_all_s.p"),
    (lambda: all_reduce_s(MIB, 8, NVLINK4, algorithm="butterfly"), "all_reduce_s.algorithm"),
    (lambda: hierarchical_all_reduce_s(MIB, [], algorithm="ring"), "hierarchical_all_reduce_s.levels"),
    (lambda: hierarchical_all_reduce_s(MIB, [(NVLINK4, 8), ("nic-400g", 2)], algorithm="ring"),
     "hierarchical_all_reduce_s.levels[1]"),
    (lambda: hierarchical_all_reduce_s(MIB, [(NVLINK4, 8), (NIC, 0)], algorithm="ring"),
     "hierarchical_all_reduce_s.levels[1].p"),
])
def test_bad_collective_arguments_are_spec_errors(call, where: str) -> None:
    with pytest.raises(SpecError) as info:
        call()
    assert info.value.where == where
