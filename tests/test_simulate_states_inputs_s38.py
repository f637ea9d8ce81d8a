"""`archsim simulate` states what it served (audit helper-455): the length preset and seed it drew with when the
user left them at their defaults, or the trace, and the batch limits (a sweep refuses a serving block without
them; a run that uses the defaults says so)."""

from __future__ import annotations

from pathlib import Path


def test_simulate_json_names_the_defaults_it_drew_with(cli_json) -> None:
    out = cli_json("simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--rate", "5", "--requests", "3")
    assert out["served_requests"] == {"rate_per_s": 5.0, "requests": 3, "lengths": "sharegpt", "seed": 0}
    assert (out["max_batch"], out["max_prefill_tokens"]) == (256, None)


def test_simulate_text_names_the_trace_and_the_prefill_budget(cli, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,5\n")
    out = cli("simulate", "-s", "vllm-h100", "-w", "llama3-8b", "--trace", str(trace), "--max-prefill-tokens",
              "8192").output
    assert f"  requests    from {trace}; at most 256 a batch, at most 8192 prompt tokens an iteration\n" in out
