"""Sub-batch interleaving only where it is faster (s46): `schedule.only_when_faster`.

archsim's SBI re-streams every weight once per sub-batch (`resident_weight_bytes: 0`), and a sub-batch of 128 sits
below the NPU arrays' 256-row ridge, so at short contexts SBI's doubled weight stream costs more than the PIM
attention it hides. The `neupims` preset had switched SBI on from the batch size alone (`min_batch: 256`): one
more request, 255 -> 256 decodes of 80 tokens on GPT-3 175B, cut its throughput from 4,574 to 2,678 tokens/s, below
NPU-only. A scheduler that has both schedules runs the faster one (pim.md §1.6: NeuPIMs beats NPU+PIM everywhere),
so with `only_when_faster: true` (the preset's) SBI runs an iteration only where its decoder layers take less time
than the same layers overlapped (`system_model.layer_phases`), `min_batch` still the floor. What must hold follows
from that rule, not from a number of the model's: the throughput does not fall at the floor, `neupims` is never
slower than `neupims-no-sbi` (the overlapped schedule it otherwise runs), and where SBI wins (long contexts) it
still runs. The Fig. 13 ablation and `--as-artifact` keep the artifact's switch on the batch alone.
"""

from __future__ import annotations

import itertools

import pytest
from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.systems import neupims, neupims_reproduce
from archsim.systems.iteration import Batch
from archsim.systems.schedule_events import replay_iteration
from archsim.systems.system_model import layer_phases

FLOOR = 256  # the preset's min_batch, the artifact's: SBI "enabled only when batch size>=256" (pim.md §1.4)


def _time_s(mode: str, model: str, context: int, batch: int) -> float:
    return neupims.system(mode, model).iteration(Batch((), (context,) * batch)).time_s


def test_one_more_request_at_the_floor_does_not_cut_throughput() -> None:
    """GPT-3 175B, 80-token decodes: 255 decodes run overlapped (below the floor); a 256th may not make the
    iteration slower per token than the 255 were, as SBI, where it loses, is not run. Before: 4,574 -> 2,678
    tokens/s (-41 %)."""
    below, at = (batch / _time_s("neupims", "gpt3-175b", 80, batch) for batch in (FLOOR - 1, FLOOR))
    assert at >= below


@pytest.mark.parametrize(("model", "context", "batch"),
                         [*itertools.product(("gpt3-7b",), (80, 512, 2048), (256, 384, 512)),
                          ("gpt3-175b", 80, 256), ("gpt3-175b", 2048, 512)])
def test_neupims_is_never_slower_than_without_sbi(model: str, context: int, batch: int) -> None:
    """neupims chooses between SBI and the overlapped schedule `neupims-no-sbi` runs (the same devices), so its
    iteration takes at most neupims-no-sbi's. Before: 7B at 512 tokens and batch 256, 34,646 against 37,609
    tokens/s."""
    assert _time_s("neupims", model, context, batch) <= _time_s("neupims-no-sbi", model, context, batch)


def test_sbi_still_runs_where_it_wins() -> None:
    """7B at 2048 tokens and batch 256: the PIM attention SBI hides outweighs the second weight stream (SBI 22,725
    against 17,011 tokens/s overlapped at the commit before), so SBI runs and neupims is faster than without it."""
    model = neupims.system("neupims", "gpt3-7b")
    assert layer_phases(model, (2048,) * FLOOR).sub_batch_interleaving
    assert _time_s("neupims", "gpt3-7b", 2048, FLOOR) < _time_s("neupims-no-sbi", "gpt3-7b", 2048, FLOOR)


def test_the_event_replay_takes_the_same_decision() -> None:
    """`--layer-trace`'s replay runs the schedule `layer_phases` chose: where SBI loses (7B, 80 tokens, batch
    256) one sub-batch, as neupims-no-sbi's replay; where it wins (2048 tokens) two."""
    short = Batch((), (80,) * FLOOR)
    loses = replay_iteration(neupims.system("neupims", "gpt3-7b"), short)
    assert {span.args["sub_batch"] for span in loses.spans} == {1}
    assert loses.replay_s == replay_iteration(neupims.system("neupims-no-sbi", "gpt3-7b"), short).replay_s
    wins = replay_iteration(neupims.system("neupims", "gpt3-7b"), Batch((), (2048,) * FLOOR))
    assert {span.args["sub_batch"] for span in wins.spans} == {1, 2}


def test_the_ablation_and_the_artifact_switch_on_the_batch_alone() -> None:
    """Fig. 13's full design runs SBI at every batch (its SBI bars lose at small batch), and the artifact mode
    switches SBI on from the batch size alone (`sbi_min_batch`), so both run SBI where it loses."""
    full = neupims_reproduce.ablation_pairs()["SBI"][0]
    assert layer_phases(neupims.system(full, "gpt3-7b"), (80,) * 64).sub_batch_interleaving
    artifact = neupims_reproduce.artifact_system("neupims", neupims_reproduce.ARTIFACT_OPTIONS)
    assert artifact.schedule.only_when_faster is False
    assert layer_phases(neupims.system(artifact, "gpt3-7b"), (80,) * FLOOR).sub_batch_interleaving
    assert neupims.configure("neupims").schedule.only_when_faster is True


@pytest.mark.parametrize("value", ["'yes'", "'true'", "1"])
def test_a_value_other_than_true_or_false_exits_2(tmp_path, value: str) -> None:
    path = tmp_path / "np.yaml"
    path.write_text("name: np\nbase: neupims\nschedule:\n  kind: sub-batch-interleaving\n  sub_batches: 2\n"
                    f"  only_when_faster: {value}\n")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    one_line_error(result, "np.yaml: schedule.only_when_faster: expected true or false")


def test_only_sub_batch_interleaving_reads_it(tmp_path) -> None:
    path = tmp_path / "ov.yaml"
    path.write_text("name: ov\nbase: neupims-no-sbi\nschedule:\n  kind: overlapped\n  only_when_faster: true\n")
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    one_line_error(result, "ov.yaml", "only_when_faster")
