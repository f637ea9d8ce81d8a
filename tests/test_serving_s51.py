"""Serving fixes from audit s51: a closed loop releases a run of rejected requests in a loop, not one pair of stack
frames per rejection (RecursionError past ~500 in a row); the steady window turns over only when a request that
decoded has finished by its end, so a request of one output token, finishing at its own first token, no longer
makes a window of the batch's fill alone a "steady" one; a trace's output length below 1 is refused naming the
output limit (ARCHSIM_MAX_OUTPUT_TOKENS), not the size limit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from archsim.errors import LimitError, SpecError
from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.requests import Request, gaussian_requests, read_trace
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.step import UnrunnableOp

HEADER = "arrival_s,prompt_tokens,output_tokens\n"
REJECTED_IN_A_ROW = 1500  # each had taken two frames (`_arrive`, `_release`): 3,000, beyond Python's 1,000


@dataclass
class Toy:
    """Every iteration takes 1 s; a KV cache of `pages` 16-token pages (1 byte a token); a prefill beyond
    `longest_prefill_tokens` cannot run."""

    pages: int = 8
    longest_prefill_tokens: float = math.inf
    name: str = "toy"
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0

    @property
    def kv_capacity_bytes(self) -> float:
        return 16.0 * self.pages

    def iteration(self, batch: Batch) -> IterationCost:
        if max(batch.prefill_tokens, default=0) > self.longest_prefill_tokens:
            raise UnrunnableOp("<python>", "longest_prefill_tokens",
                               f"a prefill beyond {self.longest_prefill_tokens} tokens cannot run")
        return IterationCost(1.0, energy_j=1.0, busy_s={"npu": 1.0})


# ------------------------------------------------------------------------------------- 1 closed loop, rejections
def test_a_closed_loop_of_requests_that_never_fit_rejects_them_all_as_the_open_loop_does() -> None:
    """The auditor's run: 1,024 Gaussian requests of ~100 + ~100 tokens (std 10 %) need ~199 tokens of KV each, a
    cache of 8 pages holds 128: none fits. Open loop rejects all 1,024 on arrival; closed loop (256 in flight, as
    the Duplex grid runs) rejected its first 256, each releasing the next, and died in a RecursionError."""
    requests = gaussian_requests(1024, 100, 100, 0.1, 0)
    assert min(r.prompt_tokens + r.output_tokens - 1 for r in requests) > 8 * 16
    open_loop = simulate_serving(Toy(), requests, ServingConfig(max_batch=256))
    closed = simulate_serving(Toy(), requests, ServingConfig(max_batch=256), closed_loop=256)
    assert open_loop.rejection == "1024 of 1024 requests can never fit the KV cache of toy"
    assert closed.rejection == open_loop.rejection
    assert closed.rejected_ids == tuple(range(1024)) and closed.requests == () and closed.iterations == 0


def test_a_finished_request_releases_a_long_run_of_rejections_then_the_next_that_fits() -> None:
    """One in flight: request 0 (10 + 2 tokens) prefills 0 -> 1 s and decodes 1 -> 2 s; its finish releases 1,500
    requests of 500 tokens (beyond the 128-token cache), each rejected at 2 s and releasing the next, then the last
    (10 + 2), which arrives at 2 s and runs 2 -> 4 s."""
    requests = ([Request(0, 0.0, 10, 2)] + [Request(i, 0.0, 500, 2) for i in range(1, REJECTED_IN_A_ROW + 1)]
                + [Request(REJECTED_IN_A_ROW + 1, 0.0, 10, 2)])
    result = simulate_serving(Toy(), requests, closed_loop=1)
    assert result.rejected_ids == tuple(range(1, REJECTED_IN_A_ROW + 1))
    assert [(r.id, r.arrival_s, r.finish_s) for r in result.requests] == [(0, 0.0, 2.0),
                                                                           (REJECTED_IN_A_ROW + 1, 2.0, 4.0)]


def test_a_refused_prefill_releases_a_long_run_of_rejections_too() -> None:
    """`_refuse` releases the next request as `_finish` does: request 0's 60-token prompt fits the cache but its
    prefill cannot run (beyond 50 tokens), refused when its iteration is costed at 0 s; the 1,500 behind it never
    fit; the last one runs 0 -> 2 s."""
    last = REJECTED_IN_A_ROW + 1
    requests = ([Request(0, 0.0, 60, 2)] + [Request(i, 0.0, 500, 2) for i in range(1, last)]
                + [Request(last, 0.0, 10, 2)])
    result = simulate_serving(Toy(longest_prefill_tokens=50), requests, closed_loop=1)
    assert result.unrunnable_ids == (0,) and result.rejected_ids == tuple(range(last))
    assert [(r.id, r.arrival_s, r.finish_s) for r in result.requests] == [(last, 0.0, 2.0)]


# ------------------------------------------------------------------------------------------- 2 the steady window
BIG = 4096  # pages: 65,536 tokens, room for every request below


def test_a_one_token_request_in_the_fill_does_not_make_it_a_steady_window() -> None:
    """The auditor's burst on a 1 s toy: 64 requests of 100 + 200 tokens and one of 10 + 1, all at 0, all prefilled
    0 -> 1 s. The last first token is at 1 s; the 1-token request finishes there, at its own first token, having
    freed no decode slot: the window is the fill alone, NaN, as without it. It had read 65 tokens / 1 s."""
    burst = [Request(i, 0.0, 100, 200) for i in range(64)]
    alone = simulate_serving(Toy(BIG), burst)
    with_one = simulate_serving(Toy(BIG), [*burst, Request(64, 0.0, 10, 1)])
    assert (alone.steady_end_s, with_one.steady_end_s) == (1.0, 1.0)
    assert math.isnan(alone.steady_throughput_tok_s)
    assert math.isnan(with_one.steady_throughput_tok_s)


def test_a_one_token_request_finished_earlier_in_the_fill_does_not_either() -> None:
    """A prefill budget of 3,210 tokens spreads the fill: 0 -> 1 s prefills the 1-token request (10 tokens) and
    32 of 100, 1 -> 2 s the other 32 beside 32 decodes. The 1-token request finished at 1 s, before the window's end
    (2 s), but no request left the decode batch: NaN. It had read (33 + 64) / 2 s = 48.5 tokens/s."""
    requests = [Request(0, 0.0, 10, 1)] + [Request(i, 0.0, 100, 200) for i in range(1, 65)]
    result = simulate_serving(Toy(BIG), requests, ServingConfig(max_prefill_tokens=3210))
    assert result.steady_end_s == 2.0 and result.requests[0].finish_s == 1.0
    assert math.isnan(result.steady_throughput_tok_s)


def test_requests_of_one_token_alone_have_no_steady_window() -> None:
    """Four 1-token requests 2.5 s apart, each prefilled alone: none decodes, so none frees a decode slot; the
    throughput is the makespan's, 4 tokens over 0 -> 8.5 s, and there is no steady one (it had read the same)."""
    result = simulate_serving(Toy(BIG), [Request(i, 2.5 * i, 1, 1) for i in range(4)])
    assert result.throughput_tok_s == 4 / 8.5
    assert math.isnan(result.steady_throughput_tok_s)


def test_a_request_that_decoded_and_finished_by_the_windows_end_turns_it_over() -> None:
    """r0 (1 + 2 tokens) prefills 0 -> 1 s and decodes 1 -> 2 s, finishing at 2 s; r1 (1 + 3), arriving at 0.5 s,
    prefills beside that decode: the last first token at 2 s. r0 freed its slot by the window's end (the end
    included): 2 + 1 = 3 tokens / 2 s. Over the makespan (r1's tokens at 2, 3 and 4 s) 5 / 4."""
    result = simulate_serving(Toy(BIG), [Request(0, 0.0, 1, 2), Request(1, 0.5, 1, 3)])
    assert result.steady_end_s == 2.0 and result.requests[0].finish_s == 2.0
    assert result.steady_throughput_tok_s == pytest.approx(3 / 2, rel=1e-12)
    assert result.throughput_tok_s == 5 / 4


def test_simulate_says_the_auditors_burst_with_a_one_token_request_has_no_steady_window(tmp_path: Path, cli) -> None:
    """`simulate --trace` of the auditor's burst1.csv on one H100: 64 rows `0,100,200` and `0,10,1`, all prefilled
    in the first iteration. It had printed "480.84 in the steady window" (65 tokens over that iteration)."""
    path = tmp_path / "burst1.csv"
    path.write_text(HEADER + "0,100,200\n" * 64 + "0,10,1\n", encoding="utf-8")
    out = cli("simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--tp", "1", "--trace", str(path)).output
    line = next(line for line in out.splitlines() if line.lstrip().startswith("throughput"))
    assert "no steady window" in line and "in the steady window" not in line, line


# ---------------------------------------------------------------------------------- 3 a trace's output length
OUTPUT_LIMIT_TEXT = "at most 1048576 (each output token is a decode iteration"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("name", "text", "where"), [
    ("t.csv", HEADER + "0,5,0\n", "line 2: output_tokens"),
    ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,5,0\n", "line 2: GeneratedTokens"),
    ("k.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": 0}\n', "line 1: output_length"),
])
def test_a_zero_output_length_names_the_output_limit(tmp_path: Path, name: str, text: str, where: str) -> None:
    """Output tokens are bounded by ARCHSIM_MAX_OUTPUT_TOKENS (2^20 by default), below the size limit (2^24): a 0
    had been refused as "expected an integer >= 1 and at most 16777216 (... ARCHSIM_MAX_SIZE)"."""
    with pytest.raises(SpecError) as refused:
        read_trace(_write(tmp_path, name, text))
    assert refused.value.where == where
    assert refused.value.message.startswith("expected an integer >= 1 and " + OUTPUT_LIMIT_TEXT)
    assert "ARCHSIM_MAX_OUTPUT_TOKENS" in refused.value.message and "ARCHSIM_MAX_SIZE" not in refused.value.message


def test_an_output_length_beyond_the_size_limit_names_the_output_limit(tmp_path: Path) -> None:
    """2^24 + 1 output tokens is beyond both limits; the output limit, 2^20, is the one that binds."""
    with pytest.raises(LimitError) as refused:
        read_trace(_write(tmp_path, "t.csv", HEADER + "0,5,16777217\n"))
    assert OUTPUT_LIMIT_TEXT in refused.value.message and "ARCHSIM_MAX_SIZE" not in refused.value.message


def test_the_size_limit_is_named_where_it_is_the_lower(tmp_path: Path, monkeypatch) -> None:
    """ARCHSIM_MAX_SIZE 64, below the output limit: an output length of 0 (or 65) is refused naming it; a prompt
    length is always the size limit's."""
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "64")
    for row, where in (("0,5,0\n", "output_tokens"), ("0,5,65\n", "output_tokens"), ("0,0,5\n", "prompt_tokens")):
        with pytest.raises(SpecError) as refused:
            read_trace(_write(tmp_path, "t.csv", HEADER + row))
        assert refused.value.where == f"line 2: {where}"
        assert refused.value.message.startswith("expected an integer >= 1 and at most 64 (the limit on sizes; ")
        assert "ARCHSIM_MAX_SIZE" in refused.value.message


@dataclass
class FreeDecodes:
    """A prefill iteration takes 1 s, an iteration of decodes alone none (the reviewer's t3.py)."""

    name: str = "free-decodes"
    kv_bytes_per_token: float = 1.0
    static_w: float = 0.0
    kv_capacity_bytes: float = 16.0 * BIG

    def iteration(self, batch: Batch) -> IterationCost:
        took_s = 1.0 if batch.prefill_tokens else 0.0
        return IterationCost(took_s, energy_j=1.0, busy_s={"npu": took_s})


def test_a_request_whose_decodes_take_no_time_still_turns_the_window_over() -> None:
    """r0 (10 + 2 tokens) prefills 0 -> 1 s and decodes in no time, finishing at its first token (1 s); r1 (10 + 2)
    arrives at 5 s and prefills 5 -> 6 s: the last first token at 6 s. r0 decoded a token and left by then, so the
    window turned over: 4 tokens / 6 s (r0's 2, r1's 2, its decode an iteration of no time at the window's end,
    which counts: `_Engine.engine`), as over the makespan. `first_token_s < finish_s` had stood for "decoded", so
    r0 counted as a one-token request and the window read NaN."""
    result = simulate_serving(FreeDecodes(), [Request(0, 0.0, 10, 2), Request(1, 5.0, 10, 2)])
    assert [(r.first_token_s, r.finish_s) for r in result.requests] == [(1.0, 1.0), (6.0, 6.0)]
    assert result.steady_end_s == 6.0
    assert result.steady_throughput_tok_s == pytest.approx(4 / 6, rel=1e-12)
    assert result.throughput_tok_s == 4 / 6
