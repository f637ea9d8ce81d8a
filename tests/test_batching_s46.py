"""The scheduler's policy from the CLI and from sweeps (s46): `simulate --batching mixed|prefill-first` and a
sweep's `serving.batching` select `ServingConfig.mix_prefill_decode`, vLLM v0's prefill-first scheduler being the
one under which `--max-prefill-tokens` is vLLM's max_num_batched_tokens.

The burst: 4 prompts of 8,000 tokens arriving at once, 4 output tokens each, on vllm-h100 with Llama-3-8B and a
prefill budget of 8,192 tokens, so each iteration that prefills holds one prompt (P: its time alone). What the
rule predicts (`archsim.systems.serving`'s module docstring):
- mixed: each later prompt prefills beside the decodes of the earlier ones, so every gap between two tokens of a
  request is one iteration, at most one prompt's beside three short decodes: the TBT p99 stays below 2 P;
- prefill-first: an iteration that admits a prompt runs only prefills, so the first request's second token waits
  for the three other prompts' prefills (3 P + a decode) and the second's for two (2 P + a decode); the p99 of the
  12 gaps interpolates between those two, above 2 P.
"""

from __future__ import annotations

import json
from pathlib import Path

from cli_errors import one_line_error
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.store import read_records
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.system_spec import load_system

BURST = "arrival_s,prompt_tokens,output_tokens\n" + "0,8000,4\n" * 4
SYSTEM, WORKLOAD, BUDGET = "vllm-h100", "llama3-8b", "8192"


def _burst(tmp_path: Path) -> Path:
    trace = tmp_path / "burst.csv"
    trace.write_text(BURST)
    return trace


def _simulate(trace: Path, *extra: str):
    return CliRunner().invoke(main, ["simulate", "-s", SYSTEM, "-w", WORKLOAD, "--trace", str(trace),
                                     "--max-prefill-tokens", BUDGET, *extra])


def _lone_prefill_s() -> float:
    """P: one 8,000-token prompt's iteration alone, as the simulator costs it."""
    return neupims.system(load_system(SYSTEM), WORKLOAD).iteration(Batch((8000,), ())).time_s


def test_prefill_first_stalls_decodes_behind_the_waiting_prompts(tmp_path):
    trace, prefill_s = _burst(tmp_path), _lone_prefill_s()
    runs = {}
    for batching in ("mixed", "prefill-first"):
        run = _simulate(trace, "--batching", batching, "--json")
        assert run.exit_code == 0, run.output
        runs[batching] = json.loads(run.output)
    mixed, first = runs["mixed"], runs["prefill-first"]
    assert mixed["requests"] == first["requests"] == 4 and mixed["output_tokens"] == first["output_tokens"] == 16
    assert mixed["tbt_p99_s"] < 2 * prefill_s < first["tbt_p99_s"]
    # the stall is not a slower engine: the first request's first gap spans three prefills at most beside a decode
    assert first["tbt_p99_s"] < 3 * prefill_s + mixed["tbt_p99_s"]
    assert first["batching"] == "prefill-first"
    assert first["record"]["tbt_p99_s"] == first["tbt_p99_s"]


def test_the_default_is_mixed_and_says_nothing_new(tmp_path):
    """Without --batching the run is the mixed one, its output as before the option (no `batching` key, no word on
    the requests line); prefill-first says so on the requests line."""
    trace = _burst(tmp_path)
    default, mixed = _simulate(trace, "--json"), _simulate(trace, "--batching", "mixed", "--json")
    assert default.exit_code == mixed.exit_code == 0
    assert default.output == mixed.output and "batching" not in json.loads(default.output)
    text = _simulate(trace, "--batching", "prefill-first")
    assert text.exit_code == 0, text.output
    assert "prefill-first (decodes wait while prompts do)" in text.output
    assert "prefill-first" not in _simulate(trace).output


def test_the_budgets_help_says_what_it_is_under_each_schedule():
    shown = CliRunner().invoke(main, ["simulate", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    help_text = " ".join(shown.output.split())
    assert "--batching [mixed|prefill-first]" in help_text
    assert "Under --batching prefill-first it is vLLM v0's max_num_batched_tokens" in help_text
    assert "under mixed it caps the prompts joining the decodes' iteration" in help_text


SWEEP = """name: s
system: vllm-h100
workload: llama3-8b
serving: {lengths: ./burst.csv, max_batch: 16, max_prefill_tokens: 8192}
axes:
  serving.batching: [mixed, prefill-first]
"""


def _sweep(folder: Path, spec: str):
    (folder / "s.yaml").write_text(spec)
    _burst(folder)
    return CliRunner().invoke(main, ["sweep", str(folder / "s.yaml"), "--db", str(folder / "s.sqlite")])


def test_a_sweep_serves_each_schedule_as_simulate_does(tmp_path):
    swept = _sweep(tmp_path, SWEEP)
    assert swept.exit_code == 0, swept.output
    rows = read_records(tmp_path / "s.sqlite").set_index("serving.batching")
    assert sorted(rows.index) == ["mixed", "prefill-first"] and rows["feasible"].all()
    for batching in ("mixed", "prefill-first"):
        run = _simulate(tmp_path / "burst.csv", "--batching", batching, "--max-batch", "16", "--json")
        assert rows.loc[batching, "tbt_p99_s"] == json.loads(run.output)["tbt_p99_s"]


def test_the_serving_block_takes_a_schedule(tmp_path):
    spec = SWEEP.replace("max_prefill_tokens: 8192}", "max_prefill_tokens: 8192, batching: prefill-first}")
    swept = _sweep(tmp_path, spec.replace("serving.batching: [mixed, prefill-first]", "serving.max_batch: [8, 16]")
                   .replace("max_batch: 16, ", ""))
    assert swept.exit_code == 0, swept.output
    rows = read_records(tmp_path / "s.sqlite")
    run = _simulate(tmp_path / "burst.csv", "--batching", "prefill-first", "--max-batch", "16", "--json")
    assert rows.set_index("serving.max_batch").loc[16, "tbt_p99_s"] == json.loads(run.output)["tbt_p99_s"]


def test_a_bad_schedule_in_a_sweep_is_refused_naming_the_field(tmp_path):
    block = _sweep(tmp_path, SWEEP.replace("max_prefill_tokens: 8192}", "max_prefill_tokens: 8192, batching: fifo}")
                   .replace("serving.batching: [mixed, prefill-first]", "serving.max_batch: [8, 16]")
                   .replace("max_batch: 16, ", ""))
    assert block.exit_code == 2
    one_line_error(block, "s.yaml: serving.batching: expected mixed or prefill-first", "'fifo'")
    axis = _sweep(tmp_path, SWEEP.replace("[mixed, prefill-first]", "[mixed, chunked]"))
    assert axis.exit_code == 2
    one_line_error(axis, "s.yaml: axes.serving.batching[1]: expected mixed or prefill-first", "'chunked'")
