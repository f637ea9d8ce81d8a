"""A GPU device runs a batch's MLA decode attention ops as one fused call (`archsim.systems.gpu_device`): one launch
and the batch's bytes and FLOPs on the roofline, as FlashMLA and FlashInfer's MLA decode run a whole batch, not a
launch of each absorbed GEMM per request (the audit's DeepSeek-V3 on a Lamina pool of H20s: 26 us a request, 1677 us
at batch 64).

Hand sizes of one memory device's op, DeepSeek-V3's MLA (128 heads over 8 pool devices: 16 heads, head_dim 128,
latent 512, rope 64, bf16) at 1446 keys:
- per request: C 1446 x 512 x 2 = 1,480,704 B, KR 1446 x 64 x 2 = 185,088 B, Q 16 x 128 x 2 = 4,096 B, QR 16 x 64 x 2
  = 2,048 B, AV 4,096 B: 1,676,032 B; MACs QL and AV 16 x 128 x 512 = 1,048,576 each, S1 and AVL 16 x 1446 x 512 =
  11,845,632 each, S2 16 x 1446 x 64 = 1,480,704: 27,269,120, so 54,538,240 tensor FLOPs;
- once a call: the absorbed weights WUK and WUV, 16 x 128 x 512 x 2 = 2,097,152 B each.
"""

from __future__ import annotations

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.gpu_device import ROOFLINE, calibrated_gpu_device
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system, with_fields

KEYS = 1446
REQUEST_BYTES = 1_676_032
WEIGHT_BYTES = 2 * 2_097_152
REQUEST_FLOPS = 2 * 27_269_120
H20_BYTES_PER_S, H20_BF16_FLOPS_PER_S = 4.0e12, 148e12  # the h20 preset (Lamina Table 1)
NODE_LINK = {"name": "nvl", "description": "a TP group over 32 GPUs", "source": "test", "latency_s": 8.0e-7,
             "bytes_per_s_per_direction": 450.0e9}


@pytest.fixture(scope="module")
def lamina_mla():
    """DeepSeek-V3 (MLA) on Lamina DOP (32, 8): 32 H100s hold the weights, 8 H20s the latent cache, 16 heads each."""
    fields = {"devices.compute.count": 32, "parallelism.tp": 32, "links.tp": NODE_LINK,
              "devices.memory.count": 8, "parallelism.attention_pool": 8}
    return system_model(with_fields(load_system("lamina"), fields), library.load_workload_spec("deepseek-v3-mla"))


def _bytes(requests: int, keys: int = KEYS) -> float:
    per_request = REQUEST_BYTES + (keys - KEYS) * (512 + 64) * 2
    return requests * per_request + WEIGHT_BYTES


def _flops(requests: int, keys: int = KEYS) -> float:
    return requests * (REQUEST_FLOPS + (keys - KEYS) * 2 * 16 * (512 + 64 + 512))


def test_the_hand_sizes_are_the_ops(lamina_mla) -> None:
    op = lamina_mla.pool.attention("decode", KEYS)
    assert op.cascade == "attention-mla-decode"
    assert op.bytes == REQUEST_BYTES + WEIGHT_BYTES and 2 * op.ops["mac"] == REQUEST_FLOPS


def test_a_batch_is_one_launch_and_its_bytes_not_a_launch_per_request(lamina_mla) -> None:
    """Batch 1 is the launch (4 us, the eager family's `launch_s`) and 5.9 MB at 0.9 of 4 TB/s (1.6 us); batch 2 adds
    1.7 MB (0.5 us), not a second call; batch 64 is 64 x 1.68 MB + 4.2 MB = 111.5 MB (31 us at 0.9 of 4 TB/s) or
    3.49 GFLOP (33.7 us at 0.7 of 148 TFLOPS), about 38 us: far below 64 x batch 1 (the per-request costing's 1677
    us), and above the first-principles bound max(bytes / 4 TB/s, FLOPs / 148 TFLOPS) = 27.9 us."""
    device = lamina_mla.pool_device
    op = lamina_mla.pool.attention("decode", KEYS)
    time_s = {n: device.cost([op] * n).time_s for n in (1, 2, 11, 64)}
    assert time_s[1] == pytest.approx(4e-6 + _bytes(1) / (0.9 * H20_BYTES_PER_S), rel=0.02)
    assert time_s[2] - time_s[1] == pytest.approx(REQUEST_BYTES / (0.9 * H20_BYTES_PER_S), rel=0.02)
    bound_s = max(_bytes(64) / H20_BYTES_PER_S, _flops(64) / H20_BF16_FLOPS_PER_S)
    assert bound_s == pytest.approx(27.9e-6, rel=0.01)
    assert bound_s < time_s[64] <= 4e-6 + bound_s / 0.7
    assert time_s[64] < 64 * time_s[1] / 8 and time_s[11] < 2 * time_s[1]


def test_the_call_grows_with_the_context_as_its_bytes(lamina_mla) -> None:
    """11 requests at 1446 keys: 22.6 MB at 0.9 of 4 TB/s, 6.3 us, over the launch: 10.3 us. At 8192 keys each
    request reads 6746 x 1152 B more (108.1 MB) and computes 6746 x 2 x 16 x 1088 FLOPs more (3.18 GFLOP, 30.7 us at
    0.7 of 148 TFLOPS, above the bytes' 30.0 us): 34.7 us. The per-request costing gave 288 and 340 us."""
    device = lamina_mla.pool_device
    short, long = (device.cost([lamina_mla.pool.attention("decode", keys)] * 11).time_s for keys in (KEYS, 8192))
    assert short == pytest.approx(4e-6 + _bytes(11) / (0.9 * H20_BYTES_PER_S), rel=0.02)
    assert long == pytest.approx(4e-6 + _flops(11, 8192) / (0.7 * H20_BF16_FLOPS_PER_S), rel=0.02)
    assert _flops(11, 8192) / (0.7 * H20_BF16_FLOPS_PER_S) > _bytes(11, 8192) / (0.9 * H20_BYTES_PER_S)


def test_roofline_timing_is_the_first_principles_bound(lamina_mla) -> None:
    """With `roofline` timing the call is max(bytes / bandwidth, FLOPs / peak), the weights read once a call, no
    launch; a ragged batch counts each request's own keys. The busy time is the FLOPs at the peak."""
    device = calibrated_gpu_device(load_gpu("h20"), "Flash-Decoding (16-row tiles)", timing=ROOFLINE)
    ops = [lamina_mla.pool.attention("decode", keys) for keys in (KEYS, KEYS, 4096, 512)]
    keys = sum(o.binding.params["seq_len"] for o in ops)
    dram = 4 * (REQUEST_BYTES - KEYS * 1152) + keys * 1152 + WEIGHT_BYTES
    flops = 4 * (REQUEST_FLOPS - KEYS * 2 * 16 * 1088) + keys * 2 * 16 * 1088
    cost = device.cost(ops)
    assert cost.time_s == pytest.approx(max(dram / H20_BYTES_PER_S, flops / H20_BF16_FLOPS_PER_S), rel=1e-9)
    assert cost.busy_s[device.name] == pytest.approx(flops / H20_BF16_FLOPS_PER_S, rel=1e-9)


def test_decode_ops_and_a_list_cost_the_same_and_other_ops_apart(lamina_mla) -> None:
    """A system's `DecodeOps` and a plain list of the same ops are one call alike; an op of another cascade in the
    list is costed on its own beside the call."""
    pool = lamina_mla.pool
    contexts = [KEYS, 300, 8192, KEYS]
    decode_ops = pool.decode_ops(contexts)
    device = lamina_mla.pool_device
    listed = device.cost(list(decode_ops))
    assert device.cost(decode_ops).time_s == pytest.approx(listed.time_s, rel=1e-12)
    norm = next(op for op in lamina_mla.compute.ops("decode", 4, 1) if op.name == "attn_norm")
    assert device.cost([norm, *decode_ops]).time_s == pytest.approx(device.cost([norm]).time_s + listed.time_s,
                                                                    rel=1e-12)
