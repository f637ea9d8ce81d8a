"""One source for quantities the systems read in two places: the memory a Logic-PIM's stacks leave the weight holder
(its activation reserve kept when the stacks bind), and the bytes an fp8 FFN writes on a GPU (at the activations'
word size)."""

from dataclasses import replace

import pytest

from archsim import library
from archsim.arch.logic_pim import LogicPIMSpec
from archsim.gpu.load import load_gpu
from archsim.systems.collectives import all_reduce_s
from archsim.systems.gpu_device import ACTIVATION_RESERVE_BYTES, calibrated_gpu_device
from archsim.systems.logic_pim_device import LogicPimDevice
from archsim.systems.models import system_model
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_messages import allreduce_s
from archsim.systems.system_spec import load_system, with_fields

GIB = 2**30


@pytest.mark.parametrize("stack_gib, engine_gib", [(16.0, 80.0), (12.0, 60.0)])
def test_stacks_keep_the_activation_reserve(stack_gib: float, engine_gib: float) -> None:
    """Duplex's five stacks hold 80 GiB (the xPU's DRAM binds) or 60 GiB (the stacks bind): either way the engine
    holds the smaller memory and the KV cache and weights leave the 512 MiB activation reserve beside them."""
    workload = library.load_workload_spec("mixtral-8x7b")
    system = with_fields(load_system("duplex"), {"devices.lp.capacity_bytes": stack_gib * GIB})
    model = system_model(system, workload)
    assert model.engine_bytes == engine_gib * GIB
    assert model.memory_bytes_per_device == engine_gib * GIB - ACTIVATION_RESERVE_BYTES
    kv_per_device = model.kv_capacity_bytes / (model.parallelism.tp * model.parallelism.ep)
    assert model.engine_bytes - model.weight_bytes_per_device - kv_per_device == pytest.approx(
        ACTIVATION_RESERVE_BYTES)


def _fp8_ffn(tokens: int):
    """The FFN op of llama3-405b-fp8 (FP8 FFN, bf16 elsewhere) over one prompt of `tokens` tokens."""
    workload = library.load_workload_spec("llama3-405b-fp8")
    return next(op for op in layer_ops(workload, Step("prefill", 1, tokens), "llama") if op.name == "ffn")


def test_an_fp8_ffn_writes_its_output_at_the_activations_word_size() -> None:
    """Bound to ffn_word_bytes 1, the FFN's output is written at the workload's word_bytes (2): the op says so, the
    other ops of the layer write at their binding's width."""
    workload = library.load_workload_spec("llama3-405b-fp8")
    ops = layer_ops(workload, Step("prefill", 1, 64), "llama")
    assert {op.name: (op.binding.word_bytes, op.output_word_bytes) for op in ops} == {
        "attn_norm": (2, 2), "qkv": (2, 2), "attention": (2, 2), "out_proj": (2, 2), "attn_residual": (2, 2),
        "ffn_norm": (2, 2), "ffn": (1, 2), "ffn_residual": (2, 2)}


def test_a_gpu_counts_an_fp8_ffn_output_in_bf16() -> None:
    """The SwiGLU FFN of llama3-405b-fp8 over 1024 tokens on an H100: its weights, input and intermediates (the
    fused W1 | W3 GEMM's H1, H3, the SiLU product A, each read or written by the GEMMs and once more by the
    elementwise pass) at 1 byte, its output Y (the W2 GEMM's) at 2 bytes."""
    rows, hidden, ffn = 1024, 16384, 53248
    op = _fp8_ffn(rows)
    device = calibrated_gpu_device(load_gpu("h100-sxm5"))
    weights = 3 * hidden * ffn
    gemms = weights + rows * (hidden + 2 * ffn) + rows * (ffn + 2 * hidden)
    elementwise = rows * 3 * ffn
    assert device._dense(op)[2] == gemms + elementwise


def test_a_tp_all_reduce_moves_an_fp8_ffn_output_in_bf16() -> None:
    """llama3-8b with an fp8 FFN on four H100s: both of a layer's all-reduces (out_proj's and the FFN's) move
    tokens x hidden words of 2 bytes, the FFN's bf16 output (`Op.output_word_bytes`), not its 1-byte operands."""
    base = library.load_workload_spec("llama3-8b")
    workload = replace(base, params={**base.params, "ffn_word_bytes": 1})
    model = system_model(load_system("vllm-h100"), workload)
    tokens, link = 64, model.system.links["tp"]
    message = all_reduce_s(tokens * 4096 * 2, 4, link, algorithm="ring")
    assert allreduce_s(model, tokens) == 2 * message


def test_every_device_moves_the_ops_bytes_less_the_weights_not_streamed() -> None:
    """`Op.moved_bytes` is `Op.bytes` (every weight streamed) less the weights still on chip; a TPU and a Logic-PIM
    read it alike: at half the weights both their byte times are those bytes over their bandwidth."""
    op = next(o for o in layer_ops(library.load_workload_spec("mixtral-8x7b"), Step("decode", 8, 100), "llama")
              if o.name == "moe")
    weights = op.bytes_by_role["weights"]
    assert op.moved_bytes() == float(op.bytes) and type(op.moved_bytes()) is float
    assert op.moved_bytes(0.5) == op.bytes - 0.5 * weights
    device = LogicPimDevice("lp", LogicPIMSpec(pj_per_flop=1.0), 5)
    assert device.cost([op], 0.5).memory_s == op.moved_bytes(0.5) / device.streaming_bytes_per_s


def test_a_gpu_writes_a_moe_layers_combined_output_once_at_its_width() -> None:
    """Mixtral's experts op on an H100: its output Y (the gate-weighted combine of the experts' outputs) is written
    by no GEMM; the elementwise pass counts it, T x hidden words (it had been counted by neither), at bf16 under an
    fp8 FFN."""
    from archsim.systems.gemms import op_gemms
    from archsim.systems.gpu_device import _elementwise_bytes, _written_share

    mixtral = library.load_workload_spec("mixtral-8x7b")
    tokens, hidden = 16, 4096
    for params, width in ((mixtral.params, 2), ({**mixtral.params, "ffn_word_bytes": 1}, 1)):
        workload = replace(mixtral, params=params)
        op = next(o for o in layer_ops(workload, Step("decode", tokens, 1), workload.block) if o.name == "moe")
        in_gemms = {e for gemm in op_gemms(op) for e in gemm.einsums}
        assert "Y" not in in_gemms and op.tensor_bytes["Y"] == tokens * hidden * width
        with_y = _elementwise_bytes(op, in_gemms)
        without_y = _elementwise_bytes(op, in_gemms | {"Y"})  # Y's Einsum taken out: neither O's read nor Y
        o_read = op.tensor_bytes["O"] * _written_share(op, "O")
        assert with_y - without_y == pytest.approx(o_read + tokens * hidden * 2, rel=1e-12)  # Y at bf16 in both


def test_a_gpu_writes_mla_prefills_normalised_output():
    """DeepSeek-V3's MLA prefill on an H100 (no kernel of the GPU model runs it: eager ops): its output AV, the
    elementwise normalisation SNV / SD, is written once at the op's words (it had been counted by no pass)."""
    from archsim.systems.gemms import op_gemms
    from archsim.systems.gpu_device import _elementwise_tensors

    workload = library.load_workload_spec("deepseek-v3-mla")
    op = next(o for o in layer_ops(workload, Step("prefill", 1, 256), workload.block) if o.name == "attention")
    in_gemms = tuple(sorted({e for gemm in op_gemms(op) for e in gemm.einsums}))
    assert op.cascade == "attention-mla-prefill" and "AV" not in in_gemms
    assert "AV" in _elementwise_tensors(op.cascade, op.binding.cascade, in_gemms)
