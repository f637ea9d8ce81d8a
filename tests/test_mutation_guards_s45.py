"""Guards for what audit s45's mutation run found unguarded (audit-mutation-s45), and the sweep load check of an
`ffn_word_bytes` no GPU of the sweep computes.

- D1: a `sparse:` or `parallel:` sweep over Llama-3-8B with `ffn_word_bytes: 4` on an H100 loaded (`archsim check`
  said ok) and stored every point infeasible ('params.ffn_word_bytes: the GPU the layer's FFN runs on does not
  compute these words'), where `archsim sparse` and `archsim parallel` exit 2. Now the block's workload is checked
  against each GPU the sweep takes and refused where every one refuses it (`block.refuse_on_every`). No
  GPU computes 4-byte words (`gpu_device.word_problem`: 1-byte words at fp8, 2-byte at fp16; tf32 is another
  format) and every GPU file must give an fp16 peak, so a GPU that takes the width beside one that does not is an
  array topology's device (`topology.ArrayDevice`: it runs no FFN).
- The others each fail under one surviving mutant (`mutants.py` of the audit): the id is in the test's docstring.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from test_bad_input_s42 import _one_error_line
from test_device_word_bytes_s45 import _workload
from test_sweep_records_s45 import _OneWorkerScheduler

from archsim import library
from archsim.dse import dask_run
from archsim.dse.block import refuse_on_every
from archsim.dse.points import evaluate_point, load_base
from archsim.dse.spec import load_sweep_spec, sweep_from_dict
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.point import bound
from archsim.report import sweep_figures
from archsim.report.sweep import short_axis
from archsim.report.sweep_page import write_sweep_report
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.neupims_reproduce import ablation_pairs, sample_contexts
from archsim.systems.schedule_events import replay_iteration
from archsim.systems.system_spec import load_system, with_fields
from archsim.workload_patterns import PACKAGE

FFN_WORDS = "params.ffn_word_bytes"
PARALLEL = {"seq_len": 16384, "scheme": "ring", "devices": 8}
SCHEDULER = "tcp://127.0.0.1:8786"


# ------------------------------------------------------------------------------ D1. an FFN width no GPU computes


def _refused_at_load(invoke, write_yaml, folder: Path, sweep: dict, workload: Path) -> None:
    """`archsim check` and `archsim sweep` of `sweep` exit 2 with one line naming the workload file, its
    params.ffn_word_bytes and the sweep file; no store is written."""
    path, db = write_yaml(folder / "s.yaml", {"name": "s", **sweep}), folder / "s.sqlite"
    for args in (("check", str(path)), ("sweep", str(path), "--db", str(db), "--local")):
        line = _one_error_line(*invoke(*args))
        assert line.startswith(f"error: {workload}: {FFN_WORDS}: the GPU the layer's FFN runs on does not compute "
                               "these words: GPU h100-sxm5 has no tensor-core rate for 4-byte words"), line
        assert line.endswith(f"(named by {path})"), line
    assert not db.exists()


def test_a_sparse_sweep_whose_gpus_all_refuse_the_ffn_width_is_refused_at_load(invoke, write_yaml, tmp_path):
    """Two GPUs, neither computing 4-byte words: the first's refusal. Before: exit 0, 4 infeasible points."""
    workload = _workload(tmp_path, ffn_word_bytes=4)
    sweep = {"sparse": {"method": "quest", "workload": str(workload), "context": 32768},
             "axes": {"sparse.gpu": ["h100-sxm5", "a100-80gb-sxm4"], "sparse.budget": [2048, 4096]},
             "objectives": ["latency_s", "energy_pj"]}
    _refused_at_load(invoke, write_yaml, tmp_path, sweep, workload)


def test_a_parallel_sweep_whose_gpu_refuses_the_ffn_width_is_refused_at_load(invoke, write_yaml, tmp_path):
    """Scope attention (the default) too: `seqpar_spec.check_workload` refuses the width in every scope."""
    workload = _workload(tmp_path, ffn_word_bytes=4)
    sweep = {"parallel": {"workload": str(workload), "topology": "hgx-h100-8", "seq_len": 65536},
             "axes": {"parallel.scheme": ["ring", "ulysses"], "parallel.devices": [4, 8]},
             "objectives": ["latency_s", "efficiency"]}
    _refused_at_load(invoke, write_yaml, tmp_path, sweep, workload)


def test_a_parallel_sweep_loads_where_one_device_takes_the_ffn_width(tmp_path):
    """Eight H100s beside eight FuseMax arrays (`fusemax-ici-8`, no FFN): the sweep loads; the H100 point is an
    infeasible record with the width's reason, the array point feasible. The refusing topology comes first, so a
    check that raised on the first device's refusal would fail here."""
    workload = _workload(tmp_path, ffn_word_bytes=4)
    spec = sweep_from_dict({"name": "s", "parallel": {"workload": str(workload), **PARALLEL},
                            "axes": {"parallel.topology": ["hgx-h100-8", "fusemax-ici-8"]},
                            "objectives": ["latency_s", "efficiency"]}, str(tmp_path / "s.yaml"))
    base = load_base(spec)
    gpus, arrays = (evaluate_point(spec, base, {"parallel.topology": name}) for name in ("hgx-h100-8", "fusemax-ici-8"))
    assert not gpus["feasible"] and gpus["reason"].startswith(f"{FFN_WORDS}: the GPU the layer's FFN runs on")
    assert arrays["feasible"], arrays["reason"]


def test_refuse_on_every_raises_the_first_refusal_only_where_every_device_refuses():
    """The rule both blocks share, with a stand-in check: a sparse sweep's GPUs cannot split on a width (above)."""
    def refusing(*names: str):
        def check(device: str) -> None:
            if device in names:
                raise SpecError("w.yaml", FFN_WORDS, f"{device} refuses")
        return check

    refuse_on_every(refusing("a"), ["a", "b"])
    with pytest.raises(SpecError, match="a refuses"):
        refuse_on_every(refusing("a", "b"), ["a", "b"])


# ---------------------------------------------------------------------------------------------- surviving mutants


@pytest.mark.parametrize(("model", "system"), [
    # sc1: MLA decode is archsim's fused MLA model, not FlashAttention-2's kernel: no kernel rule for its words
    ("deepseek-v3-mla", with_fields(load_system("duplex-gpu"), {"parallelism.tp": 8, "parallelism.pp": 4,
                                                                "parallelism.by_workload": {}})),
    # sc3: a roofline GPU reads no kernel
    ("llama3-8b", with_fields(load_system("duplex-gpu"), {"devices.gpu.timing": "roofline"})),
])
def test_one_byte_attention_words_pass_where_no_kernel_times_them(tmp_path, model, system):
    """sc1, sc3: 1-byte words on duplex-gpu (calibrated FlashAttention-2, which has no fp8 path) are accepted by the
    systems check where the attention is not that kernel's."""
    system_model(system, library.load_workload_spec(str(_workload(tmp_path, model, word_bytes=1))))


@pytest.mark.parametrize("method", [
    ["flexprefill", "--density", "0.1"],  # kv2: sparse_prefill
    ["minference", "--patterns", "llama3-8b-262k-minference"],  # kv2
    ["duoattention", "--retrieval-fraction", "0.5"],  # kv3: kv_selection.duo_decode
    ["razorattention", "--retrieval-fraction", "0.5"],  # kv3
])
def test_sparse_names_the_workloads_ffn_width_for_every_method(invoke, tmp_path, method):
    """kv2, kv3: without the GPU the check left the width to the GPU device, which named `<python>`."""
    workload = _workload(tmp_path, ffn_word_bytes=4)
    if "--patterns" in method:  # the map made for the copied workload (a map names its model: s50)
        data = yaml.safe_load(Path(library.find("pattern maps", method[-1], PACKAGE)).read_text())
        data["model"] = yaml.safe_load(workload.read_text())["name"]
        (tmp_path / "map.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
        method = [*method[:-1], str(tmp_path / "map.yaml")]
    line = _one_error_line(*invoke("sparse", "--method", *method, "--gpu", "h100-sxm5", "-w", str(workload),
                                   "--context", "32K"))
    assert line.startswith(f"error: {workload}: {FFN_WORDS}: the GPU the layer's FFN runs on does not compute"), line


def test_the_library_report_gives_a_rank_size_to_the_cascades_it_sizes(cli, tmp_path):
    """lib3: `--set M0=64` sizes the tile rank M0 of the one-pass cascades, which at bert-base's sizes are refused
    without it (their tile_kv would be the test default 4): each such cascade is analysed, as `archsim analyze`
    analyses it (`point.bound`)."""
    workload = library.load_workload_spec("bert-base")

    def binds(cascade, sets) -> bool:
        try:
            bound(cascade, workload, sets, sets_source="--set")
        except SpecError:
            return False
        return True

    cascades = [library.load_cascade_spec(name) for name in library.names("cascades")]
    sized = {c.name for c in cascades if "M0" in c.rank_sizes and binds(c, {"M0": 64}) and not binds(c, {})}
    assert "attention-1pass" in sized
    cli("report", "--library", "--workload", "bert-base", "--set", "M0=64", "--out", str(tmp_path))
    rows = {row["cascade"]: row for row in csv.DictReader((tmp_path / "cascades.csv").open())}
    assert {name: rows[name]["reason"] for name in sized} == dict.fromkeys(sized, "")


def test_a_base_error_about_a_set_size_names_the_sweeps_sets(invoke, write_yaml, tmp_path):
    """pt4: 5 K/V heads do not divide bert-base's 12, on every point: the sweep file's `sets.kv_heads`, not the
    points' stand-in source ('the sweep's sets and axes')."""
    path = write_yaml(tmp_path / "s.yaml", {
        "name": "base", "mapping": "fusemax", "workload": "bert-base", "sets": {"kv_heads": 5},
        "axes": {"arch.memories.GlobalBuffer.capacity_bytes": [262144, 1048576]}})
    line = _one_error_line(*invoke("sweep", str(path), "--db", str(tmp_path / "s.sqlite"), "--local"))
    assert line.startswith(f"error: {path}: sets.kv_heads: 5 K/V heads for 12 query heads"), line


def test_sbi_replay_with_resident_weights_equals_the_closed_form():
    """se5: NeuPIMs (both row buffers) on GPT-3 7B at batch 512, half a layer's weights resident: the sub-batches'
    replay costs each sub-batch with the weights it streams, as the closed form does; one chain, so the replay's
    time is the closed form's (as at resident 0, test_neupims's SBI test)."""
    full, _ = ablation_pairs()["dual row buffers"]
    kept = neupims.system(full, "gpt3-7b").weight_bytes_per_layer / 2
    system = neupims.system(full, "gpt3-7b", {"devices.npu.sram_bytes": 1e12, "schedule.resident_weight_bytes": kept})
    run = replay_iteration(system, Batch(decode_context_tokens=sample_contexts((0, 0, 512, 0), 512, "sharegpt")))
    assert run.replay_s == pytest.approx(run.closed_form_s, rel=1e-12)


def test_a_worker_of_this_archsim_with_other_limits_is_told_to_take_the_limits(monkeypatch):
    """dk2, dk4: the same model version, two limit variables set, one of them different: the remedy is the limits
    alone (not another install), and only the differing variable is named."""
    monkeypatch.setenv("ARCHSIM_MAX_DEVICES", "64")
    monkeypatch.delenv("ARCHSIM_MAX_GPU_ROWS", raising=False)
    worker = _OneWorkerScheduler(monkeypatch, {"ARCHSIM_MAX_DEVICES": "64", "ARCHSIM_MAX_GPU_ROWS": "10000000"})
    with pytest.raises(SpecError) as refused:
        dask_run._check_worker_versions(worker, SCHEDULER)
    message = refused.value.message
    assert "give the workers this process's ARCHSIM_MAX_* variables" in message
    assert "install the same archsim" not in message
    assert "ARCHSIM_MAX_GPU_ROWS=10000000" in message and "ARCHSIM_MAX_DEVICES" not in message


def test_the_targets_figure_title_names_the_held_batch(monkeypatch, write_yaml, tmp_path):
    """held4: FuseMax and an H100 over seq_len with a batch axis: the table holds batch 1 (the work with the most
    feasible points, the first on a tie) and the figure's title says so."""
    titles = []
    figure = sweep_figures.targets_figure

    def recorded(rows, objectives, axis, title, *rest):
        titles.append(title)
        return figure(rows, objectives, axis, title, *rest)

    monkeypatch.setattr(sweep_figures, "targets_figure", recorded)
    spec = {"name": "t", "mapping": "fusemax", "workload": "bert-base", "gpus": {"presets": ["h100-sxm5"]},
            "axes": {"workload.seq_len": [1024, 4096], "workload.batch": [1, 8]},
            "objectives": ["latency_s", "energy_pj"]}
    path = write_yaml(tmp_path / "s.yaml", spec)
    records = run_sweep(load_sweep_spec(path), tmp_path / "s.sqlite")
    write_sweep_report(records, tmp_path / "out", "t", spec["objectives"])
    assert titles == ["Architecture vs GPU presets at batch 1: t"]


def test_a_link_axis_drops_the_links_collection():
    """ax1: a system's link is named in `links`, as a device in `devices`."""
    assert short_axis("system.links.tp.bytes_per_s_per_direction") == "tp.bytes_per_s_per_direction"
