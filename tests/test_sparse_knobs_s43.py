"""Quest's page size and TokenSelect's sinks and local window as settings a user varies (`archsim sparse
--page-tokens / --sinks / --local`, `SparseMethod`, a sparse sweep's `sparse.page_tokens / sinks / local`), their
defaults the papers' (Quest's 16-token pages; TokenSelect's 128 sinks and 512 local tokens), so every number left
at the defaults is the old one.

Llama-3-8B: 32 layers, 8 KV heads of 128, fp16. Quest's loaded fraction per selecting layer is KMIN and KMAX (2
vectors a page) plus the budget's K and V, over the whole K and V (2 vectors a token): 1/page + budget/context
(§3.5's 1/PageSize + K/PageNum for whole pages). At 32K tokens and a 2048-token budget: 1/16 + 1/16 = 0.125 with
16-token pages, 1/32 + 1/16 = 0.09375 with 32-token pages."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.store import read_records
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import kv_selection as ks
from archsim.systems.sparse_points import SparseMethod, method_points

GPU, MODEL = "h100-sxm5", "llama3-8b"
QUEST = ("--method", "quest", "--gpu", GPU, "-w", MODEL, "--context", "32K", "--budget", "2048")
TOKENSELECT = ("--method", "tokenselect", "--gpu", GPU, "-w", MODEL, "--context", "128K")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def points(*args: str) -> dict[str, dict]:
    """The points of `archsim sparse ... --json` by phase (one context, one budget)."""
    code, output = run(*args, "--json")
    assert code == 0, output
    return {p["phase"]: p for p in json.loads(output)["points"]}


def test_quests_page_size_sets_its_loaded_fraction_and_time() -> None:
    """Larger pages: less metadata (KMIN, KMAX) read and kept, so a lower loaded fraction (0.125 -> 0.09375, module
    docstring), a faster step and less memory, dense unchanged."""
    small, large = points(*QUEST), points(*QUEST, "--page-tokens", "32")
    assert small["decode"]["loaded_fraction"] == pytest.approx(1 / 16 + 2048 / 32768)
    assert large["decode"]["loaded_fraction"] == pytest.approx(1 / 32 + 2048 / 32768)
    assert large["decode"]["time_s"] < small["decode"]["time_s"]
    assert large["attention"]["time_s"] < small["attention"]["time_s"]
    assert large["decode"]["memory_bytes"] < small["decode"]["memory_bytes"]
    assert large["decode"]["dense_time_s"] == small["decode"]["dense_time_s"]


def test_the_default_page_size_and_window_are_the_papers_and_the_models_defaults() -> None:
    """No option is Quest's 16 and TokenSelect's 128 + 512, the numbers the model's defaults give (the old
    output); the options at those values change nothing."""
    workload, gpu = library.load_workload_spec(MODEL), load_gpu(GPU)
    quest = points(*QUEST)
    assert quest == points(*QUEST, "--page-tokens", "16")
    assert quest["decode"]["time_s"] == ks.quest_decode(workload, gpu, 32768, 2048).time_s
    tokenselect = points(*TOKENSELECT)
    assert tokenselect == points(*TOKENSELECT, "--sinks", "128", "--local", "512")
    assert tokenselect["decode"]["time_s"] == ks.tokenselect_decode(workload, gpu, 131072).time_s


def test_tokenselects_time_grows_with_its_sinks_and_local_window() -> None:
    """More sinks or local tokens: more keys attended each step, so a slower step; a window covering the whole
    cache attends it all, as dense (`tokenselect_decode`)."""
    base = points(*TOKENSELECT)["decode"]
    local = points(*TOKENSELECT, "--local", "8192")["decode"]
    sinks = points(*TOKENSELECT, "--sinks", "8192")["decode"]
    assert base["time_s"] < local["time_s"] < local["dense_time_s"]
    assert base["time_s"] < sinks["time_s"]
    assert (local["sinks"], local["local"], sinks["sinks"], sinks["local"]) == (128, 8192, 8192, 512)
    whole = points(*TOKENSELECT, "--local", "131072")["decode"]
    assert whole["time_s"] == whole["dense_time_s"]


def test_quests_page_size_reaches_its_rows_on_a_system() -> None:
    """On NeuPIMs' PIM, Quest's effective context (the tokens' worth of K and V a layer reads, averaged over the
    layers) falls with larger pages (less metadata), as `quest_mean_effective_context` at that page size."""
    args = (*QUEST, "--system", "neupims", "--batch", "16", "--json")
    rows = {}
    for page in ("16", "64"):
        code, output = run(*args, "--page-tokens", page)
        assert code == 0, output
        rows[page] = json.loads(output)["system_points"][0]
    workload = library.load_workload_spec(MODEL)
    assert rows["64"]["effective_context"] == ks.quest_mean_effective_context(workload, 32768, 2048, 64)
    assert rows["64"]["effective_context"] < rows["16"]["effective_context"]


@pytest.mark.parametrize(("args", "message"), [
    ((*QUEST, "--page-tokens", "0"), "Invalid value for '--page-tokens': 0 is not in the range x>=1"),
    ((*QUEST, "--page-tokens", "-16"), "Invalid value for '--page-tokens': -16 is not in the range x>=1"),
    ((*QUEST, "--page-tokens", "1.5"), "--page-tokens: expected a whole number in ASCII digits"),
    ((*QUEST, "--page-tokens", "99999999999"), "--page-tokens: 99999999999 is beyond the limit of"),
    ((*TOKENSELECT, "--sinks", "0"), "Invalid value for '--sinks': 0 is not in the range x>=1"),
    ((*TOKENSELECT, "--local", "x"), "--local: expected a whole number in ASCII digits"),
    ((*QUEST, "--page-tokens", "24"), "--budget: expected a whole number of 24-token pages, got 2048"),
    ((*QUEST, "--sinks", "64"), "--sinks does not apply to --method quest"),
    ((*TOKENSELECT, "--page-tokens", "32"), "--page-tokens does not apply to --method tokenselect"),
    (("--method", "duoattention", "--gpu", GPU, "-w", MODEL, "--context", "8K", "--retrieval-fraction", "0.5",
      "--local", "64"), "--local does not apply to --method duoattention"),
])
def test_a_bad_or_foreign_setting_exits_2_naming_the_option(args, message) -> None:
    code, output = run(*args)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], output


def test_the_python_api_names_the_field() -> None:
    workload, gpu = library.load_workload_spec(MODEL), load_gpu(GPU)
    with pytest.raises(SpecError) as error:
        method_points(SparseMethod("quest", budgets=(2048,), page_tokens=0), workload, gpu, [32768])
    assert error.value.where == "page_tokens"
    with pytest.raises(SpecError) as error:
        method_points(SparseMethod("tokenselect", local=-1), workload, gpu, [32768])
    assert error.value.where == "local"


def test_a_sweep_over_the_page_size_keys_its_points_apart(tmp_path, write_yaml, invoke) -> None:
    """sparse.page_tokens [16, 32]: two records, their keys apart, each the CLI's point at that page size."""
    spec = write_yaml(tmp_path / "pages.yaml", {
        "name": "pages", "sparse": {"method": "quest", "gpu": GPU, "workload": MODEL, "context": 32768,
                                    "budget": 2048},
        "axes": {"sparse.page_tokens": [16, 32]}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "p.sqlite"))
    assert code == 0, output
    df = read_records(tmp_path / "p.sqlite").set_index("sparse.page_tokens")
    assert df["key"].nunique() == 2
    assert df.loc[32, "loaded_fraction"] == pytest.approx(1 / 32 + 2048 / 32768)
    assert df.loc[32, "latency_s"] == points(*QUEST, "--page-tokens", "32")["decode"]["time_s"]
    assert df.loc[16, "latency_s"] == points(*QUEST)["decode"]["time_s"]


@pytest.mark.parametrize(("block", "axes", "where"), [
    ({"method": "quest", "budget": 2048, "page_tokens": 0}, {}, "sparse.page_tokens: expected a whole number >= 1"),
    ({"method": "tokenselect"}, {"sparse.local": [512, 1.5]}, "axes.sparse.local[1]: expected a whole number >= 1"),
    ({"method": "quest", "budget": 2048, "sinks": 64}, {}, "sparse.sinks: sinks does not apply to method quest"),
])
def test_a_bad_sweep_setting_exits_2_naming_the_field(block, axes, where, tmp_path, write_yaml, invoke) -> None:
    spec = write_yaml(tmp_path / "bad.yaml", {"name": "bad", "sparse": {"gpu": GPU, "workload": MODEL, **block},
                                              "axes": {"sparse.context": [32768], **axes}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "b.sqlite"))
    assert code == 2 and f"{spec}: {where}" in output, output


def test_a_sweeps_tokenselect_window_reaches_its_record(tmp_path, write_yaml, invoke) -> None:
    """sparse.local [512, 8192] for TokenSelect: the record's time is the CLI's at that window, and grows with it."""
    spec = write_yaml(tmp_path / "local.yaml", {
        "name": "local", "sparse": {"method": "tokenselect", "gpu": GPU, "workload": MODEL, "context": 131072},
        "axes": {"sparse.local": [512, 8192]}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "l.sqlite"))
    assert code == 0, output
    df = read_records(tmp_path / "l.sqlite").set_index("sparse.local")
    assert df.loc[8192, "latency_s"] == points(*TOKENSELECT, "--local", "8192")["decode"]["time_s"]
    assert df.loc[512, "latency_s"] < df.loc[8192, "latency_s"]


@pytest.mark.parametrize(("axis", "values"), [("sinks", [128, 8192]), ("reuse_fraction", [0.0, 0.5])])
def test_a_sweep_axis_over_tokenselects_sinks_or_reuse_reaches_its_points(tmp_path, write_yaml, invoke, axis: str,
                                                                           values: list) -> None:
    """Each of TokenSelect's defaulted settings an axis sweeps reaches the model (dropping one from
    `SparseTargets.method`'s defaulted list ran every point at the default: mutation audit helper-514)."""
    spec = write_yaml(tmp_path / f"{axis}.yaml", {
        "name": axis, "sparse": {"method": "tokenselect", "gpu": GPU, "workload": MODEL, "context": 131072},
        "axes": {f"sparse.{axis}": values}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"))
    assert code == 0, output
    latency = read_records(tmp_path / "s.sqlite").set_index(f"sparse.{axis}")["latency_s"]
    assert latency.loc[values[0]] != latency.loc[values[1]]


def test_quests_page_size_reaches_a_systems_pool_and_its_reason() -> None:
    """A NeuPIMs batch of 27 fits at 64-token pages (26 at 16) and a Lamina pool's refusal states the page size's
    bytes (both had lost `page_tokens` in a mutant: helper-514)."""
    fits = json.loads(CliRunner().invoke(main, ["sparse", *QUEST, "--system", "neupims", "--batch", "27",
                                                "--page-tokens", "64", "--json"]).output)
    assert all(row["fits"] for row in fits["system_points"]), fits["system_points"]
    pool = ("--method", "quest", "--gpu", GPU, "-w", "llama3-70b", "--context", "8M", "--budget", "2048",
            "--system", "lamina", "--json")
    reasons = [" ".join(row["reason"] for row in json.loads(CliRunner().invoke(main, ["sparse", *pool, *page])
                                                             .output)["system_points"])
               for page in ((), ("--page-tokens", "64"))]
    assert reasons[0] != reasons[1] and "Quest" in reasons[1]
