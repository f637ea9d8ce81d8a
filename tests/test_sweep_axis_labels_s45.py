"""Two axes of one sweep never share a label in its report: the mac energies of FuseMax's two arrays had both read
`actions_pj.mac` (the last two parts of the path), and the summary kept one of them (audit helper-533)."""

from __future__ import annotations

import pandas as pd
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.spec import load_sweep_spec
from archsim.dse.sweep import run_sweep
from archsim.report.sweep import short_axis

AXES = {"arch.units.array2d.energy.actions_pj.mac": [17.1645, 34.329],
        "arch.units.array1d.energy.actions_pj.mac": [1.0, 171.645]}


def test_labels_keep_the_unit_and_drop_only_the_root_and_collection() -> None:
    assert [short_axis(a) for a in AXES] == ["array2d.energy.actions_pj.mac", "array1d.energy.actions_pj.mac"]
    assert short_axis("arch.memories.DRAM.bandwidth_bytes_per_s") == "DRAM.bandwidth_bytes_per_s"
    assert short_axis("system.devices.pim.channels") == "pim.channels"
    assert short_axis("workload.seq_len") == "seq_len"
    # an architecture's own field beside the workload's of that name (audit helper-546: both read word_bytes)
    assert (short_axis("arch.word_bytes"), short_axis("workload.word_bytes")) == ("arch.word_bytes", "word_bytes")
    assert short_axis("system.parallelism.tp") == "parallelism.tp"


def test_the_summary_keeps_both_mac_axes(tmp_path) -> None:
    spec = {"name": "macs", "mapping": "fusemax", "workload": "bert-base", "axes": AXES,
            "objectives": ["latency_s", "energy_pj"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    df = run_sweep(load_sweep_spec(tmp_path / "s.yaml"), tmp_path / "s.sqlite")
    result = CliRunner().invoke(main, ["report", "--sweep", str(tmp_path / "s.sqlite"), "--spec",
                                       str(tmp_path / "s.yaml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("objective")
    best = df.loc[df.energy_pj.idxmin()]
    array2d, array1d = AXES
    assert summary.loc["energy_pj", "array2d.energy.actions_pj.mac"] == best[array2d] == 17.1645
    assert summary.loc["energy_pj", "array1d.energy.actions_pj.mac"] == best[array1d] == 1.0
