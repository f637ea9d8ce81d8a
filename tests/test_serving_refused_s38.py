"""Session 38's serving fixes: a request refused when its recompute after a preemption cannot run leaves the steady
throughput with the tokens it emitted in the steady window, and the refusal says it was the recompute; a trace row
that fails a check after parsing is named by its file line; the `arrival_s` column takes what the token columns
take (ASCII digits) and a row of empty cells is refused, not skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from archsim.errors import SpecError
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.requests import Request, read_trace
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.step import UnrunnableOp

HEADER = "arrival_s,prompt_tokens,output_tokens\n"


@dataclass
class ShortPrefills:
    """Every iteration takes 1 s; a prefill longer than `longest_prefill_tokens` cannot run. 12 tokens of KV."""

    longest_prefill_tokens: int = 4
    kv_capacity_bytes: float = 12.0
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0
    name: str = "short-prefills"

    def iteration(self, batch: Batch) -> IterationCost:
        if max(batch.prefill_tokens, default=0) > self.longest_prefill_tokens:
            raise UnrunnableOp("<python>", "longest_prefill_tokens",
                               f"a prefill beyond {self.longest_prefill_tokens} tokens cannot run")
        return IterationCost(1.0, energy_j=1.0, busy_s={})


# A and B (4 prompt + 6 output tokens) prefill together at 0 -> 1 s and decode; the 12-token cache holds 6 + 6
# after the step ending at 3 s, so before the next one A's 7th token of KV preempts B (3 tokens emitted, at 1, 2
# and 3 s); B's recompute of 4 + 3 = 7 tokens is beyond the 4 a prefill may have: refused when readmitted, at 4 s.
# A emits its 6 tokens at 1..6 s and finishes. C (1 prompt + 1 output token) arrives at `c_arrival_s`. With
# `decoder`, D (1 prompt + 2 output tokens) arrives at 0 too and finishes at 2 s, a token of KV more: a window ending
# before A finishes turns over only with a request that decoded and finished (session 51; C finishes at its first
# token), and with it the cache of 13 tokens preempts B at the same step.
CONFIG = ServingConfig(page_tokens=1, watermark_fraction=0.0)


def _serve(c_arrival_s: float, mix: bool = True, decoder: bool = False):
    requests = [Request(0, 0.0, 4, 6), Request(1, 0.0, 4, 6), Request(2, c_arrival_s, 1, 1)]
    config = CONFIG if mix else ServingConfig(page_tokens=1, watermark_fraction=0.0, mix_prefill_decode=False)
    if decoder:
        return simulate_serving(ShortPrefills(kv_capacity_bytes=13.0), [*requests, Request(3, 0.0, 1, 2)], config)
    return simulate_serving(ShortPrefills(), requests, config)


def test_a_request_refused_before_the_windows_end_leaves_all_its_tokens():
    """C arrives at 6.5 s, after A finished at 6 s, and prefills alone 6.5 -> 7.5 s: the window is 0 to 7.5 s. In
    it the iterations emitted A's 6, B's 3 and C's 1 tokens; B's 3 leave: 7 tokens / 7.5 s, as over the makespan
    (the window's end is the last finish). It had read 10 / 7.5 s."""
    result = _serve(6.5)
    assert (result.rejected_ids, result.unrunnable_ids, result.preemptions) == ((1,), (1,), 1)
    assert result.steady_end_s == 7.5 and result.output_tokens == 7
    assert result.steady_throughput_tok_s == pytest.approx(7 / 7.5)
    assert result.steady_throughput_tok_s == pytest.approx(result.throughput_tok_s)


def test_a_request_refused_after_the_windows_end_leaves_only_its_tokens_in_the_window():
    """C arrives at 0.5 s, joins the step ending at 2 s and finishes there, as D does: the window is 0 to 2 s,
    holding A's, B's and D's tokens at 1 and 2 s and C's (7). B's token at 3 s is past it: 7 - 2 = 5 tokens / 2 s
    (all of B's 3 taken out would give 2.0; none 3.5)."""
    result = _serve(0.5, decoder=True)
    assert (result.rejected_ids, result.preemptions, result.steady_end_s) == ((1,), 1, 2.0)
    assert result.steady_throughput_tok_s == pytest.approx(5 / 2)


def test_unmixed_the_window_still_loses_only_the_refused_tokens_in_it():
    """Unmixed (prefill-only iterations): A, B and D prefill 0 -> 1 s and decode 1 -> 2 s (D finishes); C, arriving
    at 1.5 s, alone 2 -> 3 s (the window's end, where C finishes); then A and B decode at 4 s; B, preempted before
    the step ending at 5 s, is refused at 5 s. In the window: A's, B's and D's 2 tokens each and C's, less B's 2:
    5 tokens / 3 s (all of B's 3 out would give 4 / 3; none 7 / 3)."""
    result = _serve(1.5, mix=False, decoder=True)
    assert (result.rejected_ids, result.preemptions, result.steady_end_s) == ((1,), 1, 3.0)
    assert result.steady_throughput_tok_s == pytest.approx(5 / 3)


def test_the_refusal_says_it_is_the_recompute_after_a_preemption_that_cannot_run():
    result = _serve(6.5)
    assert result.recompute_ids == (1,)
    assert result.rejection == ("1 of 3 requests were preempted and their recompute (prompt and emitted tokens) is a "
                                "prefill short-prefills cannot run (a prefill beyond 4 tokens cannot run)")


def test_a_prompt_that_cannot_run_and_a_recompute_that_cannot_are_told_apart():
    """D's own 5-token prompt cannot run; B's recompute (7 tokens) cannot either: the reason is the shortest's."""
    requests = [Request(0, 0.0, 4, 6), Request(1, 0.0, 4, 6), Request(2, 6.5, 1, 1), Request(3, 4.5, 5, 1)]
    result = simulate_serving(ShortPrefills(), requests, CONFIG)
    assert (result.rejected_ids, result.recompute_ids) == ((1, 3), (1,))
    assert result.rejection == ("1 of 4 requests ask for a prefill short-prefills cannot run; 1 were preempted and "
                                "their recompute (prompt and emitted tokens) is a prefill short-prefills cannot run "
                                "(the shortest refused: a prefill beyond 4 tokens cannot run)")


def _trace(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(HEADER + text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("rows", "where", "says"), [
    ("0,10,2000000\n", "line 2: output_tokens", "expected at most 1048576"),
    ("2000000000,10,5\n", "line 2: arrival_s", "expected a number of seconds from 0 to 1.07374e+09"),
    ("0,1,1\n\n5e9,1,1\n", "line 4: arrival_s", "from 0 to 1.07374e+09"),  # a blank line is still a line
    ('0,1,1\n"1\n",1,1\n5e9,1,1\n', "line 5: arrival_s", "from 0 to 1.07374e+09"),  # a cell spanning two lines
])
def test_a_row_past_a_limit_is_named_by_its_file_line(tmp_path, rows, where, says):
    path = _trace(tmp_path, rows)
    with pytest.raises(SpecError) as refused:
        read_trace(path)
    assert (refused.value.source, refused.value.where) == (str(path), where)
    assert says in refused.value.message


def test_simulate_names_the_traces_line(tmp_path, cli):
    path = _trace(tmp_path, "0,10,10\n0,10,2000000\n")
    out = cli("simulate", "-s", "gpu", "-w", "llama3-8b", "--trace", str(path), expect=2).output
    assert out.startswith(f"error: {path}: line 3: output_tokens: expected at most 1048576 "), out


@pytest.mark.parametrize("arrival", ["1_0", "\u0661\u0660", "+inf", "0x10"])
def test_arrival_s_is_written_in_the_digits_0_9(tmp_path, arrival):
    path = _trace(tmp_path, f"0,1,1\n{arrival},1,1\n")
    with pytest.raises(SpecError) as refused:
        read_trace(path)
    assert refused.value.where == "line 3: arrival_s"
    assert refused.value.message.endswith(f"got {arrival!r}")


@pytest.mark.parametrize("arrival", ["10", " 1.5 ", "2.", ".5", "1e-3", "1E2", "+3"])
def test_arrival_s_takes_decimal_numbers(tmp_path, arrival):
    assert read_trace(_trace(tmp_path, f"{arrival},1,1\n"))[0].arrival_s == float(arrival)


def test_a_row_of_empty_cells_is_refused_and_a_blank_line_skipped(tmp_path):
    path = _trace(tmp_path, "0,1,1\n,,\n1,1,1\n")
    with pytest.raises(SpecError) as refused:
        read_trace(path)
    assert refused.value.where == "line 3: arrival_s"
    assert [r.arrival_s for r in read_trace(_trace(tmp_path, "0,1,1\n\n1,1,1\n"))] == [0.0, 1.0]
