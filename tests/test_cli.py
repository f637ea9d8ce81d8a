"""The CLI's documented outputs: list --json schema, check, execute --check, the library report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from archsim import library


def test_list_json_schema(cli_json) -> None:
    listing = cli_json("list")
    assert set(listing) == {"cascades", "architectures", "mappings", "workloads", "sweeps", "gpus", "chips", "links",
                            "systems", "topologies", "patterns"}
    assert all(isinstance(v, list) for v in listing.values())
    assert "attention-1pass" in listing["cascades"]
    assert {"bert-base", "llama3-70b", "mixtral-8x7b", "deepseek-v3-mla"} <= set(listing["workloads"])
    assert "demo" in listing["sweeps"] and "h100-sxm5" in listing["gpus"] and "neupims" in listing["systems"]
    assert "nvlink4-h100" in listing["links"] and "tpu-v6e" in listing["chips"]
    assert "hgx-h100" in listing["topologies"] and "llama3-8b-262k-minference" in listing["patterns"]


def test_analyze_json_schema(cli_json) -> None:
    result = cli_json("analyze", "attention-3pass")
    assert {"cascade", "ranks", "tensors", "points", "ops", "total_ops", "bytes", "passes",
            "pass_reasons"} <= set(result)
    assert all(isinstance(n, int) for ops in result["ops"].values() for n in ops.values())
    assert result["pass_reasons"][0].startswith("pass 2 over M starts at SN")


def test_run_json_params_say_the_tile_the_mapping_sets(cli_json) -> None:
    """fusemax's `set: {M0: 256}` fixes the key tile: the record's params say tile_kv 256, not the cascade's test
    default 4 (the numbers were always the 256 tile's)."""
    record = cli_json("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "seq_len=4096", "--json")
    assert record["params"]["tile_kv"] == 256


def test_check_takes_library_names_of_every_kind(cli, tmp_path, monkeypatch) -> None:
    """A bare name that is no file checks the library's specs of that name, of every kind (`fusemax`: the
    architecture and the mapping), so an installed wheel's specs can be checked without their paths; a name the
    library lacks is still 'no such file' (and none in the library), exit 2."""
    monkeypatch.chdir(tmp_path)
    result = cli("check", "fusemax", "h100-sxm5", "neupims", "demo")
    kinds = [line.split(": ", 1)[1].split()[0] for line in result.output.splitlines()]
    assert kinds == ["architecture", "mapping", "gpu", "system", "sweep"]
    assert cli("check", "no-such-spec", expect=2).output.strip() == ("error: no-such-spec: no such file, and no "
                                                                     "library spec of that name (archsim list names "
                                                                     "them)")
    (tmp_path / "fusemax").mkdir()  # a folder is no file: the name is still the library's
    assert cli("check", "fusemax").output.count("ok  ") == 2


def test_check_the_whole_library(cli) -> None:
    files = [str(library.find("cascades", n)) for n in library.names("cascades")]
    files += [str(library.find("workloads", n)) for n in library.names("workloads")]
    result = cli("check", *files)
    assert result.output.count("ok  ") == len(files)


def test_execute_check(cli) -> None:
    result = cli("execute", "attention-1pass", "--check", "--seed", "3")
    assert "max abs error" in result.output and result.output.rstrip().endswith("ok")


def test_library_report(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = cli("report", "--library", "--workload", "bert-base", "--out", str(out))
    assert str(out / "index.html") in result.output
    rows = list(csv.DictReader((out / "cascades.csv").open()))
    assert {r["cascade"] for r in rows} == set(library.names("cascades"))
    three = next(r for r in rows if r["cascade"] == "attention-3pass")
    assert three["passes"] == "M=3"
    assert float(three["ops_mac"]) == 2 * 64 * 12 * 1024 * 1024 * 64  # QK + AV at BERT-base, 1K tokens
    assert "attention-3pass" in (out / "index.html").read_text()
    # BERT has no MoE sizes: the expert cascade is a row saying so, not an analysis at the cascade's toy sizes
    moe = next(r for r in rows if r["cascade"] == "moe-experts")
    assert moe["reason"].startswith("params.tokens: missing: cascade moe-experts binds tokens") and not moe["ops_mac"]


def test_workloads_bind_attention(cli, cli_json) -> None:
    """Every multi-head softmax workload binds the 3-pass cascade (a decoder's causal one, `attention-3pass-causal`):
    heads, head_dim, batch and seq_len come from it. A grouped-query, latent (MLA) or linear-attention one is
    refused, naming the field, as `archsim run` refuses it: the multi-head cascade would count its K and V once per
    query head (or drop its latent); so is a decoder on the unmasked `attention-3pass`, naming its `block`."""
    refused = 0
    for name in library.names("workloads"):
        spec = library.load_workload_spec(name)
        assert spec.params["heads"] % spec.params["kv_heads"] == 0
        form = ("params.kv_lora_rank" if "kv_lora_rank" in spec.params else "attention" if spec.attention != "softmax"
                else "params.kv_heads" if spec.params["kv_heads"] != spec.params["heads"] else None)
        if form:
            assert f"{spec.path}: {form}:" in cli("analyze", "attention-3pass", "--workload", name, expect=2).output
            refused += 1
            continue
        if spec.block is not None:
            assert f"{spec.path}: block:" in cli("analyze", "attention-3pass", "--workload", name, expect=2).output
        ranks = cli_json("analyze", "attention-3pass-causal" if spec.block else "attention-3pass",
                         "--workload", name)["ranks"]
        assert ranks["H"] == spec.params["heads"] and ranks["E"] == spec.params["head_dim"]
    assert 0 < refused < len(library.names("workloads"))


def test_reproduce_fusemax_json_schema(cli_json, fusemax_end2end_cli) -> None:
    """`archsim reproduce fusemax --json`: attention (5 configs x 4 models x 6 lengths), end2end (2 hardware x 4 x 6)
    and pareto records, with the fields the issue names."""
    out = cli_json("reproduce", "fusemax")
    assert len(out["attention"]) == 120 and len(out["end2end"]) == 48
    assert {r["config"] for r in out["attention"]} == {"unfused", "flat", "cascade", "arch", "fusemax"}
    for r in out["attention"]:
        assert {"config", "model", "seq_len", "latency_s", "energy_pj", "traffic_bytes", "util_2d", "util_1d"} <= set(r)
        assert isinstance(r["seq_len"], int)
    assert {r["pe_dim"] for r in out["pareto"]} == {16, 32, 64, 128, 256, 512}
    assert all({"pe_dim", "area_um2", "latency_s"} <= set(r) for r in out["pareto"])
    assert abs(out["headline"]["attention"]["speedup_vs_flat"] / 6.72 - 1) < 0.05
    assert out["headline"]["attention"]["paper"] == {"speedup_vs_flat": 6.72, "energy_vs_flat": 0.787}
    # ours beside the artifact's, the error per metric (README): the paper's value where it has one, else null
    known = [r for r in out["attention"] if r["latency_s_paper"] is not None]
    assert len(known) == 90
    assert all(abs(r["energy_pj_err"] - (r["energy_pj"] / r["energy_pj_paper"] - 1)) < 1e-12 for r in known)


def test_a_workload_missing_a_model_size_is_refused_not_defaulted(cli, tmp_path: Path) -> None:
    """BERT without head_dim used to take attention-1pass's toy head_dim 8 silently (issue 12)."""
    workload = tmp_path / "bert-no-head-dim.yaml"
    workload.write_text("name: bert-no-head-dim\nparams: {batch: 64, seq_len: 512, heads: 12, word_bytes: 2}\n")
    for command in ("analyze", "execute"):
        result = cli(command, "attention-1pass", "--workload", str(workload), expect=2)
        assert result.output.strip() == (f"error: {workload}: params.head_dim: missing: cascade attention-1pass "
                                         "binds head_dim; add it to the workload or pass --set head_dim=N")
    assert "E=64" in cli("analyze", "attention-1pass", "--workload", str(workload), "--set", "head_dim=64",
                         "--set", "M0=256").output


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped KeyboardInterrupt
def test_a_ctrl_c_python_drops_still_ends_the_command_as_interrupted(monkeypatch) -> None:
    """Python drops a KeyboardInterrupt raised inside a finaliser or a weakref callback ("Exception ignored in"),
    so a command could run on and exit 0 after Ctrl-C (seen in CI, tests/test_fuzz_cli.py::test_interrupted). The
    CLI notes every SIGINT: a command whose interrupt was dropped ends with one line and exit 130, and the
    handler it replaced is back afterwards."""
    import os
    import signal

    from click.testing import CliRunner

    from archsim import cli

    class Dropper:  # a finaliser during which SIGINT arrives: its KeyboardInterrupt is dropped
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10_000))  # bytecodes for the handler to run in

    def command_that_runs_on(self, *args, **kwargs) -> int:
        Dropper()
        return 0

    monkeypatch.setattr(cli._LazyGroup, "_main", command_that_runs_on)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = CliRunner().invoke(cli.main, ["list"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 130 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("error: interrupted (Ctrl-C)")
