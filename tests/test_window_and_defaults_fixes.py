"""Two silent wrong answers, now refused or corrected.

1. `archsim analyze` and `execute` with a workload bound a tiling or algorithm parameter nobody gave (`tile_kv`,
   block-sparse's `block`) to the cascade's test default (4 keys a tile under BERT's 1,024 tokens); they now refuse
   it as `archsim run` does (`point.refuse_test_defaults`), naming `params.X` and the `--set` that gives it. Without a
   workload the cascade's own small test sizes are used, as before.
2. A sliding-window model's decode query reads min(context, window + sinks) keys (`step.decode_keys`). NeuPIMs' block
   timeline (`neupims.block_timeline`, since replaced by `layer_timeline`) drew the blocked PIM's logits from the raw
   contexts (Mistral 7B at 32K tokens: 975 us of logits in a layer of 339 us), and Lamina's pool
   (`OffloadModel.attention_cost`) bound its kernel call at the mean raw context, capped only afterwards (1,000 and
   32,768 tokens: 8 requests of 4,096 keys where they read 1,000 and 4,096). Both now read the keys, so 32K costs what
   the window does.

Sizes are Mistral 7B's (Jiang et al. 2023, Table 1: window 4096, 32 query heads over 8 K/V heads).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from archsim import library
from archsim.systems import neupims
from archsim.systems.models import system_model
from archsim.systems.system_model import layer_phases
from archsim.systems.system_spec import load_system
from archsim.workload import workload_from_dict

WINDOW = 4096
MISTRAL_7B = {"hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128, "ffn_dim": 14336, "layers": 32,
              "vocab": 32000, "batch": 1, "seq_len": 8192, "word_bytes": 2}
BERT_1K = ("--workload", "bert-base", "--set", "seq_len=1024")
SMALL = ("--set", "seq_len=16", "--set", "batch=1", "--set", "heads=1", "--set", "head_dim=8")  # executable sizes


def mistral(window: int | None = WINDOW, sinks: int = 0):
    """Mistral 7B with a sliding window of `window` keys and `sinks` sink tokens (None: every key)."""
    params = {**MISTRAL_7B, **({"window": window, "sinks": sinks} if window else {})}
    return workload_from_dict({"name": "mistral-7b", "source": "Mistral 7B Table 1", "block": "llama",
                               "params": params}, "mistral-7b.yaml")


# ------------------------------------------------------------------------------------------------ 1: test defaults
def _refusal(cascade: str, name: str, value: int, options: str) -> str:
    return (f"error: {library.find('cascades', cascade)}: params.{name}: missing: {cascade}'s {name} would be its "
            f"test default ({value}) under bert-base's sizes; give it ({options})")


@pytest.mark.parametrize("command", [("analyze",), ("execute", *SMALL)])
def test_a_workload_refuses_the_tile_left_at_its_test_default(cli, command) -> None:
    """attention-1pass's tile_kv (M0) is 4 in the cascade, a test size: with BERT it is refused, one line, exit 2."""
    result = cli(*command, "attention-1pass", "--workload", "bert-base", expect=2)
    assert result.output.strip() == _refusal("attention-1pass", "tile_kv", 4, "--set tile_kv=N or --set M0=N")


def test_block_sparse_block_is_refused_as_run_refuses_it(cli) -> None:
    """With the tile given (M0), block-sparse's block is still its test default: analyze refuses it with the line
    `archsim run` prints for the same cascade under a mapping that sets M0 (fusemax)."""
    expected = _refusal("attention-block-sparse", "block", 4, "--set block=N")
    analyzed = cli("analyze", "attention-block-sparse", *BERT_1K, "--set", "M0=256", expect=2)
    ran = cli("run", "--mapping", "fusemax", "--cascade", "attention-block-sparse", *BERT_1K, expect=2)
    assert analyzed.output.strip() == ran.output.strip() == expected


@pytest.mark.parametrize("given", ["M0=256", "tile_kv=256"])
def test_a_tile_given_by_set_binds(cli_json, given: str) -> None:
    """The parameter or the rank it sizes, set: 1,024 keys in 4 tiles of 256."""
    ranks = cli_json("analyze", "attention-1pass", *BERT_1K, "--set", given)["ranks"]
    assert (ranks["M"], ranks["M0"], ranks["M1"]) == (1024, 256, 4)


def test_without_a_workload_the_cascade_keeps_its_test_sizes(cli, cli_json) -> None:
    """No workload: the cascade's own small sizes (16 keys, tiles of 4), analysed and executed as before."""
    ranks = cli_json("analyze", "attention-1pass")["ranks"]
    assert (ranks["M"], ranks["M0"]) == (16, 4)
    assert cli("execute", "attention-1pass", "--check").output.strip().endswith("ok")


def test_execute_with_the_tile_given_runs(cli) -> None:
    assert cli("execute", "attention-1pass", "--workload", "bert-base", *SMALL, "--set", "tile_kv=4",
               "--check").output.strip().endswith("ok")


# ------------------------------------------------------------------------------------------------ 2: windows
def _timeline(mode: str, workload, contexts):
    model = system_model(load_system(mode), workload)
    return neupims.layer_timeline(model, np.asarray(contexts)), layer_phases(model, np.asarray(contexts)).layer_s


@pytest.mark.parametrize(("mode", "batch"), [("npu+pim", 64), ("neupims-no-sbi", 64), ("npu-only", 64),
                                             ("neupims", 256)])
def test_layer_timeline_of_a_window_reads_at_most_the_window(mode: str, batch: int) -> None:
    """Window 4096: a layer over 32K-token contexts draws the spans of one over 4096 (mixed with shorter ones, those
    of the capped contexts), and ends at the layer time the model charges."""
    windowed = mistral()
    long, capped = [1000, 32768] * (batch // 2), [1000, WINDOW] * (batch // 2)
    spans, layer_s = _timeline(mode, windowed, long)
    assert spans == _timeline(mode, windowed, capped)[0]
    assert max(s.end_s for s in spans) == pytest.approx(layer_s, rel=1e-9)


def test_layer_timeline_of_a_window_reads_the_sinks_beside_it() -> None:
    """Window 4000 and 96 sinks on the blocked PIM: contexts of 32768 draw as contexts of 4096."""
    workload = mistral(4000, 96)
    assert _timeline("npu+pim", workload, [32768] * 64)[0] == _timeline("npu+pim", workload, [4096] * 64)[0]


def test_layer_timeline_without_a_window_reads_every_key() -> None:
    """The model without a window: 32K contexts take longer than 4096, and the layer's spans still add up to the
    layer the model charges."""
    spans, layer_s = _timeline("npu+pim", mistral(None), [32768] * 64)
    short, short_layer_s = _timeline("npu+pim", mistral(None), [WINDOW] * 64)
    assert [s.args["phase"] for s in spans if s.resource == "pim"] == ["mha"]
    assert max(s.end_s for s in spans) == pytest.approx(layer_s, rel=1e-9)
    assert layer_s > short_layer_s and spans != short


def _lamina(workload):
    return system_model(load_system("lamina"), workload)


def test_lamina_pool_binds_its_kernel_at_each_requests_window() -> None:
    """Window 4096: requests over 1,000 and 32,768 tokens read 1,000 and 4,096 keys, so the pool's call costs what
    one over 1,000 and 4,096 does, each request its own keys; the layer's history (divide-and-conquer) is the keys
    read before the new token, 999 and 4,095."""
    model = _lamina(mistral())
    long, capped = (1000, 32768) * 4, (1000, WINDOW) * 4
    assert model.attention_cost(long) == model.attention_cost(capped)
    assert model.layer(long) == model.layer(capped)
    assert model.layer(long).history_s == model.attention_cost((999, WINDOW - 1) * 4).time_s


def test_lamina_pool_without_a_window_reads_every_key() -> None:
    """No window: each request's keys are all read (the pool's call walks each request's own), so contexts of
    1,000 and 32,768 cost more than under the 4,096-token window."""
    model = _lamina(mistral(None))
    long = (1000, 32768) * 4
    assert model.attention_cost(long).time_s > model.attention_cost((1000, WINDOW) * 4).time_s
    assert model.layer(long).history_s == model.attention_cost((999, 32767) * 4).time_s


def test_a_mapping_that_sets_the_parameter_itself_gives_it(cli, tmp_path) -> None:
    """A mapping's `set: {tile_kv: 256}` gives tile_kv as `set: {M0: 256}` does: it was refused as a test
    default, naming that very `set`."""
    text = (Path(__file__).resolve().parents[1] / "mappings" / "fusemax.yaml").read_text()
    assert "set: {M0: 256}" in text
    path = tmp_path / "m.yaml"
    path.write_text(text.replace("set: {M0: 256}", "set: {tile_kv: 256}"))
    assert "latency   0.00201314 s" in cli("run", "--mapping", str(path), "--workload", "bert-base").output
