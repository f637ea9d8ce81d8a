"""Issue 19 audit (session 29): MInference's points report its estimation and index build; a head map of the wrong
size names the field that differs; MInference's vertical-slash sizes are clamped as its code clamps them.

Expectations:
- a MInference point's `estimate_s` is the eager launches' GPU time (pads, estimate, top-k, sorts, index build:
  `gpu_sparse.head_launches`' first list) and `index_s` the sorts and the index build alone, each summed over the
  map's heads (which cover every layer) as the attention is; both within the attention, the index part within the
  estimate;
- a map of KV heads for llama3-8b (32 layers x 8 KV heads) that has 32 x 32 heads differs in its heads, not its
  layers; a MInference run given a DuoAttention map (head_kind kv) differs in head_kind; a map of 16 layers in layers;
- seqpar-sparse.md §3.1: "Code forces the first 30 columns and the last 30-100 diagonals to be kept, and clamps
  k_v >= 30, k_s >= 50", so a head given (k_v, k_s) = (0, 1) runs, and costs, what (30, 50) does; sizes above the
  clamp are unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.gpu.load import load_gpu
from archsim.model.gpu import launch_time
from archsim.model.gpu_sparse import SparsePattern, head_launches, head_parts_s, index_launches, key_tiles
from archsim.systems.sparse_prefill import _sparse_params
from archsim.workload_patterns import load_pattern_map, mean_vertical_slash_density, pattern_map_from_dict

A100 = "a100-80gb-sxm4"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def test_minference_points_report_the_estimate_and_the_index_build() -> None:
    code, output = run("--method", "minference", "--gpu", A100, "-w", "llama3-8b", "--context", "10K,100K",
                       "--patterns", "llama3-8b-262k-minference", "--json")
    assert code == 0, output
    gpu, params = load_gpu(A100), _sparse_params()
    patterns = load_pattern_map("llama3-8b-262k-minference").patterns
    for p in json.loads(output)["points"]:
        eager_s = index_s = 0.0
        for entry in patterns:  # 1024 heads: every layer's 32
            pattern = SparsePattern("vertical_slash", **entry.settings)
            eager, _ = head_launches(pattern, p["context"], 128, gpu, "bf16", 2)
            eager_s += entry.heads * sum(launch_time(launch, gpu, params.eager).time_s for launch in eager)
            index_s += entry.heads * sum(launch_time(launch, gpu, params.eager).time_s
                                         for launch in index_launches(pattern, p["context"]))
        assert p["estimate_s"] == pytest.approx(eager_s, rel=1e-12)
        assert p["index_s"] == pytest.approx(index_s, rel=1e-12)
        assert 0 < p["index_s"] < p["estimate_s"] < p["attention_s"]


def test_the_minference_table_prints_the_estimate_column() -> None:
    code, text = run("--method", "minference", "--gpu", A100, "-w", "llama3-8b", "--context", "10K",
                     "--patterns", "llama3-8b-262k-minference")
    assert code == 0 and "estimate" in text.splitlines()[1], text


@pytest.mark.parametrize(("workload", "method", "map_args", "says"), [
    ("llama3-8b", "duoattention", ["--patterns", "llama2-7b-duo-25"],
     "llama2-7b-duo-25.yaml: heads: expected a map of llama3-8b's KV heads (32 layers x 8 KV heads, head_kind: kv), "
     "got 32 x 32 kv heads"),
    ("llama2-7b", "minference", ["--patterns", "llama2-7b-duo-25"],
     "llama2-7b-duo-25.yaml: head_kind: expected a map of llama2-7b's query heads"),
])
def test_a_map_of_the_wrong_size_names_the_field_that_differs(workload, method, map_args, says) -> None:
    code, output = run("--method", method, "--gpu", A100, "-w", workload, "--context", "10K", *map_args)
    assert code == 2 and len(output.strip().splitlines()) == 1 and says in output, output


def test_a_map_of_too_few_layers_names_layers(tmp_path) -> None:
    path = tmp_path / "duo-16-layers.yaml"
    path.write_text(yaml.safe_dump({"name": "duo-16-layers", "model": "llama3-8b", "layers": 16, "heads": 8,
                                    "head_kind": "kv",
                                    "patterns": [{"pattern": "retrieval", "heads": 128}]}))
    code, output = run("--method", "duoattention", "--gpu", A100, "-w", "llama3-8b", "--context", "10K",
                       "--patterns", str(path))
    assert code == 2 and "duo-16-layers.yaml: layers: expected a map of llama3-8b's KV heads (32 layers" in output, \
        output


@pytest.mark.parametrize("n", [4096, 100_000])
def test_vertical_slash_sizes_below_minferences_clamp_run_as_the_clamp(n) -> None:
    gpu, params = load_gpu(A100), _sparse_params()
    below, clamp = SparsePattern("vertical_slash", k_v=0, k_s=1), SparsePattern("vertical_slash", k_v=30, k_s=50)
    assert all(np.array_equal(a, b) for a, b in zip(key_tiles(below, n), key_tiles(clamp, n), strict=True))
    assert head_parts_s(below, n, 128, gpu, params) == head_parts_s(clamp, n, 128, gpu, params)
    for pattern, indices in ((below, 30 + 50), (SparsePattern("vertical_slash", k_v=31, k_s=51), 31 + 51)):
        (build,) = [launch for launch in index_launches(pattern, n) if "build" in launch.name]
        assert build.dram_bytes == -(-n // 64) * indices * 4  # (N/64) (k_v + k_s) int32 indices


def test_a_maps_density_counts_the_clamped_sizes() -> None:
    def one_head(k_v: int, k_s: int):
        return pattern_map_from_dict({"name": "m", "model": "m", "layers": 1, "heads": 1, "head_kind": "query",
                                      "patterns": [{"pattern": "vertical_slash", "k_v": k_v, "k_s": k_s, "heads": 1}]})

    n = 8192
    assert mean_vertical_slash_density(one_head(0, 1), n) == mean_vertical_slash_density(one_head(30, 50), n)
    assert mean_vertical_slash_density(one_head(31, 51), n) > mean_vertical_slash_density(one_head(30, 50), n)
