"""Audit a5's findings on multi-device training (issue 18):

- D1: with layer checkpointing (`--checkpointing layer`, the default of `--direction fwd+bwd`) the memory model keeps
  only each layer's input and recomputes its forward before its backward, so the step's time holds one more forward
  of the same scope, its transfers included (`seqpar._timing`; `recompute_s`). Before, the time left it out:
  llama-7b on 8 A100s at 64K, whole layers, printed the same time with layer checkpointing and with none. The
  training precision sets the memory only (the time is costed in bf16 words at either).
- D2: on one device FSDP gathers nothing, so no gathered layer is added to the weights and gradients (a ring at
  P = 1 held 33.0 GB of Llama-3-8B's weights where 8.03B parameters x 4 B are 32.1 GB).
- D3: a causal grid on arrays without a causal mapping exits 2 before the grid, naming `device.causal_mapping` of
  the topology file, as a single point does (it was a grid of infeasible rows, exit 0).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems import collectives
from archsim.systems import seqpar_memory as mem
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec, check_spec
from archsim.systems.topology import load_topology

DGX, NVLINK = load_topology("dgx-a100"), load_topology("a100-nvlink")
LLAMA7, LLAMA3 = library.load_workload_spec("llama-7b"), library.load_workload_spec("llama3-8b")


def _train(scheme: str, devices: int, seq_len: int, workload=LLAMA3, topology=NVLINK, **fields) -> ParallelSpec:
    return ParallelSpec(scheme, devices, workload, seq_len, topology.gpu, topology, direction="fwd+bwd", **fields)


def _parts(result) -> tuple[float, float, float, float]:
    return result.time_s, result.compute_s, result.comm_s, result.wait_s


# --- D1: the recomputed forward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    _train("ring", 8, 65536, LLAMA7, DGX, scope="layer"),  # the audit's point
    _train("zigzag", 8, 65536),
    _train("ulysses", 8, 65536, scope="layer"),
    _train("lasp1", 16, 16 * 4096, library.load_workload_spec("linear-llama3-1b"), DGX, scope="layer"),
    _train("lasp2h", 8, 16384, library.load_workload_spec("linear-llama3-1b-hybrid"), DGX, scope="layer", batch=2),
], ids=["ring-layer", "zigzag", "ulysses-layer", "lasp1-chain", "lasp2h-hybrid"])
def test_layer_checkpointing_adds_one_forward_of_the_same_scope(spec: ParallelSpec) -> None:
    """Layer checkpointing keeps only each layer's input, so the step runs the layer's forward again before its
    backward: time, compute, communication and wait are each the step without checkpointing plus the `fwd` run of
    the same point (its transfers and, for LASP-1, its chain's wait included), `recompute_s` that forward's time,
    and time = compute + exposed + wait still."""
    layer = parallel_time(replace(spec, checkpointing="layer"), reference=False)
    none = parallel_time(replace(spec, checkpointing="none"), reference=False)
    forward = parallel_time(replace(spec, direction="fwd"), reference=False)
    for with_, without, once in zip(_parts(layer), _parts(none), _parts(forward), strict=True):
        assert math.isclose(with_, without + once, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(layer.recompute_s, forward.time_s, rel_tol=1e-12) and none.recompute_s == 0
    assert forward.time_s > 0 and layer.time_s > none.time_s
    assert math.isclose(layer.time_s, layer.compute_s + layer.exposed_comm_s + layer.wait_s, rel_tol=1e-12)
    if spec.scheme == "lasp1":
        assert forward.wait_s > 0  # the chain's wait recurs in the recomputation


def test_the_recomputed_ring_passes_its_blocks_again() -> None:
    """A causal ring's forward passes each device's K and V block P - 1 times (2 x c tokens x 8 KV heads x 128 x 2 B
    a hop over NVLink): layer checkpointing's step moves exactly those hops more than the step without it."""
    p, n = 8, 65536
    kv_bytes = 2 * (n // p) * 8 * 128 * 2
    hops_s = (p - 1) * collectives.send_recv_s(kv_bytes, NVLINK.levels[0].link)
    layer, none = (parallel_time(_train("ring", p, n, checkpointing=c), reference=False) for c in ("layer", "none"))
    assert layer.comm_s - none.comm_s == pytest.approx(hops_s, rel=1e-9)


def test_the_one_device_reference_recomputes_too() -> None:
    """Efficiency compares like with like: the one-device run under the same checkpointing, so `ideal_s` is the
    one-device step without checkpointing plus its forward, over P."""
    spec = _train("ring", 8, 65536)
    one = replace(spec, devices=1)
    expected = (parallel_time(replace(one, checkpointing="none"), reference=False).time_s
                + parallel_time(replace(one, direction="fwd"), reference=False).time_s) / 8
    assert parallel_time(spec).ideal_s == pytest.approx(expected, rel=1e-12)


def test_the_training_precision_sets_the_memory_not_the_time() -> None:
    """The kernels and transfers are costed in bf16 words at either precision (`seqpar_spec`'s rules)."""
    fp32, mixed = (parallel_time(_train("ring", 8, 65536, training_precision=t), reference=False)
                   for t in ("fp32", "mixed"))
    assert fp32.time_s == mixed.time_s and fp32.memory_bytes > mixed.memory_bytes


def test_checkpointing_applies_at_tp_above_one_where_it_sets_the_time() -> None:
    """At tp > 1 the training memory is not modelled, but the recomputation is time: `checkpointing none` is taken
    there (the precision, memory only, is still refused)."""
    spec = _train("ring", 2, 65536, LLAMA3, load_topology("hgx-h100"), tp=4, checkpointing="none")
    check_spec(spec)
    none, layer = (parallel_time(replace(spec, checkpointing=c), reference=False) for c in ("none", "layer"))
    assert layer.time_s > none.time_s and math.isnan(none.memory_bytes)
    with pytest.raises(SpecError, match="not modelled at tp > 1"):
        check_spec(replace(spec, training_precision="mixed"))


def test_the_cli_shows_the_recomputed_forward(cli) -> None:
    """`--json` carries `recompute_s` (null outside fwd+bwd, 0 without checkpointing); the table has its column."""
    base = ("parallel", "--scheme", "ring", "--devices", "8", "--workload", "llama3-8b", "--seq-len", "32K")

    def point(*args: str) -> dict:
        return json.loads(cli(*base, *args, "--json").output)["points"][0]

    fwd, layer = point(), point("--direction", "fwd+bwd")
    none = point("--direction", "fwd+bwd", "--checkpointing", "none")
    assert fwd["recompute_s"] is None and none["recompute_s"] == 0
    assert layer["recompute_s"] == pytest.approx(fwd["latency_s"], rel=1e-12)
    assert layer["latency_s"] == pytest.approx(none["latency_s"] + fwd["latency_s"], rel=1e-12)
    lines = cli(*base, "--direction", "fwd+bwd").output.splitlines()
    assert "recompute ms" in lines[1] and f"{layer['recompute_s'] * 1e3:.4g}" in lines[2].split()
    assert "recompute" in cli("parallel", "--help").output


# --- D2: no gathered layer on one device ---------------------------------------------------------------------

def test_one_device_holds_the_models_parameters_once() -> None:
    """Llama-3-8B has 8.03B parameters (Meta's model card): in fp32 on one device its weights and gradients are 4 B
    each a parameter, nothing gathered (FSDP gathers a layer only from other devices' shards), as Megatron-SP, which
    never gathers, holds them. On two devices FSDP's gathered layer is still there."""
    n = 4096
    ring, megatron = (mem.training_memory(LLAMA3, scheme, 1, n) for scheme in ("ring", "megatron-sp"))
    assert ring.weights_bytes == megatron.weights_bytes == ring.gradients_bytes
    assert ring.weights_bytes / 4 == pytest.approx(8.03e9, rel=0.005)
    two = mem.training_memory(LLAMA3, "ring", 2, n)
    assert two.weights_bytes > ring.weights_bytes / 2  # half the model and one gathered layer


# --- D3: a topology no causal point can use --------------------------------------------------------------------

def _no_causal_mapping(tmp_path: Path) -> Path:
    path = tmp_path / "flat8.yaml"
    path.write_text("name: flat-8\nsource: test\ndevice: {mapping: flat}\n"
                    "levels:\n  - {link: tpu-v3-ici, devices: 8}\n")
    return path


def test_a_causal_grid_without_a_causal_mapping_exits_2_before_the_grid(cli, tmp_path: Path) -> None:
    """Every causal point has a causal block (a ring's diagonal), so a grid of them is refused as one point is:
    exit 2, one line, naming the topology file's field; a non-causal grid on it runs (llama-7b: one K/V head a query
    head, as the flat mapping's cascade)."""
    path = _no_causal_mapping(tmp_path)
    base = ("parallel", "--scheme", "ring,zigzag", "--devices", "2", "--seq-len", "4K", "--topology", str(path))
    lines = cli(*base, "--workload", "llama3-8b", expect=2).output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "device.causal_mapping" in lines[0]
    points = json.loads(cli(*base, "--workload", "llama-7b", "--no-causal", "--json").output)["points"]
    assert [p["feasible"] for p in points] == [True, True]
    topology = load_topology(path)
    with pytest.raises(SpecError) as error:
        check_spec(ParallelSpec("ring", 2, LLAMA7, 4096, topology.gpu, topology))
    assert error.value.where == "device.causal_mapping" and error.value.source == str(path)


def test_the_reproductions_grid_points_carry_the_recompute() -> None:
    """Review a6: the grid's fwd+bwd rows included the recomputed forward but did not show it. A grid point now says
    its checkpointing and the recomputed forward's seconds: the fwd twin's time; a fwd point has neither."""
    from archsim.systems.seqpar_reproduce import _point

    topology = load_topology("a100-nvlink")
    workload = library.load_workload_spec("llama3-8b")
    fwd, step = (_point(parallel_time(ParallelSpec("ring", 4, workload, 16384, topology.gpu, topology,
                                                   direction=d))) for d in ("fwd", "fwd+bwd"))
    assert fwd["checkpointing"] is None and fwd["recompute_s"] is None
    assert step["checkpointing"] == "layer" and step["recompute_s"] == fwd["time_s"] > 0
