"""`archsim sparse --system S`: KV selection on a system's PIM devices and attention-offloading memory pool (issue
19's "PIM and offloading" effect), beside the GPU points. The rows are `archsim.systems.kv_selection`'s
`pim_attention_s` (at the context against the method's effective context, on the system's shard of the workload)
and `pool_batch` / `quest_pool_batch` (of the systems engine's `kv_capacity_bytes`).

Expected numbers: Lamina's pool (4 H20, 96 GiB less a 512 MiB activation reserve each) holding Llama-3-70B's KV
(80 layers x 8 KV heads x 128 x 2 x 2 B = 327680 B per token): 38 dense 32K requests (10 GiB each), 75 with half the
KV heads streaming (16576 tokens' worth each, tests/test_kv_selection.py); Quest keeps the whole cache and, in its
78 selecting layers (2 of 80 dense), each 16-token page's KMIN and KMAX: 2048 pages x 8 heads x 128 x 2 B x 2 =
8 MiB per layer.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim import library, systems
from archsim.cli import main
from archsim.systems import kv_selection as ks
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system

GPU_ARGS = ("--gpu", "h100-sxm5", "--context", "32K")
POOL_BYTES = 4 * (96 * 2**30 - 512 * 2**20)
PER_TOKEN = 80 * 8 * 128 * 2 * 2  # Llama-3-70B's K and V, all layers
QUEST_KEPT = PER_TOKEN * 32768 + 78 * 2048 * 8 * 128 * 2 * 2


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sparse", *args])
    return result.exit_code, result.output


def records(*args: str) -> dict:
    code, output = run(*args, "--json")
    assert code == 0, output
    return json.loads(output)


@pytest.mark.parametrize(("method", "extra"), [("quest", ("--budget", "2048")),
                                               ("duoattention", ("--retrieval-fraction", "0.5"))])
def test_pim_rows_are_kv_selection_on_the_systems_pim(method, extra) -> None:
    """NeuPIMs running Llama-3-8B (tp 4: 2 of its 8 KV heads a device): one layer's decode attention of 16
    requests on its bank-PIM at 32K, dense against the method's effective context, as `pim_attention_s` times them
    on the shard the systems engine runs; the method's is the shorter."""
    workload = library.load_workload_spec("llama3-8b")
    model = system_model(load_system("neupims"), workload)
    (device,) = [d for d in model.devices.values() if d.kind == "bank-pim"]
    effective = (ks.quest_mean_effective_context(workload, 32768, 2048) if method == "quest"
                 else ks.duo_device_effective_context(workload, 2, 32768, 0.5))
    # Quest, averaged over the layers: 2 dense layers at 32768, 30 at 2048 pages' bounds + the 2048-token budget
    assert effective == ((2 * 32768 + 30 * (2048 + 2048)) // 32 if method == "quest" else 16576)
    found = records("--method", method, "-w", "llama3-8b", *GPU_ARGS, *extra, "--system", "neupims",
                    "--batch", "16")
    (row,) = found["system_points"]
    assert row["device"] == device.name and row["kind"] == "bank-pim"
    assert (row["system"], row["model"], row["context"], row["batch"]) == ("neupims", "llama3-8b", 32768, 16)
    assert row["effective_context"] == effective
    assert row["time_s"] == ks.pim_attention_s(device, model.shard, [effective] * 16)
    assert row["dense_time_s"] == ks.pim_attention_s(device, model.shard, [32768] * 16)
    assert row["time_s"] < row["dense_time_s"]
    assert row["requests"] is None and row["dense_requests"] is None
    assert (row["budget"] == 2048) if method == "quest" else (row["retrieval_fraction"] == 0.5)


def test_logic_pim_rows_on_duplex() -> None:
    """Duplex's Logic-PIM is a roofline over its stacks' bandwidth, memory-bound here: Quest's time is dense's in
    proportion to the tokens read, 4096 of 32768 (within Q's and the output's bytes, 1 %)."""
    (row,) = records("--method", "quest", "-w", "llama3-8b", *GPU_ARGS, "--budget", "2048", "--system", "duplex",
                     "--batch", "16")["system_points"]
    assert row["kind"] == "logic-pim"
    assert row["time_s"] / row["dense_time_s"] == pytest.approx(5888 / 32768, rel=0.01)


def test_a_model_whose_every_layer_quest_keeps_dense_gains_nothing_on_a_pim(tmp_path) -> None:
    """Quest's first 2 layers are dense: a 2-layer model selects in none, so its PIM row reads the whole context,
    as its GPU rows gain nothing."""
    text = (library.find("workloads", "llama3-8b")).read_text().replace("layers: 32", "layers: 2")
    path = tmp_path / "l2.yaml"
    path.write_text(text)
    (row,) = records("--method", "quest", "-w", str(path), *GPU_ARGS, "--budget", "2048", "--system", "neupims",
                     "--batch", "16")["system_points"]
    assert row["effective_context"] == 32768 and row["time_s"] == row["dense_time_s"]


def test_pool_rows_are_the_requests_lamina_holds() -> None:
    """Lamina with Llama-3-70B at 32K: DuoAttention (half the heads streaming) holds 75 requests to dense's 38
    (`pool_batch`); Quest keeps more than dense (its page metadata), so no more requests: floor(pool / (10 GiB +
    78 x 8 MiB)) = 36 (36.006)."""
    workload = library.load_workload_spec("llama3-70b")
    capacity = system_model(load_system("lamina"), workload).kv_capacity_bytes
    assert capacity == pytest.approx(POOL_BYTES)
    (duo,) = records("--method", "duoattention", "-w", "llama3-70b", *GPU_ARGS, "--retrieval-fraction", "0.5",
                     "--system", "lamina")["system_points"]
    assert (duo["requests"], duo["dense_requests"]) == ks.pool_batch(capacity, workload, 32768, 0.5) == (75, 38)
    assert duo["kind"] == "memory-pool" and duo["batch"] is None  # its times: tests/test_sparse_pool_timing.py
    (quest,) = records("--method", "quest", "-w", "llama3-70b", *GPU_ARGS, "--budget", "2048",
                       "--system", "lamina")["system_points"]
    assert (quest["requests"], quest["dense_requests"]) == ks.quest_pool_batch(capacity, workload, 32768, 2048)
    assert quest["requests"] == math.floor(capacity / QUEST_KEPT) == 36
    assert quest["requests"] <= quest["dense_requests"] == 38


def test_points_are_unchanged_and_out_writes_the_system_rows(tmp_path) -> None:
    """--system adds `system_points` beside the points, which stay as without it; --out writes them as a CSV."""
    args = ("--method", "quest", "-w", "llama3-8b", *GPU_ARGS, "--budget", "512,2048")
    plain = records(*args)
    assert set(plain) == {"points", "calibration"}
    found = records(*args, "--system", "neupims", "--batch", "8", "--out", str(tmp_path))
    assert found["points"] == plain["points"]
    assert [r["budget"] for r in found["system_points"]] == [512, 2048]
    with open(tmp_path / "system_points.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["budget"]) for r in rows] == [512, 2048]
    assert float(rows[1]["time_s"]) == pytest.approx(found["system_points"][1]["time_s"], rel=1e-12)
    code, output = run(*args, "--system", "neupims", "--batch", "8")
    assert code == 0, output
    assert "bank-pim" in output and "speedup" in output


@pytest.mark.parametrize(("args", "option", "why"), [
    (("--method", "quest", "--budget", "2048", "--system", "gpu", "--batch", "4"), "--system", "no bank-PIM"),
    (("--method", "quest", "--budget", "2048", "--system", "neupims"), "--batch", "needs the requests"),
    (("--method", "quest", "--budget", "2048", "--batch", "4"), "--batch", "--system"),
    (("--method", "duoattention", "--retrieval-fraction", "0.5", "--system", "lamina", "--batch", "4"), "--batch",
     "not read"),
    (("--method", "tokenselect", "--system", "neupims", "--batch", "4"), "--system", "does not apply"),
    (("--method", "razorattention", "--retrieval-fraction", "0.2", "--batch", "4"), "--batch", "does not apply"),
    (("--method", "quest", "--budget", "2048", "--system", "no-such-system", "--batch", "4"), "--system", ""),
])
def test_bad_system_options_exit_2_naming_the_option(args, option, why) -> None:
    code, output = run("-w", "llama3-8b", "--gpu", "h100-sxm5", "--context", "4096", *args)
    assert code == 2, output
    assert option in output and why in output


NEUPIMS_KV_TOKENS = 909648  # NeuPIMs' KV room for Llama-3-8B (119.2 GB) over 131072 B a token


def test_a_batch_whose_kv_cache_the_system_cannot_hold_is_not_timed() -> None:
    """NeuPIMs holds 909,648 tokens of Llama-3-8B's KV: no request at 10M, 27 at 32K dense, 26 with Quest (its page
    metadata too). A side whose batch exceeds that has no time (null, n/a OOM in the table) and `fits` false, with
    the requests the room holds as its reason; the GPU rows say OOM alike."""
    assert NEUPIMS_KV_TOKENS // 32768 == 27
    quest = ("--method", "quest", "-w", "llama3-8b", "--gpu", "h100-sxm5", "--budget", "2048", "--system", "neupims")
    for context, batch, holds in (("10M", "1", "holds 0 requests of 10485760 tokens dense, 0 with Quest"),
                                  ("32K", "1000", "holds 27 requests of 32768 tokens dense, 26 with Quest")):
        (row,) = records(*quest, "--context", context, "--batch", batch)["system_points"]
        assert row["time_s"] is None and row["dense_time_s"] is None
        assert row["fits"] is False and row["dense_fits"] is False
        assert holds in row["reason"] and f"not {batch}" in row["reason"]
        code, output = run(*quest, "--context", context, "--batch", batch)
        assert code == 0, output
        assert "n/a OOM   n/a OOM      n/a" in output and holds in output
    (edge,) = records(*quest, "--context", "32K", "--batch", "27")["system_points"]
    assert (edge["fits"], edge["dense_fits"], edge["time_s"]) == (False, True, None) and edge["dense_time_s"] > 0
    (duo,) = records("--method", "duoattention", "-w", "llama3-8b", *GPU_ARGS, "--retrieval-fraction", "0.5",
                     "--system", "neupims", "--batch", "30")["system_points"]  # half the heads streaming: 53 fit
    assert (duo["fits"], duo["dense_fits"], duo["dense_time_s"]) == (True, False, None) and duo["time_s"] > 0


def test_a_batch_that_fits_is_timed_as_before() -> None:
    """26 requests at 32K fit NeuPIMs with Quest and dense: timed as `pim_attention_s`, `fits` true, no reason."""
    workload = library.load_workload_spec("llama3-8b")
    model = system_model(load_system("neupims"), workload)
    (device,) = [d for d in model.devices.values() if d.kind == "bank-pim"]
    (row,) = records("--method", "quest", "-w", "llama3-8b", *GPU_ARGS, "--budget", "2048", "--system", "neupims",
                     "--batch", "26")["system_points"]
    assert (row["fits"], row["dense_fits"], row["reason"]) == (True, True, None)
    assert row["time_s"] == ks.pim_attention_s(device, model.shard, [5888] * 26)
    assert row["dense_time_s"] == ks.pim_attention_s(device, model.shard, [32768] * 26)


def neupims_at_tp8(tmp_path) -> str:
    """NeuPIMs with 8 devices at tp 8: one of Llama-3-8B's 8 KV heads a device."""
    text = (Path(systems.__file__).parent / "system_presets" / "neupims.yaml").read_text()
    for old, new in (("count: 4 ", "count: 8 "), ("  tp: 4 ", "  tp: 8 ")):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "neupims-tp8.yaml"
    path.write_text(text)
    return str(path)


def test_duoattention_on_one_kv_head_a_device_waits_for_the_retrieval_heads(tmp_path) -> None:
    """At tp 8 each device holds one KV head; half of them (4 retrieval heads a layer) read the whole context and
    the layer waits for them: the busiest device reads 32768 tokens a head, as dense, so no speedup."""
    (row,) = records("--method", "duoattention", "-w", "llama3-8b", *GPU_ARGS, "--retrieval-fraction", "0.5",
                     "--system", neupims_at_tp8(tmp_path), "--batch", "16")["system_points"]
    assert row["effective_context"] == 32768
    assert row["time_s"] == row["dense_time_s"]


@pytest.mark.parametrize(("fraction", "effective"), [(0.5, (32768 + 384) // 2), (0.25, (32768 + 384) // 2)])
def test_duoattention_at_the_shipped_tp_binds_the_busiest_device(fraction, effective) -> None:
    """NeuPIMs at tp 4: 2 of Llama-3-8B's 8 KV heads a device, 4 devices holding different heads. Half the heads
    retrieval (4 a layer): one on each device, (32768 + 384) / 2 = 16576 a head, as the layer's mean (unchanged);
    a quarter (2 a layer): the busiest device still holds one, 16576, where the layer's mean is (2 x 32768 + 6 x
    384) / 8 = 8480."""
    assert ks.DUO_SINKS + ks.DUO_RECENT == 384
    workload = library.load_workload_spec("llama3-8b")
    (row,) = records("--method", "duoattention", "-w", "llama3-8b", *GPU_ARGS, "--retrieval-fraction", str(fraction),
                     "--system", "neupims", "--batch", "16")["system_points"]
    assert row["effective_context"] == effective
    assert ks.duo_device_effective_context(workload, 8, 32768, fraction) == (16576 if fraction == 0.5 else 8480)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_one_device_holding_every_kv_head_reads_the_layers_mean(fraction) -> None:
    """With all 8 KV heads on one device the busiest device is the whole layer: the tokens' worth of the KV bytes
    the layers keep (`duo_kv_bytes` of `retrieval_heads_per_layer`), averaged over the 32 layers."""
    workload = library.load_workload_spec("llama3-8b")
    retrieval = ks.retrieval_heads_per_layer(workload, fraction)
    for context in (16, 1000, 32768):
        assert (ks.duo_device_effective_context(workload, 8, context, fraction)
                == ks.effective_context(workload, ks.duo_kv_bytes(workload, context, retrieval) / 32))


def test_a_logic_pim_costs_each_distinct_context_once(monkeypatch) -> None:
    """A Logic-PIM's cost is the sum of its ops': 1005 requests at two contexts bind two ops, and take the time of
    their ops costed one by one."""
    workload = library.load_workload_spec("llama3-8b")
    model = system_model(load_system("duplex"), workload)
    (device,) = [d for d in model.devices.values() if d.kind == "logic-pim"]
    each = 1000 * ks.pim_attention_s(device, model.shard, [16]) + 5 * ks.pim_attention_s(device, model.shard, [32])
    binds = []
    real = ks.bind
    monkeypatch.setattr(ks, "bind", lambda *a, **k: binds.append(1) or real(*a, **k))
    assert ks.pim_attention_s(device, model.shard, [16] * 1000 + [32] * 5) == pytest.approx(each, rel=1e-12)
    assert len(binds) == 2
