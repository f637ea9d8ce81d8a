"""A point within constraints that lacks an objective (a serving run whose requests each decode one token has no
time between tokens: `tbt_p99_s` null) cannot be on a Pareto front over it; the sweep's summary says how many lack
which objective, where it had said "2 feasible" beside "0 points" with no reason (audit helper-351)."""

from __future__ import annotations

import yaml


def _sweep(tmp_path, objectives: list[str]) -> str:
    (tmp_path / "one-token.csv").write_text("arrival_s,prompt_tokens,output_tokens\n0,100,1\n0.01,100,1\n")
    spec = {"name": "one-token", "system": "vllm-h100", "workload": "llama3-8b",
            "serving": {"lengths": "one-token.csv"},
            "axes": {"serving.max_batch": [1, 2]}, "sampling": {"kind": "grid"}, "objectives": objectives}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    return str(tmp_path / "s.yaml")


def test_the_summary_names_the_points_that_lack_an_objective(cli, tmp_path) -> None:
    out = cli("sweep", _sweep(tmp_path, ["throughput_tok_s", "energy_per_token_j", "tbt_p99_s"]), "--local",
              "--db", str(tmp_path / "s.sqlite")).output
    assert "2 feasible, 2 within constraints" in out
    assert ("Pareto front over (throughput_tok_s, energy_per_token_j, tbt_p99_s): 0 points (of the points within "
            "constraints, 2 have no tbt_p99_s: off the front)") in out


def test_no_word_when_every_point_has_its_objectives(cli, tmp_path) -> None:
    out = cli("sweep", _sweep(tmp_path, ["throughput_tok_s", "energy_per_token_j"]), "--local",
              "--db", str(tmp_path / "s.sqlite")).output
    front = next(line for line in out.splitlines() if line.startswith("Pareto front over"))
    # max_batch 1 and 2 serve these two one-token requests alike: one objective vector, no word of a lacking one
    assert front.endswith(": 2 points (1 distinct objective vector)"), front
