"""`archsim sparse` (issue 19): one sparse-attention method on the GPU, workload and contexts a user names, with
the reproduction's point schema; what a method needs is never filled in, and bad input exits 2 naming the option
or the file and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.systems import sparse_reproduce as sparse
from archsim.systems.sparse_points import SparseMethod, method_points
from archsim.workload_patterns import load_pattern_map

POINT_KEYS = {"method", "model", "gpu", "phase", "context", "budget", "time_s", "dense_time_s", "memory_bytes",
              "dense_memory_bytes"}

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def points(*args: str) -> list[dict]:
    code, output = run(*args, "--json")
    assert code == 0, output
    return json.loads(output)["points"]


def test_every_method_runs_on_a_gpu_the_reproduction_does_not_use() -> None:
    """H100 SXM5 with Llama-3-8B: each method's points carry the issue's keys, its phases, and beat dense where the
    cache is long."""
    runs = {"minference": ["--patterns", "llama3-8b-262k-minference"], "duoattention": ["--retrieval-fraction", "0.5"],
            "quest": ["--budget", "2048"], "razorattention": ["--retrieval-fraction", "0.16"], "tokenselect": []}
    for method, extra in runs.items():
        found = points("--method", method, "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "256K", *extra)
        phases = {"prefill"} if method == "minference" else {"attention", "decode"}
        assert {p["phase"] for p in found} == phases, method
        for p in found:
            assert set(p) >= POINT_KEYS and (p["gpu"], p["model"], p["context"]) == ("h100-sxm5", "llama3-8b", 262144)
            assert 0 < p["time_s"] < p["dense_time_s"], (method, p)


def test_the_cli_prints_the_models_points() -> None:
    """The JSON is `method_points` of the same method, workload, GPU and contexts, and a reproduction point run
    through the CLI is the reproduction's."""
    workload, gpu = library.load_workload_spec("llama2-7b"), load_gpu("rtx-4090")
    want = method_points(SparseMethod("quest", budgets=(512, 4096)), workload, gpu, [8192, 32768])
    assert points("--method", "quest", "--gpu", "rtx-4090", "-w", "llama2-7b", "--context", "8K,32K",
                  "--budget", "512,4096") == want
    reproduced = [p for p in sparse.quest_points() if p["gpu"] == "rtx-4090" and p["context"] == 8192
                  and p["budget"] == 512]
    assert want[:2] == reproduced
    duo = points("--method", "duoattention", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--context", "100000",
                 "--patterns", "llama3-8b-duo-50")
    assert [p for p in duo if p["phase"] == "decode"] == [p for p in sparse.duo_points()
                                                         if p["model"] == "llama3-8b" and p["context"] == 100_000]


def test_a_duoattention_map_gives_its_fraction_and_window() -> None:
    """A map's streaming window is the one kept: 64 sink + 256 recent tokens keep less than the shipped 128 + 256."""
    workload, gpu = library.load_workload_spec("llama3-8b"), load_gpu("h20")
    shipped = load_pattern_map("llama3-8b-duo-50")
    narrower = type(shipped)(**{**shipped.__dict__, "patterns": tuple(
        type(p)(p.pattern, p.heads, {"sinks": 64, "recent": 256} if p.pattern == "streaming" else p.settings)
        for p in shipped.patterns)})
    base, narrow = (method_points(SparseMethod("duoattention", pattern_map=m), workload, gpu, [50_000])[1]
                    for m in (shipped, narrower))
    assert base["retrieval_fraction"] == narrow["retrieval_fraction"] == 0.5
    # 128 streaming (layer, KV head) pairs x 64 tokens fewer x K and V of head_dim 128 in 2 bytes
    assert base["memory_bytes"] - narrow["memory_bytes"] == 128 * 64 * 2 * 128 * 2


def test_out_writes_the_points_as_csv(tmp_path) -> None:
    import pandas as pd

    code, text = run("--method", "quest", "--gpu", "rtx-6000-ada", "-w", "llama2-7b", "--context", "16K",
                     "--budget", "1024,4096", "--out", str(tmp_path / "q"))
    table = pd.read_csv(tmp_path / "q" / "sparse.csv")
    assert code == 0 and "sparse.csv" in text
    assert len(table) == 4 and set(table["phase"]) == {"attention", "decode"} and set(table["budget"]) == {1024, 4096}


def test_tokenselects_selection_cache_skips_the_scoring_of_the_steps_it_hits() -> None:
    """With a share f of hits, a layer's attention is (1 - f) x the scoring plus the attention over the kept
    tokens: the difference between f = 0 and f = 0.9 is 0.9 x the scoring, whatever the GPU."""
    base = ["--method", "tokenselect", "--gpu", "h200-sxm", "-w", "llama3-8b", "--context", "512K"]
    cold, warm, half = (points(*base, *extra)[0] for extra in ([], ["--reuse-fraction", "0.9"],
                                                                ["--reuse-fraction", "0.45"]))
    assert (cold["reuse_fraction"], warm["reuse_fraction"]) == (0.0, 0.9)
    assert cold["dense_time_s"] == warm["dense_time_s"] and warm["time_s"] < cold["time_s"]
    assert cold["time_s"] - half["time_s"] == pytest.approx((cold["time_s"] - warm["time_s"]) / 2, rel=1e-9)


def test_the_text_marks_what_does_not_fit_and_the_prefill_table_shows_its_parts() -> None:
    code, text = run("--method", "duoattention", "--gpu", "rtx-4090", "-w", "llama2-7b", "--context", "16K,64K",
                     "--retrieval-fraction", "0.25")
    assert code == 0 and text.count("OOM") >= 1 and len(text.splitlines()) == 6  # the last: the calibration
    code, text = run("--method", "minference", "--gpu", "a100-80gb-sxm4", "-w", "llama3-8b", "--context", "100000",
                     "--patterns", "llama3-8b-262k-minference")
    assert code == 0 and "KV to host" in text and text.splitlines()[-2].split()[0] == "100000"


@pytest.mark.parametrize(("args", "says"), [
    (["--method", "quest", "--context", "8K", "--budget", "16K"], "--budget: expected a token budget at most the "
                                                                  "context (8192), got 16384"),
    (["--method", "quest", "--context", "8K", "--budget", "100"], "--budget: expected a whole number of 16-token "
                                                                  "pages"),
    (["--method", "quest", "--context", "8K"], "--budget: Quest needs one or more token budgets"),
    (["--method", "minference", "--context", "8K"], "--patterns: MInference needs a per-head pattern map"),
    (["--method", "duoattention", "--context", "8K", "--retrieval-fraction", "1.5"], "--retrieval-fraction: "
                                                                                     "expected a fraction"),
    (["--method", "duoattention", "--context", "8K", "--retrieval-fraction", "nan"], "--retrieval-fraction: "
                                                                                     "expected a fraction"),
    (["--method", "duoattention", "--context", "8K", "--retrieval-fraction", "0.5", "--patterns",
      "llama2-7b-duo-25"], "--retrieval-fraction: DuoAttention needs exactly one of"),
    (["--method", "duoattention", "--context", "8K", "--retrieval-fraction", "0.5", "--budget", "512"],
     "--budget does not apply to --method duoattention"),
    (["--method", "razorattention", "--context", "8K"], "--retrieval-fraction: RazorAttention needs"),
    (["--method", "tokenselect", "--context", "2K", "--top-k", "4096"], "--top-k: expected a top-k at most the "
                                                                         "context (2048), got 4096"),
    (["--method", "tokenselect", "--context", "8K", "--top-k", "0"], "--top-k: expected a positive whole number"),
    (["--method", "tokenselect", "--context", "8K", "--reuse-fraction", "1"], "--reuse-fraction: expected a "
                                                                              "fraction in [0, 1)"),
    (["--method", "quest", "--context", "8K", "--budget", "512", "--reuse-fraction", "0.5"],
     "--reuse-fraction does not apply to --method quest"),
    (["--method", "quest", "--context", "0", "--budget", "512"], "--context: 0: expected whole numbers >= 1"),
    (["--method", "minference", "--context", "8K", "--patterns", "llama2-7b-duo-25"],
     "llama2-7b-duo-25.yaml: head_kind: expected a map of llama2-7b's query heads (32 layers x 32 query heads, "
     "head_kind: query), got 32 x 32 kv heads"),
    (["--method", "quest", "--context", "8K", "--budget", "512", "--gpu", "nope"], "--gpu: nope: not a GPU preset"),
])
def test_bad_input_exits_2_with_one_line_naming_the_option(args: list[str], says: str) -> None:
    full = [*args, "-w", "llama2-7b"] + ([] if "--gpu" in args else ["--gpu", "a100-80gb-sxm4"])
    code, output = run(*full)
    assert code == 2 and len(output.strip().splitlines()) == 1 and says in output, output


def test_a_gpu_whose_shared_memory_holds_no_decode_tile_exits_2(tmp_path) -> None:
    """A preset file with 8 KB of shared memory per SM: no split-KV tile fits, one line naming --gpu and why."""
    preset = yaml.safe_load((PRESETS / "mi300x.yaml").read_text()) | {"name": "small-lds", "smem_bytes_per_sm": 8192}
    path = tmp_path / "small-lds.yaml"
    path.write_text(yaml.safe_dump(preset))
    code, output = run("--method", "quest", "--context", "32K", "--budget", "512", "--gpu", str(path),
                       "-w", "llama2-7b")
    assert code == 2 and len(output.strip().splitlines()) == 1, output
    assert "--gpu: Flash-Decoding (16-row tiles) cannot decode 32768 keys on small-lds" in output, output
    assert "8192 B per SM" in output, output


@pytest.mark.parametrize(("workload", "size"), [("deepseek-v3-mla", "kv_lora_rank")])
def test_an_attention_the_gpu_kernels_do_not_model_is_refused(workload: str, size: str) -> None:
    """MLA's latent KV is not the dense multi-head or grouped-query attention these methods and kernels time."""
    code, output = run("--method", "quest", "--gpu", "rtx-4090", "-w", workload, "--context", "8K", "--budget", "512")
    assert code == 2 and f"params.{size}" in output, output


def test_a_prefill_past_what_the_gpu_holds_keeps_its_cache_on_the_host() -> None:
    """1M tokens of Llama-3-8B (147 GB with the weights) fit the B200; 2M (279 GB) do not, and go over its PCIe 5.0
    host link (a preset without one is refused naming `host_link`: tests/test_sparse_prefill.py)."""
    code, output = run("--method", "minference", "--gpu", "b200", "-w", "llama3-8b", "--context", "2M",
                       "--patterns", "llama3-8b-262k-minference", "--json")
    assert code == 0, output
    point, = json.loads(output)["points"]
    assert point["kv_host_s"] > 0
