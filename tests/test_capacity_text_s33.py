"""A device's capacity, or its room, in a message is decimal GB with its binary size beside where it is a whole one
(the README: memory sizes are binary, an "80 GB" GPU holds 80 GiB), and a room with a reserve taken off names the
memory and the reserve once: "which has 33.8 GB (31.5 GiB) of room, 32 GiB less its 512 MiB activation buffer"."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.outputs import binary_size_text, capacity_text
from archsim.systems.iteration import Batch
from archsim.systems.neupims import system
from archsim.systems.sparse_prefill import kv_host_s
from archsim.systems.step import UnrunnableOp

GIB, MIB = 2**30, 2**20


def test_a_capacity_is_decimal_gb_with_its_whole_binary_size_beside() -> None:
    # 80 GiB = 85,899,345,920 B; 32 GiB - 512 MiB = 31.5 GiB = 33,822,867,456 B; 38.9e9 B is no whole binary size
    assert capacity_text(80 * GIB) == "85.9 GB (80 GiB)"
    assert capacity_text(32 * GIB - 512 * MIB) == "33.8 GB (31.5 GiB)"
    assert capacity_text(38.9e9) == "38.9 GB"
    assert capacity_text(5000) == "5000 B"  # not 0.0 GB
    assert binary_size_text(512 * MIB) == "512 MiB"
    assert binary_size_text(0.9 * 80 * GIB) == "72 GiB"  # vLLM's 0.9 of an H100: 72 GiB, exact in floats
    assert binary_size_text(GIB + 1) == ""


def test_the_npu_room_for_weights_names_its_hbm_and_activation_buffer() -> None:
    """NeuPIMs' NPU: 32 channels of 1 GiB (pim.md §1.2) less the 512 MiB activation buffer = 31.5 GiB = 33.8 GB;
    Llama-3-70B's 141 GB of FP16 weights over TP4 are 35.3 GB a device."""
    with pytest.raises(SpecError) as info:
        system("neupims", "llama3-70b", tp=4, pp=1)
    assert ("puts 35.3 GB of weights on each npu device, which has 33.8 GB (31.5 GiB) of room, 32 GiB less its "
            "512 MiB activation buffer: raise tp or pp for it") in info.value.message


def test_the_gpu_room_for_weights_names_its_dram_and_activation_reserve() -> None:
    """The NeuPIMs GPU baseline's A100 has 40 GiB; the engine keeps 512 MiB for activations: 39.5 GiB = 42.4 GB
    of room; at memory_utilization 0.5, 20 GiB less 512 MiB = 19.5 GiB = 20.9 GB, less than GPT-3 13B's 26.2 GB of
    FP16 weights at tp 1."""
    with pytest.raises(SpecError) as info:
        system("gpu", "llama3-70b", tp=2, pp=1)
    assert ("puts 70.6 GB of weights on each gpu device, which has 42.4 GB (39.5 GiB) of room, 40 GiB less its "
            "512 MiB activation reserve: raise tp or pp for it") in info.value.message
    with pytest.raises(SpecError) as info:
        system("gpu", "gpt3-13b", changes={"devices.gpu.memory_utilization": 0.5}, tp=1, pp=1)
    assert ("which has 20.9 GB (19.5 GiB) of room at memory_utilization 0.5, 20 GiB less its 512 MiB activation "
            "reserve: expected at least") in info.value.message


def test_logic_pim_stacks_too_small_for_the_weights_say_their_room_in_gb() -> None:
    """Duplex's xPU memory is its Logic-PIM's stacks: 5 x 8 GiB = 40 GiB (42.9 GB) hold less than the H100's
    80 GiB, and beside the engine's 512 MiB leave 39.5 GiB (42.4 GB) of room, less than Llama3-70B's weights at
    tp 1 (141.1 GB)."""
    with pytest.raises(SpecError) as info:
        system("duplex", "llama3-70b", changes={"devices.lp.capacity_bytes": 8 * GIB}, tp=1, pp=1)
    message = info.value.message
    assert "hold 42.9 GB (40 GiB) (count x capacity_bytes), 42.4 GB (39.5 GiB) of room beside the engine's 512 MiB " \
           "activation reserve: less than the 141.1 GB of" in message
    assert " B " not in message


def test_a_prompt_beyond_the_engines_share_names_it_in_gb_and_gib() -> None:
    """vllm-h100 at memory_utilization 0.9 holds 72 GiB (77.3 GB) of an H100's 80 GiB."""
    model = system("vllm-h100", "llama3-8b", changes={"devices.gpu.count": 1, "parallelism.tp": 1,
                                                      "parallelism.by_workload": {}})
    with pytest.raises(UnrunnableOp, match=r"exceeds the 77\.3 GB \(72 GiB\) of it the serving engine holds"):
        model.iteration(Batch((300_000,), ()))


def test_a_context_parallel_prompt_beyond_the_engines_share_names_it_in_gb_and_gib() -> None:
    """context-parallel-h100 at memory_utilization 0.5: half an H100's 80 GiB is 40 GiB (42.9 GB)."""
    model = system("context-parallel-h100", "llama3-70b", changes={"devices.gpu.memory_utilization": 0.5})
    with pytest.raises(UnrunnableOp, match=r"exceeds the 42\.9 GB \(40 GiB\) of it the serving engine holds "
                                           r"\(memory_utilization 0\.5\)"):
        model.iteration(Batch((600_000,), ()))


def test_a_prefill_needing_a_host_link_names_the_gpus_memory_in_gb_and_gib() -> None:
    """MI300X: 192 GiB = 206.2 GB, less than Llama-3-70B's 141 GB of weights and 1M tokens' KV (343.6 GB)."""
    gpu = replace(load_gpu("mi300x"), host_link=None)
    with pytest.raises(SpecError, match=r"exceed its 206\.2 GB \(192 GiB\), so the prefill keeps the KV cache"):
        kv_host_s(library.load_workload_spec("llama3-70b"), gpu, 1 << 20)
