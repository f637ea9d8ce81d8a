"""What the help and the outputs of `report --library` and `check` say: the cascades a workload leaves unanalysed
counted apart (with `archsim analyze`'s reason, and its `--set`), a packaged calibration
checked by its bare version as `--calibration` takes it, and the "cannot tell the kind" error naming every key that
marks a kind."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.point import bound


def _refused(workload: str, sets: dict[str, float]) -> dict[str, str]:
    """The cascades `archsim analyze CASCADE --workload W --set ...` refuses (each taking the sets it reads), with
    the reason: what `report --library` must count apart, by the command it stands for."""
    refused = {}
    for name in library.names("cascades"):
        cascade = library.load_cascade_spec(name)
        mine = {n: v for n, v in sets.items() if n in cascade.params or n in cascade.rank_sizes or n == "kv_heads"}
        try:
            bound(cascade, library.load_workload_spec(workload), mine, sets_source="--set")
        except SpecError as error:
            refused[name] = f"{error.where}: {error.message}" if error.where else error.message
    return refused


@pytest.mark.parametrize("sets", [{}, {"tile_kv": 256, "block": 64, "devices": 4}, {"kv_heads": 4}])
def test_library_report_counts_the_cascades_analyze_refuses(cli, tmp_path: Path, sets) -> None:
    """`report --library` binds each cascade as `archsim analyze` does (audit helper-531: it had analysed MHA
    cascades at GQA workloads and block-sparse at its 4-key test blocks); `--set` gives each cascade the values it
    reads."""
    refused = _refused("bert-base", sets)
    total = len(library.names("cascades"))
    assert "attention-mla-decode" in refused and "moe-experts" in refused
    assert ("attention-3pass" in refused) == ("kv_heads" in sets)  # an MHA cascade at bert-base's 12 K/V heads
    assert ("attention-block-sparse" in refused) == ("block" not in sets)  # no 4-key test blocks at 16K tokens
    result = cli("report", "--library", "--workload", "bert-base", *(f"--set={n}={v}" for n, v in sets.items()),
                 "--out", str(tmp_path))
    assert (f"{total - len(refused)} of {total} cascades analysed ({len(refused)} refused at bert-base, as archsim "
            "analyze refuses them; their reasons in cascades.csv)") in result.output
    if "kv_heads" in sets:  # a GQA kv_heads refused by the MHA cascades, which read no kv_heads (audit helper-546)
        assert refused["attention-2pass"].startswith("kv_heads: 4 K/V heads for 12 query heads (grouped-query)")
    rows = {r["cascade"]: r for r in csv.DictReader((tmp_path / "cascades.csv").open())}
    assert {name: r["reason"] for name, r in rows.items() if r["reason"]} == refused
    mla = rows["attention-mla-decode"]
    assert mla["description"] == library.load_cascade_spec("attention-mla-decode").description
    assert mla["reason"].startswith("params.kv_lora_rank: missing: cascade attention-mla-decode binds kv_lora_rank")
    assert not any(".yaml" in r["reason"] for r in rows.values())  # each spec by its name, no install's path


def test_library_report_refuses_a_set_no_cascade_reads(cli, tmp_path: Path) -> None:
    result = cli("report", "--library", "--set", "nope=3", "--out", str(tmp_path), expect=2)
    assert "--set: nope: no cascade of the library reads it (a parameter or a rank size)" in result.output


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
