"""A `fwd+bwd` layer pays the host gap before its backward (`autograd_s`) once, not once per block
(`archsim.systems.seqpar._timing`, `seqpar_compute.DeviceCompute.autograd_gap_s`): a ring's blocks of one layer run
inside one autograd backward. Before, each block paid it, so at about 1K tokens a device a causal ring's compute
rose with P (Llama-3-8B at 8K on H100s: 2.48 ms on 8, 3.02 ms on 16)."""

from __future__ import annotations

import math

import pytest

from archsim import library
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology

HGX = load_topology("hgx-h100")
LLAMA = library.load_workload_spec("llama3-8b")
KERNEL = "FlashAttention-2"


def _ring(devices: int, seq_len: int, scheme: str = "ring") -> ParallelSpec:
    """A training step without checkpointing: the gap alone, no recomputed forward beside it."""
    return ParallelSpec(scheme, devices, LLAMA, seq_len, HGX.gpu, HGX, direction="fwd+bwd", checkpointing="none")


def test_a_causal_ring_computes_less_on_more_devices_when_its_blocks_are_short() -> None:
    """8K tokens: 1K and 512 tokens a device, each block's forward shorter than the gap."""
    for scheme in ("ring", "zigzag"):
        eight, sixteen = (parallel_time(_ring(p, 8192, scheme), reference=False) for p in (8, 16))
        assert sixteen.compute_s < eight.compute_s, scheme


def test_one_device_pays_the_gpu_models_one_call_gap_included() -> None:
    """P = 1: the ring is one causal call, timed as the GPU model times a timed fwd+bwd call, whose forward
    (1K tokens) is shorter than the gap, so the gap is in both."""
    params = calibrated_gpu_device(HGX.gpu, KERNEL).kernel_params
    case = AttentionCase("fwd+bwd", 1, 32, 8, 128, 1024, True, "bf16")
    whole = predict(KERNEL, case, HGX.gpu, params).time_s
    forward = predict(KERNEL, AttentionCase("fwd", 1, 32, 8, 128, 1024, True, "bf16"), HGX.gpu, params).time_s
    assert forward < params["autograd_s"]
    assert math.isclose(parallel_time(_ring(1, 1024), reference=False).time_s, whole, rel_tol=1e-12)


@pytest.mark.parametrize("devices, seq_len", [(8, 8192), (2, 1024)])
def test_the_gap_is_paid_once_per_layer(devices: int, seq_len: int) -> None:
    """Causal ring: the last device's compute is its diagonal block and P - 1 full blocks, each the kernel's
    fwd+bwd call without the gap, plus one gap less the layer's forward (the `fwd` run of the same ring), when that
    forward is shorter (at 1K tokens on 2 devices; at 8K on 8 the forward's 0.44 ms hides it)."""
    params = calibrated_gpu_device(HGX.gpu, KERNEL).kernel_params
    gap_free = {**params, "autograd_s": 0.0}
    c = seq_len // devices

    def block_s(causal: bool) -> float:
        return predict(KERNEL, AttentionCase("fwd+bwd", 1, 32, 8, 128, c, causal, "bf16"), HGX.gpu,
                       gap_free).time_s

    forward = parallel_time(ParallelSpec("ring", devices, LLAMA, seq_len, HGX.gpu, HGX, direction="fwd"),
                            reference=False)
    gap_s = max(0.0, params["autograd_s"] - forward.time_s)
    assert (gap_s > 0) == (devices == 2)
    expected = block_s(True) + (devices - 1) * block_s(False) + gap_s
    assert math.isclose(parallel_time(_ring(devices, seq_len), reference=False).compute_s, expected, rel_tol=1e-9)
