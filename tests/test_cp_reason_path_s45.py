"""A context-parallel refusal of the workload's heads names the workload by its name, not its file's path: a stored
reason holds no path, so a store reused after the spec moved exports the same bytes (README, Records)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner
from test_context_parallel import _spec

from archsim import library
from archsim.cli import main


def test_a_heads_refusal_names_the_workload_not_its_path(tmp_path) -> None:
    system = tmp_path / "cp.yaml"
    system.write_text(yaml.safe_dump(_spec(**{"schedule.scheme": "ulysses", "parallelism.cp": 8})))
    data = yaml.safe_load(library.find("workloads", "llama3-8b").read_text())
    workload = tmp_path / "nested" / "w8.yaml"
    workload.parent.mkdir()
    workload.write_text(yaml.safe_dump({**data, "name": "w8"}))
    result = CliRunner().invoke(main, ["simulate", "--system", str(system), "--workload", str(workload),
                                       "--rate", "1", "--requests", "2"])
    assert result.exit_code == 2, result.output
    assert f"{system}: parallelism.cp: ulysses at tp 8 cp 8 on w8: params.heads: ulysses splits" in result.output
    assert str(workload) not in result.output
