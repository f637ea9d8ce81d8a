"""A training step's LM head in the sequence-parallel model: every token's logits on each device's N / P tokens,
which LASP-2's throughput rows add to the layers' time."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.gpu_device import calibrated_gpu_device
from archsim.systems.seqpar import ParallelSpec, lm_head_s
from archsim.systems.step import lm_head_op
from archsim.systems.topology import load_topology


def _spec(scheme: str = "lasp2", devices: int = 8, direction: str = "fwd+bwd") -> ParallelSpec:
    topology = load_topology("dgx-a100")
    return ParallelSpec(scheme, devices, library.load_workload_spec("linear-llama3-1b"), 64 * 1024, topology.gpu,
                        topology, direction=direction, scope="layer")


def test_the_lm_head_is_the_output_projection_onto_the_vocab_over_the_devices_tokens():
    """fwd: one GEMM of N / P tokens x hidden x vocab (step.lm_head_op) on the GPU device; fwd+bwd three times."""
    spec = _spec(direction="fwd")
    device = calibrated_gpu_device(load_gpu("a100-80gb-sxm4"), "FlashAttention-2")
    direct = device.cost([lm_head_op(spec.workload, spec.seq_len // spec.devices)]).time_s
    assert lm_head_s(spec) == pytest.approx(direct, rel=1e-12)
    assert lm_head_s(replace(spec, direction="fwd+bwd")) == pytest.approx(3 * direct, rel=1e-12)


def test_every_scheme_pays_the_same_head_and_more_devices_a_smaller_one():
    assert lm_head_s(_spec("ring")) == lm_head_s(_spec("lasp1")) == lm_head_s(_spec("lasp2"))
    assert lm_head_s(_spec(devices=16)) < lm_head_s(_spec(devices=8))


def test_lasp2_rows_count_the_head_in_their_throughput():
    from archsim.systems.seqpar_reproduce import lasp2_rows

    row = next(r for r in lasp2_rows() if r["scheme"] == "lasp2" and r["seq_len"] == 512 * 1024)
    layers = int(library.load_workload_spec("linear-llama3-1b").params["layers"])
    assert row["lm_head_s"] > 0
    assert row["throughput_tok_s"] == pytest.approx(
        row["seq_len"] / (layers * row["time_per_layer_s"] + row["lm_head_s"]), rel=1e-12)
