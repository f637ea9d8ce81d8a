"""A training step's LM head in the sequence-parallel model: every token's logits on each device's N / P tokens,
which LASP-2's throughput rows add to the layers' time."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.seqpar import lm_head_s
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.topology import load_topology


def _spec(scheme: str = "lasp2", devices: int = 8, direction: str = "fwd+bwd") -> ParallelSpec:
    topology = load_topology("dgx-a100")
    return ParallelSpec(scheme, devices, library.load_workload_spec("linear-llama3-1b"), 64 * 1024, topology.gpu,
                        topology, direction=direction, scope="layer")


def test_the_lm_head_is_a_gemm_of_the_devices_tokens_onto_the_vocab():
    """fwd: 2 x (N / P) x hidden x vocab FLOPs (2 x 8192 x 2048 x 128256 = 4.3 TFLOP at 64K on 8 devices), a
    compute-bound GEMM on an A100: between its time at the bf16 peak and at half of it; fwd+bwd three times."""
    spec = _spec(direction="fwd")
    flops = 2.0 * (spec.seq_len // spec.devices) * 2048 * 128256
    peak_s = flops / load_gpu("a100-80gb-sxm4").tensor_peak_flops_per_s("bf16")
    assert peak_s < lm_head_s(spec) < 2 * peak_s
    assert lm_head_s(replace(spec, direction="fwd+bwd")) == pytest.approx(3 * lm_head_s(spec), rel=1e-12)


def test_every_scheme_pays_the_same_head_and_more_devices_a_smaller_one():
    assert lm_head_s(_spec("ring")) == lm_head_s(_spec("lasp1")) == lm_head_s(_spec("lasp2"))
    assert lm_head_s(_spec(devices=16)) < lm_head_s(_spec(devices=8))


def test_lasp2_rows_count_the_head_in_their_throughput():
    """The head is about a sixth of a 1B model's step (16 layers of hidden 2048 against a 128K-vocab head):
    counting it lowers every scheme's throughput, LASP-2's at 512K by 10-25 %."""
    from archsim.systems.seqpar_reproduce import lasp2_rows

    row = next(r for r in lasp2_rows() if r["scheme"] == "lasp2" and r["seq_len"] == 512 * 1024)
    layers = int(library.load_workload_spec("linear-llama3-1b").params["layers"])
    without_head = row["seq_len"] / (layers * row["time_per_layer_s"])
    assert 0.75 < row["throughput_tok_s"] / without_head < 0.9
