"""`archsim check` on system specs (found by fuzzing): specs that every run refused, or whose field a run silently
ignored, passed `check`. Each case is a library preset with one field changed (a derived spec, `base:`); `check`,
the loader `simulate` and sweeps use (`load_system`, `with_fields`) and `simulate` itself now refuse it alike, exit
2 with one line naming the file, the field and what was expected (`system_checks.check_system`, run by
`system_from_dict`). What depends on the workload (a TP that does not divide its heads) is still `simulate`'s.

Expected numbers are the presets' own: vllm-h100 runs TP 4 on 4 H100s per node over NVLink (its `tp` link),
lamina TP 2 on 2 compute GPUs (ping-pong: one replica) beside 4 H20 memory devices, npu-only and neupims 4 NPUs
without a `tp` link (a TP group may span whole nodes there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.systems.system_spec import PRESETS_PACKAGE, load_system, system_names, with_fields

SPARE_GPU = {"kind": "gpu", "count": 1, "preset": "h100-sxm5"}
NEUPIMS_RULES = load_system("neupims").data["placement"]

# (preset, the keys laid over it, the field the error names, what the message says)
REFUSED = [
    # 1. an NPU streams from the system's one HBM (a bank-pim device), a bank-PIM's softmax runs on its one NPU
    ("npu-only", {"devices": {"hbm": None}}, "devices.npu", "streams from an HBM: the system needs exactly one "
                                                            "bank-pim device, has 0"),
    ("neupims", {"devices": {"npu2": {"kind": "npu", "count": 4}},
                 "placement": [{"op": "ffn", "device": "npu2"}, *NEUPIMS_RULES]},
     "devices.pim", "the system needs exactly one npu device, has 2"),
    # 3. an attention pool read by attention offloading alone, which needs one, its link and a pool of its size
    ("vllm-h100", {"parallelism": {"attention_pool": 2}}, "parallelism.attention_pool",
     "read only by attention offloading (ping-pong, staggered), which a blocked schedule is not"),
    ("lamina", {"parallelism": {"attention_pool": None}}, "parallelism.attention_pool", "missing: the number of "
                                                                                        "memory devices"),
    ("lamina", {"links": {"attention": None}}, "links.attention", "missing: attention offloading sends q, k, v"),
    ("lamina", {"devices": {"memory": {"count": 2}}}, "devices.memory.count",
     "expected parallelism.attention_pool = 4 memory devices, got 2"),
    # 4. schedules that would run as blocked, and schedule fields no device reads
    ("vllm-h100", {"schedule": {"kind": "co-processing"}}, "schedule.kind",
     "the placement puts all attention on gpu: it would run as blocked"),
    ("vllm-h100", {"schedule": {"kind": "overlapped"}}, "schedule.kind", "no placement rule puts it on one: expected "
                                                                         "blocked"),
    ("vllm-h100", {"schedule": {"attention_sync": "barrier"}}, "schedule.attention_sync",
     "read only where decode attention runs on a bank-pim device's channels"),
    ("duplex-pe", {"schedule": {"expert_coprocessing": False}}, "schedule.expert_tp",
     "read only with expert_coprocessing: true (+PE)"),
    ("duplex-gpu", {"schedule": {"kind": "co-processing", "expert_coprocessing": True}},
     "schedule.expert_coprocessing", "expected a logic-pim device to share the experts with"),
    # a device nothing reads; a channel policy on a PIM no attention runs on
    ("vllm-h100", {"devices": {"spare": SPARE_GPU}}, "devices.spare", "no placement rule puts an op on this gpu "
                                                                      "device and no other device reads it"),
    ("npu-only", {"devices": {"hbm": {"channel_policy": "rr"}}}, "devices.hbm.channel_policy",
     "read only where a placement rule puts attention on the device"),
]


# Degrees the run sets (--tp/--pp, a sweep's axes, the workload's by_workload entry) are checked when its model is
# built: check passes the file, simulate refuses it. (preset, the keys laid over it, the workload, field, message)
RUN_REFUSED = [
    # a TP group larger than the devices it spans: one node over the tp link, whole nodes without one
    ("vllm-h100", {"devices": {"gpu": {"count": 2}}}, "llama3-8b", "devices.gpu.count",
     "expected at least 4 (a TP group in one node: its all-reduce runs on the node's link tp; parallelism.tp = 4), "
     "got 2"),
    ("vllm-h100", {"parallelism": {"by_workload": {"llama3-70b": {"tp": 8, "pp": 1}}}}, "llama3-70b",
     "devices.gpu.count", "expected at least 8"),
    ("npu-only", {"parallelism": {"tp": 4}, "devices": {"npu": {"count": 3}, "hbm": {"count": 3}}}, "llama3-8b",
     "devices.npu.count", "expected at least 4 or a divisor of it"),
    # attention offloading's degrees; expert parallelism over no link
    ("lamina", {"devices": {"compute": {"count": 4}}}, "llama3-70b", "devices.compute.count",
     "expected tp x replicas = 2 x 1 = 2 compute devices (micro_batches - 1 replicas), got 4"),
    ("lamina", {"parallelism": {"pp": 2}}, "llama3-70b", "parallelism.pp", "expected 1: pipeline stages are not "
                                                                           "modelled with attention offloading, got 2"),
    ("vllm-h100", {"parallelism": {"ep": 2}}, "mixtral-8x7b", "links.ep",
     "missing: parallelism.ep = 2 exchanges each MoE layer's"),
]


def _derived(tmp_path: Path, preset: str, over: dict) -> Path:
    """A spec file: `preset` with `over` laid over it."""
    path = tmp_path / "system.yaml"
    path.write_text(yaml.safe_dump({"base": preset, "name": f"{preset}-changed", **over}), encoding="utf-8")
    return path


@pytest.mark.parametrize(("preset", "over", "where", "says"), REFUSED)
def test_check_loader_and_simulate_refuse_what_the_spec_makes_impossible(cli, tmp_path, preset, over, where, says):
    path = _derived(tmp_path, preset, over)
    line = cli("check", str(path), expect=2).output
    assert line.startswith(f"error: {path}: {where}: ") and line.count("\n") == 1, line
    assert says in line, line
    with pytest.raises(SpecError) as info:
        load_system(path)
    assert f"error: {info.value}\n" == line  # the loader simulate and sweeps use: the same error
    assert cli("simulate", "-s", str(path), "-w", "llama3-8b", "--rate", "1", "--requests", "2",
               expect=2).output == line


@pytest.mark.parametrize(("preset", "over", "workload", "where", "says"), RUN_REFUSED)
def test_degrees_are_refused_when_the_run_sets_them(cli, tmp_path, preset, over, workload, where, says):
    """A sweep's axes or --tp may fix them (a count axis over a tp-8 spec of 4 GPUs), and a by_workload entry is
    read only for its model: check passes the file with the run's refusal as a warning, the run refuses it naming
    the field."""
    path = _derived(tmp_path, preset, over)
    line = cli("simulate", "-s", str(path), "-w", workload, "--rate", "1", "--requests", "2", expect=2).output
    assert line.startswith(f"error: {path}: {where}: ") and says in line and line.count("\n") == 1, line
    checked = cli("check", str(path)).output
    assert checked.startswith("ok") and "warning: a run at its own degrees is refused" in checked
    assert line.removeprefix("error: ").strip() in checked


def test_a_sweeps_axis_may_fix_its_systems_degrees(cli, tmp_path):
    """A tp-8 spec of 4 GPUs swept over the GPU count, and ep 2 swept beside the ep link it needs: refused at load
    when the file's degrees were checked there; each point runs."""
    (tmp_path / "tp8.yaml").write_text(yaml.safe_dump(
        {"name": "tp8", "base": "vllm-h100", "parallelism": {"tp": 8, "pp": 1, "by_workload": None}}))
    serving = {"rate_per_s": 2.0, "requests": 4, "lengths": "sharegpt", "seed": 0, "max_batch": 64}
    for name, system, axes in (("count", "tp8.yaml", {"system.devices.gpu.count": [8, 16]}),
                               ("ep", "vllm-h100", {"system.parallelism.ep": [1, 2],
                                                    "system.links.ep": ["ib-ndr-400g", "nvlink4-h100"]})):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(yaml.safe_dump({"name": name, "system": system, "workload": "mixtral-8x7b",
                                        "serving": serving, "axes": axes, "sampling": {"kind": "grid"},
                                        "objectives": ["throughput_tok_s", "tbt_p99_s"]}))
        out = cli("sweep", str(spec), "--local", "--db", str(tmp_path / f"{name}.sqlite")).output
        assert "feasible" in out and " 0 feasible" not in out, out


def test_a_changed_field_is_refused_as_the_file_is():
    """Sweeps and the reproductions change fields with `with_fields`, which validates the spec again."""
    with pytest.raises(SpecError) as info:
        with_fields(load_system("vllm-h100"), {"parallelism.attention_pool": 2})
    assert info.value.where == "parallelism.attention_pool"


@pytest.mark.parametrize("name", system_names())
def test_every_library_system_passes_check(cli, name):
    path = library.find("system presets", name, PRESETS_PACKAGE)
    output = cli("check", str(path)).output
    assert output.startswith(f"ok  {path}: system {name}") and output.count("\n") == 1, output
    # a rule with a threshold prints it as resolved (`crossover`): tests/test_duplex_s35.py


def test_a_tp_against_the_heads_is_left_to_simulate(cli, tmp_path):
    """TP 3 on four NPUs per node (no tp link) is a group the devices hold; whether it divides the heads is the
    workload's: check passes, simulate refuses Llama3-8B's 32 heads (the preset's by_workload does not name it)."""
    path = _derived(tmp_path, "npu-only", {"parallelism": {"tp": 3}})
    cli("check", str(path))
    line = cli("simulate", "-s", str(path), "-w", "llama3-8b", "--rate", "1", "--requests", "2", expect=2).output
    assert line.startswith(f"error: {path}: parallelism.tp: expected a divisor of heads (32 in ")


@pytest.mark.parametrize(("preset", "link"), [("vllm-h100", "nvlink4-h100"), ("duplex-gpu", "ib-ndr-400g")])
def test_a_pipeline_stage_boundary_is_a_send_over_the_specs_link(preset, link):
    """PP 2 used to cost what PP 1 did (no link carried the hop between the stages). An iteration of 64 decodes now
    adds one send of their hidden activations (64 x 4096 x 2 B) over the nodes' network, the link named ep where
    the spec has one (duplex-gpu: InfiniBand), else the tp link (vllm-h100: NVLink)."""
    from archsim.systems.collectives import send_recv_s
    from archsim.systems.iteration import Batch
    from archsim.systems.links import load_link
    from archsim.systems.models import system_model

    llama = library.load_workload_spec("llama3-8b")
    one, two = (system_model(with_fields(load_system(preset), {"parallelism": {"tp": 2, "pp": pp}}), llama)
                for pp in (1, 2))
    batch = Batch((), (1000,) * 64)
    hop = send_recv_s(64 * 4096 * 2, load_link(link))
    assert two.iteration(batch).time_s == pytest.approx(one.iteration(batch).time_s + hop, rel=1e-12)


def test_a_spec_without_links_models_no_stage_hop():
    """The NeuPIMs specs name no link (the artifact simulates one device's blocks: no TP all-reduce, no hop), so
    GPT-3 30B at their TP 4 PP 2 pays none."""
    from archsim.systems import neupims
    from archsim.systems.system_messages import stage_hops_s

    assert stage_hops_s(neupims.system("neupims", "gpt3-30b"), 256) == 0.0


def test_a_logic_pim_no_rule_places_is_still_read():
    """Its stacks are the xPU's HBM (they bound its memory) and +PE splits experts onto it whatever the placement:
    a Duplex+PE spec placing every op on the xPU was refused as 'a device nothing reads'."""
    system = with_fields(load_system("duplex-pe"), {"placement": [
        {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                "ffn_residual"], "device": "xpu"}]})
    assert system.devices["lp"].kind == "logic-pim"
