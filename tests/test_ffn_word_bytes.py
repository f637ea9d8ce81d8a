"""`ffn_word_bytes`: a workload whose FFN is quantised apart from the rest (Llama 3 405B served with FP8 FFN
weights, `llama3-405b-fp8`). The FFN op is its cascade bound to that word size, so its bytes come from the cascade
at that width and a GPU runs its GEMMs at that precision; every other op keeps `word_bytes`. Checked against the
same model in bf16 (`llama3-405b`), whose sizes are the same."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems import seqpar_memory
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.step import WEIGHTS, Step, layer_ops
from archsim.workload import workload_from_dict

STEP = Step("prefill", 1, 4096)


@pytest.fixture(scope="module")
def layers() -> dict[str, dict]:
    out = {}
    for name in ("llama3-405b", "llama3-405b-fp8"):
        workload = library.load_workload_spec(name)
        out[name] = {op.name: op for op in layer_ops(workload, STEP, workload.block)}
    return out


def test_the_two_workloads_differ_only_in_the_ffn_word_size() -> None:
    bf16, fp8 = (library.load_workload_spec(n).params for n in ("llama3-405b", "llama3-405b-fp8"))
    assert {k: v for k, v in fp8.items() if k != "ffn_word_bytes"} == bf16
    assert fp8["ffn_word_bytes"] == 1 and bf16["word_bytes"] == 2


def test_only_the_ffn_is_bound_to_one_byte_words(layers) -> None:
    bf16, fp8 = layers["llama3-405b"], layers["llama3-405b-fp8"]
    assert list(bf16) == list(fp8)
    for name in bf16:
        assert fp8[name].binding.word_bytes == (1 if name == "ffn" else 2), name
        assert fp8[name].flops == bf16[name].flops, name  # the same work
        if name != "ffn":
            assert fp8[name].tensor_bytes == bf16[name].tensor_bytes, name
    # every FFN tensor at half the bytes: its weights are half of bf16's
    assert fp8["ffn"].tensor_bytes == {t: b / 2 for t, b in bf16["ffn"].tensor_bytes.items()}
    assert fp8["ffn"].bytes_by_role[WEIGHTS] == bf16["ffn"].bytes_by_role[WEIGHTS] / 2


def test_an_h100_runs_the_fp8_ffn_at_its_fp8_rate(layers) -> None:
    """The FFN of 4K tokens is compute bound on an H100: at one-byte words the GPU model takes it at the fp8
    tensor peak, twice fp16's, so in about half the time; the attention is unchanged."""
    device = calibrated_gpu_device(load_gpu("h100-sxm5"), "FlashAttention-2")
    bf16, fp8 = layers["llama3-405b"], layers["llama3-405b-fp8"]
    ratio = device.cost([fp8["ffn"]]).time_s / device.cost([bf16["ffn"]]).time_s
    assert 0.45 < ratio < 0.6, ratio
    assert device.cost([fp8["attention"]]).time_s == device.cost([bf16["attention"]]).time_s


def test_inference_memory_holds_the_ffn_weights_at_one_byte() -> None:
    bf16, fp8 = (library.load_workload_spec(n) for n in ("llama3-405b", "llama3-405b-fp8"))
    a = seqpar_memory.inference_memory(bf16, "zigzag", 2, 16384, tp=8)
    b = seqpar_memory.inference_memory(fp8, "zigzag", 2, 16384, tp=8)
    ffn_weights = 3 * 16384 * 53248 * 126 * 2 / 8  # W1, W3, W2 per layer, bf16, cut 8 ways: the saving is half
    assert a.weights_bytes - b.weights_bytes == pytest.approx(ffn_weights / 2)
    assert b.kv_cache_bytes == a.kv_cache_bytes


def test_training_memory_ignores_the_serving_quantisation() -> None:
    """Training counts every element at full precision: the FFN's serving word size plays no part."""
    bf16, fp8 = (library.load_workload_spec(n) for n in ("llama3-405b", "llama3-405b-fp8"))
    assert (seqpar_memory.training_memory(fp8, "ring", 64, 65536)
            == seqpar_memory.training_memory(bf16, "ring", 64, 65536))


def test_a_bad_ffn_word_size_is_refused_naming_the_field() -> None:
    from archsim.errors import SpecError

    with pytest.raises(SpecError, match=r"params\.ffn_word_bytes.*expected an integer of at least 1"):
        workload_from_dict({"name": "w", "params": {"hidden": 8, "ffn_word_bytes": 0}}, "w.yaml")


def test_a_training_steps_time_ignores_the_serving_quantisation_as_its_memory_does() -> None:
    """`archsim parallel --direction fwd+bwd --scope layer` times the FFN at `word_bytes` (it had run its GEMMs,
    forward and backward, at fp8 beside memory counted at full precision); a prefill (`fwd`) keeps the FP8 FFN."""
    from dataclasses import replace

    from archsim.systems.seqpar import parallel_time
    from archsim.systems.seqpar_spec import ParallelSpec
    from archsim.systems.topology import load_topology

    hgx = load_topology("hgx-h100")
    bf16 = library.load_workload_spec("llama3-8b")
    fp8 = replace(bf16, params={**bf16.params, "ffn_word_bytes": 1})

    def time_s(workload, direction: str) -> float:
        spec = ParallelSpec("ring", 8, workload, 32768, hgx.gpu, hgx, direction=direction, scope="layer")
        return parallel_time(spec, reference=False).time_s

    assert time_s(fp8, "fwd+bwd") == time_s(bf16, "fwd+bwd")
    assert time_s(fp8, "fwd") < 0.95 * time_s(bf16, "fwd")


def test_a_small_training_steps_host_gap_ignores_the_serving_quantisation() -> None:
    """The gap before a fwd+bwd step's backward is less the step's own forward, whose FFN runs at word_bytes: BERT-base
    at 512 tokens on 8 H100s (a forward shorter than the gap) had paid 1.9 us more with an fp8 FFN, its faster fp8
    forward lengthening the gap."""
    from dataclasses import replace

    from archsim.systems.seqpar import parallel_time
    from archsim.systems.seqpar_spec import ParallelSpec
    from archsim.systems.topology import load_topology

    hgx = load_topology("hgx-h100")
    bf16 = replace(library.load_workload_spec("bert-base"), block="gpt")
    fp8 = replace(bf16, params={**bf16.params, "ffn_word_bytes": 1})
    spec = ParallelSpec("ring", 8, bf16, 512, hgx.gpu, hgx, direction="fwd+bwd", scope="layer")
    forward = parallel_time(replace(spec, direction="fwd"), reference=False).time_s
    assert forward < 1.26e-4  # the step's forward is shorter than the fitted autograd_s: the gap is paid
    assert parallel_time(replace(spec, workload=fp8), reference=False).time_s == parallel_time(
        spec, reference=False).time_s
