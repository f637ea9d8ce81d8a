"""`archsim parallel` refusals an audit found blaming an option the user did not give.

1. `--system` with a file whose tp x cp GPUs span nodes but which has no `links.cp` named `--devices` (not given:
   the file's cp set it); it now names the file's `links.cp`, the line `archsim simulate` prints for the same file.
2. A point that does not fit in memory was exit 2 naming `--kernel` or `--seq-len` when the GPU model refused one of
   its kernel calls for DRAM before the memory model ran; it is now the memory-infeasible row (README "Multi-device
   attention": the memory, the weights, the capacity and the largest context that fits), and a DRAM refusal where
   the memory is not modelled is an infeasible row naming the call (its sequences and tokens on the GPU).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.library import load_workload_spec
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

LLAMA8 = load_workload_spec("llama3-8b")
HGX = load_topology("hgx-h100")
H100_DRAM_BYTES = 80 * 2**30
LLAMA8_WEIGHTS_BYTES = 16.06e9  # 8.03B parameters in bf16
# Llama-3-8B's KV cache per token: 32 layers x (K, V) x 8 KV heads x 128 x 2 B
KV_BYTES_PER_TOKEN = 32 * 2 * 8 * 128 * 2


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


# --- 1. a system file without links.cp ---------------------------------------------------------------------------


def test_a_system_without_its_cp_link_is_blamed_on_the_file_as_simulate_blames_it(tmp_path: Path) -> None:
    """context-parallel-h100 runs tp 8 x cp 2 = 16 GPUs on nodes of 8: the nodes talk over links.cp, which the
    derived file removes."""
    path = tmp_path / "cp-nolink.yaml"
    path.write_text("base: context-parallel-h100\nname: x\nlinks: {cp: null}\n")
    expected = f"error: {path}: links.cp: missing: tp x cp = 8 x 2 GPUs span nodes of 8, which talk over it"
    parallel = _run("parallel", "--system", str(path), "--workload", "llama3-8b", "--seq-len", "32K")
    simulate = _run("simulate", "--system", str(path), "--workload", "llama3-8b", "--rate", "1", "--requests", "3")
    assert (parallel.exit_code, parallel.output.strip()) == (2, expected)
    assert (simulate.exit_code, simulate.output.strip()) == (2, expected)


def test_a_tp_that_fits_the_cp_group_in_a_node_runs(tmp_path: Path) -> None:
    """--tp 4 x the file's cp 2 = 8 GPUs, one node: no cp link is needed, the point is timed."""
    path = tmp_path / "cp-nolink.yaml"
    path.write_text("base: context-parallel-h100\nname: x\nlinks: {cp: null}\n")
    result = _run("parallel", "--system", str(path), "--workload", "llama3-8b", "--seq-len", "32K", "--tp", "4",
                  "--json")
    assert result.exit_code == 0, result.output
    (point,) = json.loads(result.output)["points"]
    assert point["feasible"] and (point["devices"], point["tp"]) == (2, 4)


# --- 2. memory refusals are infeasible rows ------------------------------------------------------------------------


def test_a_decode_beyond_memory_is_the_memory_row_with_the_largest_context() -> None:
    """DistAttention decode of 4096 sequences of 32K tokens on 4 H100s: each device caches 8192 tokens of each,
    4096 x 8192 x 131072 B = 4398.0 GB, plus 16.06 GB of weights: 4414.1 GB. The largest context: the 69.84 GB the
    weights leave hold 69.84e9 / (4096 x 131072 B) = 130 tokens a device, N / 4: 520 tokens. The command exited 2
    naming --seq-len (Flash-Decoding's refusal of the call, 137.5 GB)."""
    result = _run("parallel", "--scheme", "distattention", "--devices", "4", "--workload", "llama3-8b",
                  "--seq-len", "32K", "--direction", "decode", "--batch", "4096")
    assert result.exit_code == 0, result.output
    kv_bytes = 4096 * 8192 * KV_BYTES_PER_TOKEN
    assert kv_bytes == pytest.approx(4398.0e9, rel=1e-4)
    fits_tokens = 4 * int((H100_DRAM_BYTES - LLAMA8_WEIGHTS_BYTES) // (4096 * KV_BYTES_PER_TOKEN))
    assert fits_tokens == 520
    assert result.output.splitlines()[-1].endswith(
        "infeasible: memory per device 4414.1 GB (16.1 GB of weights) exceeds h100-sxm5's 85.9 GB (80 GiB); the "
        f"largest context that fits is {fits_tokens} tokens")


def test_a_grid_row_beyond_memory_names_the_memory_not_the_seq_len() -> None:
    """The same decode over 1K and 32K: both rows are memory rows (the 32K one read
    "--seq-len: Flash-Decoding cannot read ..." with no weights and no largest context)."""
    result = _run("parallel", "--scheme", "distattention", "--devices", "4", "--workload", "llama3-8b",
                  "--seq-len", "1K,32K", "--direction", "decode", "--batch", "4096", "--json")
    assert result.exit_code == 0, result.output
    reasons = [point["reason"] for point in json.loads(result.output)["points"]]
    assert all(reason.startswith("memory per device ") and reason.endswith("the largest context that fits is 520 "
                                                                           "tokens") for reason in reasons), reasons


def _small_gpu_spec(**changes) -> ParallelSpec:
    """Ring over 4 devices of a 2 GB H100, 16 sequences of 32K tokens: each device's 8192 x 8192 call holds Q, K, V
    and O of 16 x 8192 x 128 x 2 B x (2 x 32 + 2 x 8) heads = 2.7 GB, beyond the 2 GB the GPU model allows it."""
    gpu = replace(HGX.gpu, dram_bytes=2e9)
    return ParallelSpec("ring", 4, LLAMA8, 32 * 1024, gpu, HGX, batch=16, **changes)


def test_a_prefill_whose_kernel_call_exceeds_dram_is_the_memory_infeasible_point() -> None:
    """The kernel's refusal (a SpecError naming kernel) came before the memory model: the point is infeasible by its
    memory per device, whose weights alone (16.06 GB) exceed the 2 GB."""
    call_bytes = 16 * 8192 * 128 * 2 * (2 * 32 + 2 * 8)
    assert call_bytes > 2e9
    result = parallel_time(_small_gpu_spec())
    assert not result.feasible and result.max_context_tokens == 0
    assert result.memory_bytes > LLAMA8_WEIGHTS_BYTES
    assert result.reason.startswith("memory per device ")
    assert result.reason.endswith("(16.1 GB of weights) exceeds h100-sxm5's 2.0 GB; no context fits")


def test_a_dram_refusal_where_memory_is_not_modelled_is_an_infeasible_point_naming_the_call() -> None:
    """Training at tp 2 has no memory model (NaN): the GPU model's refusal of a device's call is the reason, the
    sequences and tokens on that GPU (16 query and 4 KV heads per rank, with their gradients: 16 x 8192 x 128 x
    2 B x (2 x 16 + 2 x 4) x 2, the same 2.7 GB, and the grouped-query backward's dK and dV per query head, 16 x
    8192 x 128 x 2 B x 2 x 16 = 1.1 GB), not a SpecError blaming --kernel."""
    result = parallel_time(_small_gpu_spec(tp=2, direction="fwd+bwd"))
    assert not result.feasible and result.time_s > 0
    assert result.reason == ("FlashAttention-2 cannot run 16 sequences of 8192 x 8192 tokens on h100-sxm5: fa2 holds "
                             "at once its Q, K, V and O and their gradients (2.7 GB) and dK, dV per query head "
                             "(dk_expanded, dv_expanded) (1.1 GB): 3.8 GB, beyond h100-sxm5's 2.0 GB of DRAM")
