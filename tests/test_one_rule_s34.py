"""One systems layer, one rule (s34): a sparse point's record and the feasibility it judges live with the point
(`sparse_points.point_record`), so `archsim sparse --json`'s `fits` and a `sparse:` sweep's `feasible` are one
judgement; multi-device attention's GPU energy is the systems layer's board power (`system_types.board_power_w`).

Sizes as tests/test_sparse_audit_s24.py: FlexPrefill (density 1) on Llama-3-8B on an H100 SXM5 (80 GiB); at 1M
tokens the prefill holds its 16.1 GB of weights, one layer's K and V and its working set (36864 bytes a token, the KV
cache on the host): 54.7 GB, within the GPU's memory; at 8M 325.3 GB, beyond it, so the point there has no time and
does not fit."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.sparse_spec import load_sparse_targets, sparse_record
from archsim.gpu.load import load_gpu
from archsim.systems import seqpar
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.sparse_points import SparseMethod, phase_point, point_record
from archsim.systems.topology import load_topology

H100 = load_gpu("h100-sxm5")
LLAMA8 = library.load_workload_spec("llama3-8b")
CONTEXTS = (2**20, 8 * 2**20)  # 1M: fits; 8M: the prefill beyond the H100's memory (module docstring)


def _cli_points() -> list[dict]:
    result = CliRunner().invoke(main, ["sparse", "--method", "flexprefill", "--density", "1", "--gpu", "h100-sxm5",
                                       "-w", "llama3-8b", "--context", "1M,8M", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["points"]


def test_a_sparse_points_record_is_feasible_where_it_fits() -> None:
    """The record is built on the systems layer from the point: 1M feasible with dense's time over the method's as
    its speedup; 8M infeasible, its reason the missing time, no speedup (dense has no time either)."""
    short, long = (phase_point(SparseMethod("flexprefill", density=1.0), LLAMA8, H100, n) for n in CONTEXTS)
    fits, beyond = point_record(short, "flex", H100), point_record(long, "flex", H100)
    assert fits.feasible and fits.reason == "" and fits.time_s == short["time_s"]
    assert fits.extras["speedup"] == short["dense_time_s"] / short["time_s"]
    assert not beyond.feasible and beyond.reason.startswith("FlexPrefill has no time: ")
    assert math.isnan(beyond.extras["speedup"]) and beyond.extras["dense_fits"] == 0


def test_the_cli_and_a_sweep_judge_fits_alike() -> None:
    """`archsim sparse --json`'s `fits` is the sweep record's `feasible`, point by point, and the sweep's record is
    the systems layer's (`point_record`)."""
    block = {"method": "flexprefill", "gpu": "h100-sxm5", "workload": "llama3-8b", "density": 1.0}
    targets = load_sparse_targets(block, {"sparse.context": list(CONTEXTS)}, "<test>")
    for cli, context in zip(_cli_points(), CONTEXTS, strict=True):
        record = sparse_record(targets, {"sparse.context": context}, "<test>")
        point = phase_point(SparseMethod("flexprefill", density=1.0), LLAMA8, H100, context)
        assert record.feasible == cli["fits"] == point["fits"]
        assert repr(record) == repr(point_record(point, "flexprefill/llama3-8b/h100-sxm5", H100))  # NaN alike
    assert [p["fits"] for p in _cli_points()] == [True, False]


def test_parallel_gpu_energy_is_the_board_power_rule(monkeypatch) -> None:
    """A ring over 4 A100s: the layer's energy is the board power (the A100 preset's 400 W TDP) x the time x 4
    devices; the rule read is `board_power_w`'s (a changed rule changes it)."""
    nvlink = load_topology("a100-nvlink")
    spec = ParallelSpec("ring", 4, LLAMA8, 32768, nvlink.gpu, nvlink)
    result = parallel_time(spec, reference=False)
    assert nvlink.gpu.power_w == 400
    assert result.energy_j == pytest.approx(400 * result.time_s * 4, rel=1e-12)
    monkeypatch.setattr(seqpar, "board_power_w", lambda device: 1.0)
    assert parallel_time(spec, reference=False).energy_j == pytest.approx(result.time_s * 4, rel=1e-12)


def test_the_neupims_timeline_is_the_event_replays() -> None:
    """NeuPIMs with one row buffer, GPT3-30B ShareGPT batch 256 (SBI): the drawn layer is the replay's, so it shows
    what the closed form's stage sum hid: sub-batch 2's GEMVs take the shared HBM the moment sub-batch 1's
    projection/FFN transfers end, while the NPU is still computing, and the layer runs longer than
    `layer_phases`' layer time (the closed form's timeline ended exactly there)."""
    from archsim.systems import neupims, neupims_reproduce
    from archsim.systems.system_model import layer_phases

    contexts = neupims_reproduce.sample_contexts((0, neupims_reproduce.DATASETS.index("sharegpt"), 256, 0), 256,
                                                 "sharegpt")
    model = neupims.system(neupims.configure("neupims", {"devices.pim.row_buffers": 1,
                                                         "schedule.only_when_faster": False}), "gpt3-30b")
    spans = {(s.resource, s.name): s for s in neupims.layer_timeline(model, contexts)}
    post_hbm, post_npu = spans["shared HBM", "sb1 L1 post on the HBM"], spans["npu", "sb1 L1 post"]
    mha = spans["pim", "sb2 L1 mha"]
    assert mha.start_s == post_hbm.end_s < post_npu.end_s
    assert max(s.end_s for s in spans.values()) > layer_phases(model, contexts).layer_s * (1 + 1e-6)
