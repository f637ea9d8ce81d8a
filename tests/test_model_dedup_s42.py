"""One copy each (dead-code and duplication audit, session 42): the varlen plans that the serving GPU device and
`predict_varlen` both take, with the check of the prompt lengths; K and V bytes of an `AttentionCase`; the
ceiling division of the hardware models; the collectives of p-1 slice steps."""

from __future__ import annotations

import numpy as np
import pytest

from archsim.arch.spec import ceil_div
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_workload_spec
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict_varlen, varlen_plans
from archsim.systems.collectives import all_gather_s, all_to_all_s, reduce_scatter_s
from archsim.systems.links import load_link
from archsim.systems.models import system_model
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system

FA2 = "FlashAttention-2"


def _case(batch: int, seqlen: int, direction: str = "fwd") -> AttentionCase:
    # Llama-3-8B at TP 4 on vllm-h100: 8 query heads and 2 KV heads per GPU, head_dim 128, fp16
    return AttentionCase(direction, batch, 8, 2, 128, seqlen, True, "fp16")


@pytest.mark.parametrize(("seqlens", "case"), [([4, 4], _case(1, 9)), ([4, 0, 5], _case(1, 9)), ([], _case(1, 9)),
                                               ([9], _case(2, 9)), ([4.5, 4.5], _case(1, 9))])
def test_varlen_plans_refuse_lengths_that_are_not_the_packed_case(seqlens, case) -> None:
    """The serving GPU device takes its varlen plans from `varlen_plans`, not `predict_varlen`: the check of the
    lengths is there, so the device's path has it too (before, only `predict_varlen` checked them)."""
    with pytest.raises(SpecError) as error:
        varlen_plans(FA2, case, seqlens, load_gpu("h100-sxm5"))
    assert error.value.where == "seqlens", str(error.value)


def test_a_device_varlen_call_is_predict_varlen() -> None:
    """The serving device's price of a layer's prompts is `predict_varlen`'s call over their lengths (vllm-h100
    runs FlashAttention-2 with the calibrated fa2 parameters, the whole DRAM its room at these sizes)."""
    model = system_model(load_system("vllm-h100"), load_workload_spec("llama3-8b"))
    seqlens = [1, 300, 77, 2048]
    prompts = [model.attention("prefill", n) for n in seqlens]
    device_s = device_of(model, prompts[0]).cost(prompts).time_s
    gpu, params = load_gpu("h100-sxm5"), load_calibration().family_params("fa2")
    expected_s = predict_varlen(FA2, _case(1, sum(seqlens)), seqlens, gpu, params).time_s
    assert device_s == pytest.approx(expected_s, rel=1e-12)


def test_kv_bytes_are_k_and_v_once_and_the_operands_add_q_and_o() -> None:
    """Hand count: batch 2, 2 KV heads, 1024 keys of 128 fp16 words: K and V are 2 x 2 x 2 x 1024 x 128 x 2 B =
    2,097,152 B whatever the direction. A forward adds Q and O, 2 x 2 x 8 x 1024 x 128 x 2 B = 8,388,608 B; a
    backward counts every operand's gradient too (twice); a decode has one query row per sequence,
    2 x 2 x 8 x 128 x 2 B = 8,192 B of Q and O."""
    for direction in ("fwd", "bwd", "decode"):
        assert _case(2, 1024, direction).kv_bytes() == 2_097_152
    assert _case(2, 1024).operand_bytes() == 2_097_152 + 8_388_608
    assert _case(2, 1024, "bwd").operand_bytes() == 2 * (2_097_152 + 8_388_608)
    assert _case(2, 1024, "decode").operand_bytes() == 2_097_152 + 8_192


def test_ceil_div_counts_the_whole_tiles_that_cover_a_size() -> None:
    assert [ceil_div(a, 128) for a in (1, 127, 128, 129, 256)] == [1, 1, 1, 2, 2]
    assert ceil_div(2**60 + 1, 2) == 2**59 + 1  # exact beyond a float's 53 bits
    assert ceil_div(np.array([0, 5, 8]), 4).tolist() == [0, 2, 2]


@pytest.mark.parametrize("collective", [all_gather_s, reduce_scatter_s, all_to_all_s])
def test_each_slice_collective_is_p_minus_1_steps_and_names_itself(collective) -> None:
    """8 devices, 1 GiB: 7 steps of a 128 MiB slice, each alpha + slice / beta on the link; a bad argument's error
    names the public function, not the shared helper."""
    link = load_link("nvlink4-h100")
    assert collective(2**30, 8, link) == 7 * link.transfer_s(2**27)
    with pytest.raises(SpecError) as error:
        collective(-1, 8, link)
    assert error.value.where == f"{collective.__name__}.message_bytes"
