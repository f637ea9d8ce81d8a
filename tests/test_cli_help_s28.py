"""What the commands' help and tables say, as the commands do it (audit helper-259): the reproductions' --json keys
and --out tables, a memory the model does not have printed as '-', an unknown name blamed on its option."""

from __future__ import annotations

import json

from cli_errors import one_line_error


def test_reproduce_seqpar_writes_every_table_its_json_holds(cli, tmp_path, seqpar_cli):
    out = tmp_path / "sq"
    cli("reproduce", "seqpar", "--out", str(out))
    keys = json.loads(cli("reproduce", "seqpar", "--json").output)
    tables = {p.stem for p in out.glob("*.csv")}
    expected = {"points", "table2", "table3", "distattention", "lasp2", "lasp2_table2"}
    assert tables == expected == set(keys) - {"headline"}
    assert '"distattention"' in cli("reproduce", "--help").output.replace("\n", " ").replace("  ", " ")


def test_training_memory_not_modelled_prints_a_dash(cli):
    row = cli("parallel", "--scheme", "ring", "--devices", "4", "-w", "llama3-8b", "--seq-len", "32K",
              "--direction", "fwd+bwd", "--tp", "2").output.splitlines()[-1]
    assert "nan" not in row and row.split()[-2:] == ["-", "-"]


def test_an_unknown_gpu_or_calibration_is_blamed_on_its_option(cli):
    one_line_error(cli("gpu-roofline", "--gpu", "nosuch", expect=2), "error: --gpu: nosuch: not a GPU preset")
    one_line_error(cli("gpu-roofline", "--calibration", "v9", expect=2), "error: --calibration: v9:")
    one_line_error(cli("validate", "--calibration", "v9", expect=2), "error: --calibration: v9:")
    one_line_error(cli("calibrate", "--base", "v9", "--families", "fa2", expect=2), "error: --base: v9:")
