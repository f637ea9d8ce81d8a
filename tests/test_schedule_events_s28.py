"""`archsim.systems.schedule_events`: `simulate --layer-trace --json` reports each track's busy seconds
(`ScheduleRun.busy_s`, which only tests had read), and a schedule the replay does not model is refused by one set of
rules, read off the spec before a run (`unreplayable`) or off the phases given to `replay_layers`, with the same
field and reason either way."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from archsim.errors import SpecError
from archsim.systems import neupims
from archsim.systems.schedule_events import replay_layers, unreplayable
from archsim.systems.system_model import layer_phases

CONTEXTS = tuple(range(100, 164))
SBI_EVERY_BATCH = {"schedule.min_batch": 2, "schedule.only_when_faster": False}  # SBI on these 64 decodes


def test_the_json_layer_replay_reports_each_tracks_busy_seconds(tmp_path, cli) -> None:
    """NeuPIMs (SBI, two row buffers) on GPT-3 7B: `busy_s` is the trace's spans summed per track, each within
    the replay's time."""
    path = tmp_path / "layers.json"
    replay = json.loads(cli("simulate", "-s", "neupims", "-w", "gpt3-7b", "--rate", "50", "--requests", "40",
                            "--layer-trace", str(path), "--json").output)["layer_replay"]
    spans = defaultdict(float)
    for event in json.loads(path.read_text())["traceEvents"]:
        if event["ph"] == "X":
            spans[event["cat"]] += event["dur"] / 1e6
    assert replay["busy_s"].keys() == spans.keys() and {"npu", "pim"} <= spans.keys()
    for track, busy_s in replay["busy_s"].items():
        assert busy_s == pytest.approx(spans[track], rel=1e-6) and 0 < busy_s <= replay["replay_s"]


@pytest.mark.parametrize(("system", "workload", "changes"), [
    ("duplex-pe", "mixtral-8x7b", None),  # co-processing
    ("neupims", "gpt3-7b", {"schedule.layer_time": "steady-state", **SBI_EVERY_BATCH}),
    ("neupims", "gpt3-7b", {"links": {"tp": "nvlink4-h100"}, **SBI_EVERY_BATCH}),  # SBI with TP all-reduces
])
def test_the_phases_are_refused_with_the_specs_field_and_reason(system, workload, changes) -> None:
    """The refusals had been written twice, in other words and, for SBI with TP all-reduces, under another field
    (`schedule.kind`) from a replay of the phases than from the spec (`links.tp`)."""
    model = neupims.system(system, workload, changes)
    field, why = unreplayable(model)
    with pytest.raises(SpecError) as refused:
        replay_layers(layer_phases(model, CONTEXTS), 2)
    assert (refused.value.source, refused.value.where) == ("<python>", field)
    assert refused.value.message == f"replay is not modelled for it: {why}"


def test_the_cli_refusals_read_as_before(tmp_path, cli) -> None:
    """`simulate --layer-trace`'s refusals, word for word as before the rules had one source."""
    path = str(tmp_path / "layers.json")
    for system, workload, text in (
            ("duplex-pe", "mixtral-8x7b", "the layer replay does not model duplex-pe's schedule.kind: co-processing's "
                                          "layer is Duplex's dependency chain composed in closed form"),
            ("duplex", "glam-143b", "the layer replay does not model glam-143b's params.moe_every: glam-143b mixes "
                                    "dense and MoE layers, which are not replayed"),
            ("context-parallel-h100", "llama3-8b", "the layer replay does not model context-parallel-h100's "
                                                   "schedule.kind: context-parallel composes its own iteration, not "
                                                   "layer_phases'")):
        result = cli("simulate", "-s", system, "-w", workload, "--rate", "1", "--requests", "2", "--layer-trace", path,
                     expect=2)
        assert f"--layer-trace: {text}" in result.output
