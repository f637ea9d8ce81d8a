"""`archsim parallel` on cases a user will try (audit s31): LASP-1's exposed communication within its communication,
the chain's wait on other devices' compute its own column; an HGX H200 topology for `--gpu h200-sxm`; `--kernel`
messages that offer only kernels the run can use and say why the causal-variant name fails on a ring's blocks."""

from __future__ import annotations

import pytest

from archsim.commands.parallel_cmd import TEXT_COLUMNS

LASP = ("parallel", "--workload", "linear-llama3-1b")
LLAMA = ("parallel", "--workload", "llama3-8b")


@pytest.fixture(scope="module")
def lasp_points() -> list[dict]:
    import json

    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, [*LASP, "--scheme", "lasp1,lasp2", "--devices", "4,8,16", "--seq-len", "16K,1M",
                                       "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["points"]


def test_exposed_comm_is_within_the_comm_and_hidden_is_the_rest(lasp_points):
    """The audit's grid: lasp1 at P = 8, 16K printed 0.062 ms exposed of 0.022 ms of comm, none hidden. Exposed is a
    share of the transfers, hidden the rest, and the time is compute + exposed + wait."""
    for point in lasp_points:
        assert 0 <= point["exposed_comm_s"] <= point["comm_s"] * (1 + 1e-12)
        assert point["hidden_comm_s"] == pytest.approx(point["comm_s"] - point["exposed_comm_s"], rel=1e-9, abs=1e-15)
        assert point["latency_s"] == pytest.approx(point["compute_s"] + point["exposed_comm_s"] + point["wait_s"],
                                                   rel=1e-9)


def test_lasp1_chain_waits_on_other_devices_compute(lasp_points):
    """At P = 16 and 1M tokens the last device waits 2.5 ms for the state while the chain's 16 - 2 hops' products
    are computed on the devices before it; of that, no more than the 0.066 ms of transfers can be communication,
    so the wait is at least the idle time less the comm. LASP-2 (an all-gather, no chain) waits on no one."""
    by = {(p["scheme"], p["devices"], p["seq_len"]): p for p in lasp_points}
    chain = by["lasp1", 16, 1048576]
    idle_s = chain["latency_s"] - chain["compute_s"]
    assert idle_s > 1e-3
    assert chain["wait_s"] >= idle_s - chain["comm_s"] - 1e-12
    assert all(p["wait_s"] == 0 for p in lasp_points if p["scheme"] == "lasp2")


def test_wait_is_a_text_column():
    assert ("wait ms", "wait_s") in [(header, key) for header, key, _ in TEXT_COLUMNS]


def test_idle_splits_the_chain_by_what_runs_in_it():
    """A chain of 1 s of compute, a 0.5 s hop, 2 s of compute and a 0.5 s hop, the device ready at 2 s: the idle 2 s
    cover 1.5 s of the second compute (3.5 - 2) and all of the last hop (0.5 s)."""
    from archsim.systems.seqpar_schemes import chain_idle_s

    segments = [(1.0, False), (0.5, True), (2.0, False), (0.5, True)]
    assert chain_idle_s(segments, 2.0) == pytest.approx((0.5, 1.5))
    assert chain_idle_s(segments, 5.0) == (0.0, 0.0)  # ready after the chain: no idle


def test_h200_has_a_library_topology(cli, cli_json):
    """`--gpu h200-sxm` alone names the library topology of H200s, which runs: 8 per node over NVLink 4, the NICs
    beyond (HGX H200: NVLink 4 at 900 GB/s bidirectional, as the H100 SXM5's; ConnectX-7 400 Gb/s per GPU)."""
    refused = cli(*LLAMA, "--scheme", "ring", "--devices", "4", "--seq-len", "16K", "--gpu", "h200-sxm", expect=2)
    assert "--topology hgx-h200" in refused.output and "no library topology" not in refused.output
    points = cli_json(*LLAMA, "--scheme", "ring", "--devices", "8,16", "--seq-len", "16K",
                      "--topology", "hgx-h200")["points"]
    assert [(p["gpu"], p["topology"], p["link"]) for p in points] == [
        ("h200-sxm", "hgx-h200", "nvlink4-h100"), ("h200-sxm", "hgx-h200", "ib-ndr-400g")]


def test_unknown_kernel_lists_only_the_prefill_kernels(cli):
    """A prefill's softmax schemes take a softmax kernel with a prefill path: not the decode kernels
    (Flash-Decoding, v2.0.9) nor LASP's linear one; the causal-variant name only for a causal run."""
    causal = cli(*LLAMA, "--scheme", "ring", "--devices", "4", "--seq-len", "16K", "--kernel", "nope", expect=2).output
    offered = causal.split("expected one of ", 1)[1]
    assert "FlashAttention-2," in offered and "FlashAttention-2 (causal)" in offered
    for kernel in ("Flash-Decoding", "FlashAttention v2.0.9", "Lightning Attention-2"):
        assert kernel not in offered
    full = cli(*LLAMA, "--scheme", "ring", "--devices", "4", "--seq-len", "16K", "--kernel", "nope", "--no-causal",
               expect=2).output
    assert "FlashAttention-2 (causal)" not in full and "FlashAttention-2" in full


def test_causal_kernel_name_on_a_ring_says_its_blocks_are_not_causal(cli_json):
    """A causal ring at P = 4 runs its earlier devices' blocks as non-causal calls, which the causal-variant name
    cannot time: the row says so and names FlashAttention-2 (P = 1, one causal call, runs)."""
    points = cli_json(*LLAMA, "--scheme", "ring", "--devices", "1,4", "--seq-len", "16K", "--kernel",
                      "FlashAttention-2 (causal)")["points"]
    assert points[0]["feasible"] and not points[1]["feasible"]
    reason = points[1]["reason"]
    assert "the blocks off the diagonal of a causal ring over 4 devices are non-causal calls" in reason
    assert "name FlashAttention-2, which runs both" in reason


def test_causal_kernel_name_refusal_in_the_gpu_model_names_no_scheme():
    """The GPU model refuses a non-causal call of the causal-variant name whoever makes it (a one-GPU sweep with
    causal: false makes one too): its reason names the kernel that runs both and no sequence-parallel scheme,
    whose context `archsim parallel` adds (the test above)."""
    from archsim.gpu.load import load_gpu
    from archsim.model.gpu import AttentionCase
    from archsim.model.gpu_kernels import plans

    reason = plans("FlashAttention-2 (causal)", AttentionCase("fwd", 1, 8, 8, 128, 1024, False, "bf16"),
                   load_gpu("h100-sxm5"))
    assert reason == ("FlashAttention-2 (causal) names the kernel run with its causal mask, got a non-causal call: "
                      "name FlashAttention-2, which runs both")
