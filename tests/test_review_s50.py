"""Review of session 50's commits (fixer s50): a width given with one of read/write restated left the other quoted
at the new width; `archsim parallel` rows named the group's slowest hop where the collective schemes are timed over
NCCL's channels; the default-size hint and the sweep's remedy left out the sizes other than model sizes (tile_kv)
and their ranks; FlexPrefill's density check let a bool through."""

from __future__ import annotations

import pytest
import yaml
from test_user_cascade_sizes_s50 import ARRAY, GEMM, MAPPING

from archsim import library
from archsim.dse.spec import sweep_from_dict
from archsim.errors import SpecError
from archsim.model.analytical import evaluate
from archsim.model.batch import evaluate_columns
from archsim.model.gpu_flexprefill import check_density
from archsim.point import prepare
from archsim.systems.links import load_link
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_reproduce import LASP_TOPOLOGY, _ahead_numbers, _point
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

# --- 1: a width given with one of read/write restated carries the other there at its energy per bit ------------

WIDTH, WRITE = "memories.GlobalBuffer.energy_access_bits", "memories.GlobalBuffer.energy.actions_pj.write"


@pytest.fixture(scope="module")
def point():
    return prepare("fusemax", workload="bert-base", sets={"seq_len": 1024})


def _run(point, arch):
    return evaluate(point.binding, point.analysis, arch, point.mapping)


def test_a_width_given_with_write_restated_keeps_reads_energy_per_bit(point, tmp_path) -> None:
    """energy_access_bits 8192 and write restated there: read, quoted at 4096 b, is carried to 8192 b (2x its pJ),
    its energy per bit kept (it had stayed 12512.76 pJ, now quoted at 8192 b: half its energy per bit)."""
    buffer = point.arch.memory("GlobalBuffer")
    read, write = buffer.energy.actions_pj["read"], 2 * buffer.energy.actions_pj["write"]
    changed = point.arch.with_changes(**{WIDTH: 8192, WRITE: write})
    assert changed.memory("GlobalBuffer").energy.actions_pj["read"] == pytest.approx(2 * read, rel=1e-12)
    assert changed.memory("GlobalBuffer").energy.actions_pj["write"] == write
    path = tmp_path / "derived.yaml"
    path.write_text(yaml.safe_dump({"base": "fusemax", "name": "derived", "memories": {"GlobalBuffer": {
        "energy_access_bits": 8192, "energy": {"actions_pj": {"write": write}}}}}, sort_keys=False))
    assert library.load_architecture_spec(str(path)).memory("GlobalBuffer") == changed.memory("GlobalBuffer")
    base = _run(point, point.arch)
    columns = evaluate_columns(point.binding, point.analysis, point.arch, point.mapping,
                               {WIDTH: [8192], WRITE: [write]})
    assert columns.result(0).energy_by[("GlobalBuffer", "read")] == pytest.approx(
        base.energy_by[("GlobalBuffer", "read")], rel=1e-12)
    assert columns.result(0).energy_by == pytest.approx(_run(point, changed).energy_by, rel=1e-12)


def test_a_width_given_with_both_restated_takes_them_as_given(point) -> None:
    both = point.arch.with_changes(**{WIDTH: 8192, "memories.GlobalBuffer.energy.actions_pj.read": 100.0,
                                      WRITE: 200.0})
    assert {a: both.memory("GlobalBuffer").energy.actions_pj[a] for a in ("read", "write")} == {"read": 100.0,
                                                                                                "write": 200.0}


# --- 2, 7: the collective schemes' rows name the link they are timed over ----------------------------------------

HGX = load_topology("hgx-h100")
NIC = HGX.levels[-1].link
LLAMA8 = library.load_workload_spec("llama3-8b")


@pytest.mark.parametrize(("scheme", "workload"), [("allgather", "llama3-8b"), ("megatron-sp", "llama3-8b"),
                                                  ("lasp2", "linear-llama3-1b"),
                                                  ("lasp2h", "linear-llama3-1b-hybrid")])
def test_a_collective_schemes_row_names_its_channels(scheme: str, workload: str) -> None:
    """16 H100s over two nodes: the all-gathers cross the nodes on all 8 NICs (`Topology.collective_link`), as the
    row says (it had said the one NIC, "ib-ndr-400g", beside the 8-NIC time)."""
    spec = ParallelSpec(scheme, 16, library.load_workload_spec(workload), 131072, HGX.gpu, HGX)
    assert parallel_time(spec, reference=False).record().config["link"] == f"{NIC.name} x 8"


def test_a_grid_point_names_the_link_as_the_row_does() -> None:
    result = parallel_time(ParallelSpec("allgather", 16, LLAMA8, 131072, HGX.gpu, HGX))
    assert _point(result)["link"] == result.record().config["link"] == f"{NIC.name} x 8"


def test_the_lasp2_crossover_reason_quotes_the_gathers_link() -> None:
    """dgx-a100's nodes: 8 GPUs, each with its own HDR NIC; the gather's 8 channels cross on 8 of them, a GPU's
    NVLink 3 port carrying the whole step (neither slower in both: the step named after both, at the lower
    bandwidth)."""
    nvlink, nic = (load_link(level.link.name) for level in load_topology(LASP_TOPOLOGY).levels)
    numbers = _ahead_numbers()
    assert numbers["gather_link"] == f"{nvlink.name} + {nic.name} x 8"
    assert numbers["gather_gb_s"] == pytest.approx(min(nvlink.bytes_per_s_per_direction,
                                                       8 * nic.bytes_per_s_per_direction) / 1e9, rel=1e-12)


# --- 3, 5: the sizes to set, a parameter other than a model size and its ranks included ------------------------


def test_the_default_size_hint_lists_every_size_and_the_rank(cli) -> None:
    """`--set M1=3` without a workload: the hint had listed the model sizes only, and following it was refused for
    tile_kv."""
    text = cli("analyze", "attention-1pass", "--set", "M1=3", expect=2).output
    assert ("pass --workload W, or --set each size it binds still unset: batch=N, heads=N, seq_len=N, head_dim=N, "
            "tile_kv=N, word_bytes=N (or the rank it sizes: M0)") in text, text
    followed = [arg for size in ("batch=2", "heads=2", "seq_len=12", "head_dim=8", "M0=4", "word_bytes=2")
                for arg in ("--set", size)]
    assert "ranks" in cli("analyze", "attention-1pass", "--set", "M1=3", *followed).output


def test_a_sweeps_remedy_names_the_rank_a_size_sizes(tmp_path, monkeypatch) -> None:
    for name, data in (("my-gemm", GEMM), ("my-array", ARRAY), ("my-map", MAPPING)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as caught:
        sweep_from_dict({"name": "s", "mapping": "my-map.yaml", "sets": {"rows": 1024, "cols": 1024, "word_bytes": 2},
                         "axes": {"arch.memories.GLB.capacity_bytes": [262144, 2097152]}}, "s.yaml")
    assert caught.value.where == "workload"
    assert "depth=N (or the rank it sizes: K)" in caught.value.message, caught.value.message


# --- 6: FlexPrefill's density is a number ------------------------------------------------------------------------


@pytest.mark.parametrize("density", [True, "0.5", None])
def test_flexprefill_density_is_a_number(density) -> None:
    with pytest.raises(SpecError) as caught:
        check_density(density)
    assert caught.value.where == "density" and repr(density) in caught.value.message
