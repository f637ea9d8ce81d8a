"""A point its model rejects is stored with its config, its reason holds no path, and building its record costs no
more than the points accepted (s45, after f1eef94): a sparse point refused for its budget or context keeps the
`budget` a feasible point carries (`sparse_points.method_budget`); a parallel point whose devices x tp exceed its
topology names the topology, not its installed file; and a parallel point refused for its device count beyond
ARCHSIM_MAX_DEVICES (4096 by default) does not list its group to name a link (16 million devices had taken 22 s and
1 GB for a row whose reason is the count)."""

from __future__ import annotations

import math

import pytest

from archsim import library
from archsim.dse.points import evaluate_points, expand, load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import CONFIG_FIELDS, read_records
from archsim.dse.sweep import run_sweep
from archsim.systems import seqpar
from archsim.systems.seqpar_spec import MAX_DEVICES, ParallelSpec
from archsim.systems.topology import load_topology

SPARSE = {"gpu": "h100-sxm5", "workload": "llama3-8b"}
# Quest at a 512-token budget: a 1-token context cannot hold it (refused: 'a token budget at most the context'),
# 32K runs. TokenSelect's top_k 4096 is beyond a 2048-token context (refused), within 32K.
QUEST = {"name": "quest-short", "sparse": {**SPARSE, "method": "quest", "budget": 512},
         "axes": {"sparse.context": [1, 32768]}}
TOKENSELECT = {"name": "top-k-long", "sparse": {**SPARSE, "method": "tokenselect", "top_k": 4096},
               "axes": {"sparse.context": [2048, 32768]}}
# Ring attention on one HGX H100 board (8 GPUs): 4 devices x tp 2 = 8 GPUs fit, 4 x tp 4 = 16 do not.
TP_BEYOND = {"name": "tp", "parallel": {"workload": "llama3-8b", "seq_len": 65536, "topology": "hgx-h100-8",
                                        "scheme": "ring", "devices": 4},
             "axes": {"parallel.tp": [2, 4]}, "objectives": ["latency_s", "efficiency"]}
# Ring attention over DGX A100 nodes (8 GPUs a node, any number of nodes): 8 devices run; 16 million are refused
# by the device limit (the topology itself would hold them).
MANY = {"name": "many", "parallel": {"workload": "llama3-8b", "seq_len": 32768, "topology": "dgx-a100",
                                     "scheme": "ring"},
        "axes": {"parallel.devices": [8, 16_000_000]}, "objectives": ["latency_s", "efficiency"]}


def _records(data: dict) -> list[dict]:
    spec = sweep_from_dict(data)
    return evaluate_points(spec, load_base(spec), expand(spec))


@pytest.mark.parametrize(("data", "budget"), [(QUEST, 512), (TOKENSELECT, 4096)])
def test_a_sparse_point_its_model_rejects_is_stored_with_its_budget(tmp_path, data, budget):
    """Before: the refused row had no config (`config_fields` [], `budget` missing); a feasible row of the same
    sweep has `budget` (Quest's token budget, TokenSelect's top_k: the module docstring of `sparse_points`)."""
    refused, fits = _records(data)
    assert not refused["feasible"] and fits["feasible"]
    assert refused[CONFIG_FIELDS] == fits[CONFIG_FIELDS] == ["budget"]
    assert refused["budget"] == fits["budget"] == budget
    assert math.isnan(refused["latency_s"]) and math.isnan(refused["speedup"])
    spec = sweep_from_dict(data)
    run_sweep(spec, tmp_path / "s.sqlite")
    stored = read_records(tmp_path / "s.sqlite").set_index("sparse.context")
    assert stored.loc[data["axes"]["sparse.context"][0], "budget"] == budget  # kept by the store too


def test_a_sparse_point_of_a_method_without_a_budget_stores_it_as_nan():
    """DuoAttention has no budget (None in `archsim sparse`, NaN in a record): its refused point says so too. A
    retrieval fraction that keeps none of Llama-3-8B's 256 KV heads (0.0019 x 256 = 0.49, rounded to 0) is refused."""
    data = {"name": "duo", "sparse": {**SPARSE, "method": "duoattention", "context": 32768},
            "axes": {"sparse.retrieval_fraction": [0.0019, 0.5]}}
    refused, fits = _records(data)
    assert not refused["feasible"] and fits["feasible"]
    assert refused[CONFIG_FIELDS] == fits[CONFIG_FIELDS] == ["budget"]
    assert math.isnan(refused["budget"]) and math.isnan(fits["budget"])


def test_devices_times_tp_beyond_the_topology_names_it_without_its_file():
    """The reason said "... of topology 'hgx-h100-8' (<the preset's installed path>)": another on every install,
    so a store reused elsewhere exported other bytes."""
    fits, beyond = _records(TP_BEYOND)
    assert fits["feasible"] and not beyond["feasible"]
    assert beyond["reason"] == ("parallel.devices: 4 devices x tp 4 = 16 GPUs, beyond the 8 of topology "
                                "'hgx-h100-8'")


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each group `seqpar` lists to name a link (`seqpar_schemes.group_members`); a group beyond the
    device limit fails the test at once (listing it took 22 s)."""
    sizes: list[int] = []
    members = seqpar.group_members

    def counted(count: int, stride: int) -> list[int]:
        assert count <= MAX_DEVICES, f"listed a group of {count} devices"
        sizes.append(count)
        return members(count, stride)

    monkeypatch.setattr(seqpar, "group_members", counted)
    return sizes


def test_a_parallel_point_beyond_the_device_limit_lists_no_group(listed):
    fits, refused = _records(MANY)
    assert fits["feasible"] and not refused["feasible"]
    assert refused["reason"] == ("parallel.devices: expected at most 4096 (raise ARCHSIM_MAX_DEVICES for more), "
                                 "got 16000000")
    assert refused["link"] == "" and refused["devices"] == 16_000_000  # its config kept, no link named
    assert fits["link"] == "nvlink3-a100"  # 8 GPUs: one node's NVLink


def test_archsim_parallel_beyond_the_device_limit_lists_no_group(listed, cli_json):
    rows = cli_json("parallel", "--scheme", "ring", "--devices", "8,16000000", "--topology", "dgx-a100", "-w",
                    "llama3-8b", "--seq-len", "32K", "--json")
    refused = rows["points"][1]
    assert refused["devices"] == 16_000_000 and not refused["feasible"] and refused["link"] == ""


DGX = load_topology("dgx-a100")


@pytest.mark.parametrize(("scheme", "devices", "tp", "link"), [
    ("ring", 8, 1, "nvlink3-a100"),  # one node
    # two nodes: hops over NVLink (3 us, 300 GB/s) and InfiniBand (1 us, 25 GB/s), neither slower in both latency
    # and bandwidth: the step named after both (`links.slowest_hop`)
    ("ring", 16, 1, "nvlink3-a100 + ib-hdr-200g"),
    ("ring", 2, 8, "ib-hdr-200g"),  # one rank a node (tp 8): every hop between nodes
    ("lasp1", 16, 1, "nvlink3-a100 x 14, ib-hdr-200g x 1"),  # a chain 0..15: 7 hops in each node, 1 between
    ("ring", MAX_DEVICES, 1, "nvlink3-a100 + ib-hdr-200g"),  # at the limit: accepted, its link named
])
def test_an_accepted_point_names_its_link_as_before(scheme, devices, tp, link):
    spec = ParallelSpec(scheme, devices, library.load_workload_spec("llama3-8b"), 65536, DGX.gpu, DGX, tp=tp)
    assert seqpar.scheme_link_name(spec) == link
