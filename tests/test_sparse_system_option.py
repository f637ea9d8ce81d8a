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

import pytest
from click.testing import CliRunner

from archsim import library
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
                 else ks.duo_effective_context(workload, 32768, 0.5))
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
    assert duo["kind"] == "memory-pool" and duo["batch"] is None and duo["time_s"] is None
    (quest,) = records("--method", "quest", "-w", "llama3-70b", *GPU_ARGS, "--budget", "2048",
                       "--system", "lamina")["system_points"]
    assert (quest["requests"], quest["dense_requests"]) == ks.quest_pool_batch(capacity, workload, 32768, 2048)
    assert quest["requests"] == math.floor(capacity / QUEST_KEPT) == 36
    assert quest["requests"] <= quest["dense_requests"] == 38


def test_points_are_unchanged_and_out_writes_the_system_rows(tmp_path) -> None:
    """--system adds `system_points` beside the points, which stay as without it; --out writes them as a CSV."""
    args = ("--method", "quest", "-w", "llama3-8b", *GPU_ARGS, "--budget", "512,2048")
    plain = records(*args)
    assert set(plain) == {"points"}
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
