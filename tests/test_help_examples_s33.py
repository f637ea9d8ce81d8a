"""What the help and the outputs of `report --library` and `check` say: the cascades a workload leaves unanalysed
counted apart (with a reason that suggests no --set, which `report --library` refuses), a packaged calibration
checked by its bare version as `--calibration` takes it, and the "cannot tell the kind" error naming every key that
marks a kind."""

from __future__ import annotations

import csv
from pathlib import Path

from archsim import library
from archsim.workload import PARAMS


def _not_given(workload: str) -> list[str]:
    """The cascades binding a model size (`archsim.workload.PARAMS`) that the workload's file does not give: read
    off the specs, not off the binding. At bert-base (an MHA encoder) these are the cascades binding MLA's latent
    ranks, a sliding window, attention sinks or MoE tokens."""
    given = set(library.load_workload_spec(workload).params)
    return [name for name in library.names("cascades")
            if (set(library.load_cascade_spec(name).params) & set(PARAMS)) - given]


def test_library_report_counts_the_cascades_it_could_not_analyse(cli, tmp_path: Path) -> None:
    missing = _not_given("bert-base")
    total = len(library.names("cascades"))
    assert "attention-mla-decode" in missing and "moe-experts" in missing and "attention-3pass" not in missing
    result = cli("report", "--library", "--workload", "bert-base", "--out", str(tmp_path))
    assert (f"{total - len(missing)} of {total} cascades analysed ({len(missing)} need a parameter bert-base does "
            "not give; their reasons in cascades.csv)") in result.output
    rows = {r["cascade"]: r for r in csv.DictReader((tmp_path / "cascades.csv").open())}
    assert sorted(name for name, r in rows.items() if r["reason"]) == sorted(missing)
    mla = rows["attention-mla-decode"]
    assert mla["description"] == library.load_cascade_spec("attention-mla-decode").description
    assert mla["reason"].startswith("missing: cascade attention-mla-decode binds kv_lora_rank")
    assert mla["reason"].endswith("add it to the workload")  # report --library takes no --set: none is suggested
    assert not any("--set" in r["reason"] for r in rows.values())


def test_library_report_at_default_params_analyses_every_cascade(cli, tmp_path: Path) -> None:
    result = cli("report", "--library", "--out", str(tmp_path))
    assert f"{len(library.names('cascades'))} cascades analysed; report written to" in result.output


def test_check_takes_a_packaged_calibration_by_version(cli) -> None:
    result = cli("check", "v2", "v1")
    assert "v2.yaml: calibration" in result.output and "v1.yaml: calibration" in result.output
    help_text = cli("check", "--help").output
    assert "archsim/gpu/calibration/v2.yaml" not in help_text and "--calibration" in help_text


def test_check_unknown_yaml_names_every_mark_of_a_kind(cli, tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("foo: 1\n")
    result = cli("check", str(unknown), expect=2)
    assert "'base'/'devices'/'placement' (system)" in result.output  # most system presets have devices, not base
