"""Findings of the audit of the layer replay (helper-240), each failing before its fix: a device named like the
shared HBM's track, decode attention split over two devices by an Op/B rule (the closed form had put the whole
batch on its first request's device), outputs that would overwrite the command's own input files or a path ending
in a separator, the owner of a refused field, and a run with nothing to replay."""

from __future__ import annotations

import json
import shutil

import pytest

from archsim import library
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.neupims_reproduce import ablation_pairs, sample_contexts
from archsim.systems.schedule_events import replay_iteration, replay_layers
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system


@pytest.mark.parametrize(("weight", "attention"), [("npu", "hbm"), ("hbm", "pim")])
def test_a_device_named_hbm_keeps_its_own_unit(weight: str, attention: str) -> None:
    """The npu-only preset names its bank-PIM `hbm`: the device and the shared HBM had been one resource, and the
    replay stopped with tasks waiting (2.6e-5 s against 4.2 ms) and still printed a number."""
    _, one = ablation_pairs()["dual row buffers"]
    phases = layer_phases(neupims.system(one, "gpt3-7b"), sample_contexts((0, 0, 64, 0), 64, "sharegpt"))
    named = replay_layers(phases, 3, shared_hbm=True)
    renamed = replay_layers(phases, 3, weight_unit=weight, attention_unit=attention, shared_hbm=True)
    assert renamed.replay_s == named.replay_s >= named.closed_form_s > 0


def _bank_pim_405b():
    return neupims.system(load_system("duplex-bank-pim"), "llama3-405b-fp8", tp=8, pp=None)


def test_decode_attention_split_by_op_per_byte_does_not_depend_on_request_order() -> None:
    """GQA decode attention of Llama 3 405B at TP 8 is 15.9 Op/B at 500 tokens and 16.1 at 8,000, against the
    Bank-PIM's rule `op_per_byte_below: 16`: the long request's share runs on the xPU, the others on the PIM. The
    same batch in two orders had cost 31.16 and 29.69 ms (all on the first request's device)."""
    model = _bank_pim_405b()
    contexts = (8000,) + (500,) * 31
    first, last = (model.iteration(Batch((), c)) for c in (contexts, contexts[::-1]))
    assert first.time_s == last.time_s and first.energy_j == last.energy_j and first.busy_s == last.busy_s
    alone = {c: model.iteration(Batch((), (c,) * n)).time_s for c, n in ((8000, 1), (500, 31))}
    assert first.time_s > max(alone.values())  # both shares, one after the other
    run = replay_iteration(model, Batch((), contexts))
    assert run.replay_s == pytest.approx(run.closed_form_s, rel=1e-9)
    assert any(span.resource == "xpu + pim" for span in run.spans)


def test_outputs_never_overwrite_the_commands_own_files(tmp_path, cli) -> None:
    system = tmp_path / "victim.yaml"
    shutil.copyfile(load_system("npu-only").source, system)
    before = system.read_text()
    for option in ("--trace-out", "--layer-trace"):
        result = cli("simulate", "-s", str(system), "-w", "gpt3-7b", "--rate", "20", "--requests", "4", option,
                     str(system), expect=2)
        assert option in result.output and "is an input of this command" in result.output
        assert result.output.count("\n") == 1
    mapping = tmp_path / "m.yaml"
    shutil.copyfile(library.find("mappings", "fusemax"), mapping)
    kept = mapping.read_text()
    result = cli("run", "--mapping", str(mapping), "--model", "event", "--trace", str(mapping), expect=2)
    assert "--trace" in result.output and "is an input of this command" in result.output
    assert system.read_text() == before and mapping.read_text() == kept


def test_a_file_path_ending_in_a_separator_is_refused(tmp_path, cli) -> None:
    """`Path` drops the separator, so `--layer-trace newdir/` had written a file named newdir."""
    for given in (f"{tmp_path}/newdir/", f"{tmp_path}/newdir/."):  # `/.` had got past it (review helper-244)
        result = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "20", "--requests", "4",
                     "--layer-trace", given, expect=2)
        assert "--layer-trace" in result.output and "ends in a separator" in result.output
        assert not (tmp_path / "newdir").exists()


def test_a_refused_workload_field_names_the_workload(tmp_path, cli) -> None:
    result = cli("simulate", "-s", "duplex", "-w", "glam-143b", "--rate", "2", "--requests", "2", "--layer-trace",
                 str(tmp_path / "t.json"), expect=2)
    assert "glam-143b's params.moe_every" in result.output


def test_a_run_without_decodes_keeps_its_results_and_skips_the_replay(tmp_path, cli) -> None:
    trace = tmp_path / "one.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,64,1\n0.1,80,1\n")
    path, out = tmp_path / "t.json", tmp_path / "it.json"
    result = cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(trace), "--layer-trace", str(path),
                 "--trace-out", str(out))
    assert "throughput" in result.output and result.output.splitlines()[-1].startswith("layer replay skipped: ")
    assert out.exists() and not path.exists()
    record = json.loads(cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--trace", str(trace), "--layer-trace",
                            str(path), "--json").output)
    assert "no iteration decoded" in record["layer_replay"]["skipped"]
