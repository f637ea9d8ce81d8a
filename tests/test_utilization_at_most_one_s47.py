"""A compute-bound unit's utilization is busy lane-cycles over the latency's cycles, and the latency's cycles are
seconds x clock: FuseMax's 1-D array at BERT-base 512 tokens read 1.0000000000000002 in `--json` and the store
(auditor 581). The model's own claim is that utilization never exceeds 1."""

from __future__ import annotations

import json

from click.testing import CliRunner

from archsim.cli import main


def test_a_compute_bound_unit_reads_exactly_one() -> None:
    result = CliRunner().invoke(main, ["run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=512",
                                       "--set", "batch=1", "--json"])
    assert result.exit_code == 0, result.output
    utilization = json.loads(result.output)["utilization"]
    assert utilization["array1d"] == 1.0
    assert type(utilization["array1d"]) is float
    assert all(0 < u <= 1 for u in utilization.values())
