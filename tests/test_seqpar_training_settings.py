"""Training settings of the multi-device memory model: `checkpointing` (layer: Table 3's checkpoints and one layer
recomputed; none: every layer's activations kept) and the training precision (fp32: Table 3's 4 + 4 + 8 bytes per
parameter and 4 per activation; mixed: ZeRO's 2 + 2 + 12 and 2), in `seqpar_memory.training_memory`, `ParallelSpec`,
`archsim parallel` (fwd+bwd only: another direction exits 2 naming the option) and the parallel sweep. Llama-3-8B,
Llama-2-7B and the linear-attention Llama-3-1B at 32K-128K tokens on up to 8 devices: each point in milliseconds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.parallel_spec import parallel_config, parallel_record
from archsim.dse.spec import load_sweep_spec
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.systems import seqpar_memory as mem
from archsim.systems.seqpar import _memory
from archsim.systems.seqpar_spec import ParallelSpec, check_spec
from archsim.systems.topology import load_topology

N = 131072
# (workload, scheme, devices, ulysses degree): each scheme family, a softmax and a linear-attention model
CASES = [("llama3-8b", "vanilla", 1, None), ("llama3-8b", "memeff-attn", 1, None),
         ("llama3-8b", "memeff-attn-ffn", 1, None), ("llama3-8b", "ring", 8, None), ("llama3-8b", "zigzag", 8, None),
         ("llama3-8b", "ulysses", 8, None), ("llama3-8b", "usp", 8, 2), ("llama3-8b", "megatron-sp", 8, None),
         ("linear-llama3-1b", "lasp1", 8, None), ("linear-llama3-1b", "lasp2", 8, None)]
IDS = [f"{case[1]}-P{case[2]}" for case in CASES]
CLI_BASE = ("parallel", "--scheme", "ring", "--devices", "8", "--workload", "llama3-8b", "--seq-len", "32K",
            "--topology", "hgx-h100-8")


def _train(name: str, scheme: str, devices: int, ulysses: int | None, layers: int | None = None,
           **settings) -> mem.DeviceMemory:
    workload = library.load_workload_spec(name)
    if layers is not None:
        workload = dataclasses.replace(workload, params={**workload.params, "layers": float(layers)})
    return mem.training_memory(workload, scheme, devices, N, ulysses_degree=ulysses, **settings)


# --- the memory model --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_defaults_are_layer_checkpointing_in_fp32(case):
    assert _train(*case) == _train(*case, checkpointing="layer", **mem.TRAINING_PRECISIONS["fp32"])
    assert mem.TRAINING_PRECISIONS["fp32"] == {"param_bytes": 4, "activation_bytes": 4, "optimizer_bytes_per_param": 8}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_checkpointing_keeps_more_than_layer_checkpointing(case):
    layer, none = _train(*case), _train(*case, checkpointing="none")
    assert none.activations_bytes > layer.activations_bytes  # every workload here has more than one layer
    one_layer, one_none = _train(*case, layers=1), _train(*case, layers=1, checkpointing="none")
    assert one_none.activations_bytes >= one_layer.activations_bytes
    # only the activations change
    assert (none.weights_bytes, none.gradients_bytes, none.optimizer_bytes) == (
        layer.weights_bytes, layer.gradients_bytes, layer.optimizer_bytes)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_no_checkpointing_grows_linearly_with_the_layers(case):
    """Each layer keeps the same tensors; the in-flight buffers are held once: activations = layers x kept + in
    flight, affine in the layers with a non-negative intercept."""
    one, two, three = (_train(*case, layers=n, checkpointing="none").activations_bytes for n in (4, 8, 12))
    per_four = two - one
    assert per_four > 0
    assert three - two == pytest.approx(per_four, rel=1e-12)
    assert one - per_four >= -1e-6 * one  # the in-flight buffers


def test_a_scheme_moving_nothing_keeps_layers_times_one_layer_and_one_transient_output():
    """BPT on one device holds nothing in flight: each layer adds the same kept tensors, and beside them one op's
    output no backward reads (the projection's or the FFN's, N x h, live until its residual add) is held once."""
    acts = [_train("llama3-8b", "memeff-attn-ffn", 1, None, layers=n, checkpointing="none").activations_bytes
            for n in (3, 6, 9)]
    assert acts[2] - acts[1] == acts[1] - acts[0]
    hidden_output = int(library.load_workload_spec("llama3-8b").params["hidden"]) * N * 4
    assert 2 * acts[0] - acts[1] == hidden_output  # the intercept


def test_no_checkpointing_counts_each_tensor_of_a_ring_layer_once():
    """Ring on 8 devices of Llama-2-7B (MHA, h = 4096, no GQA): per token of the device's c = N/8 and per layer, the
    layer input and the seven tensors of h elements a backward reads (the norm's output, Q, K, V, the attention's
    output, the residual stream the second norm reads, that norm's output; not the projection's and the FFN's
    outputs, which only a residual add reads, nor the last residual, the next layer's input), the SwiGLU FFN's
    three hidden activations of ffn_dim (its backward reads them: kept though BPT computes the FFN blockwise) and
    each RMS norm's two per-token scalars (the flash attention's scores are not kept: its backward recomputes
    them), plus the K, V block in flight."""
    workload = library.load_workload_spec("llama-7b")
    params = workload.params
    hidden, ffn, layers, c = int(params["hidden"]), int(params["ffn_dim"]), int(params["layers"]), N // 8
    none = mem.training_memory(workload, "ring", 8, N, checkpointing="none")
    assert none.activations_bytes == (layers * (8 * hidden + 3 * ffn + 2 * 2) + 2 * hidden) * c * 4


def test_megatron_sp_without_checkpointing_keeps_sequence_shards():
    """Megatron-SP keeps the sequence shard of each all-gathered input and gathers it again in the backward
    (Korthikanti et al. 2022 §4.2): with every term cut P ways its activations match a ring's on the same tokens per
    device (the attention region holds N tokens of heads / P, as many bytes as c tokens of all heads), within the
    norms' per-token scalars, which it holds for the c tokens of its sequence-parallel region; beside them the
    FFN's transient all-gathered input and partial sums (N x h each) where the ring holds its K, V block."""
    workload = library.load_workload_spec("llama-7b")
    ring = mem.training_memory(workload, "ring", 8, N, checkpointing="none")
    megatron = mem.training_memory(workload, "megatron-sp", 8, N, checkpointing="none")
    hidden = int(workload.params["hidden"])
    in_flight = 2 * hidden * (N // 8) * 4  # the ring's K, V block; Megatron-SP has none
    transient = 2 * hidden * N * 4  # Megatron-SP's FFN: its gathered input and its partial sums, N x h each
    assert megatron.activations_bytes == pytest.approx(ring.activations_bytes - in_flight + transient, rel=1e-3)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mixed_precision_halves_the_activations_and_keeps_16_bytes_per_sharded_parameter(case):
    for checkpointing in mem.CHECKPOINTING:
        fp32 = _train(*case, checkpointing=checkpointing)
        mixed = _train(*case, checkpointing=checkpointing, **mem.TRAINING_PRECISIONS["mixed"])
        if case[1] in mem.LASP:  # its fp32 states do not halve (test_a_lasp_state_is_fp32_at_either_precision)
            assert fp32.activations_bytes / 2 < mixed.activations_bytes < fp32.activations_bytes
        else:
            assert mixed.activations_bytes == fp32.activations_bytes / 2
    sharded = fp32.optimizer_bytes / 8  # parameter elements per device
    gathered = fp32.weights_bytes / 4 - sharded  # FSDP's one gathered layer (megatron-sp: none)
    assert mixed.weights_bytes == mixed.gradients_bytes == 2 * (sharded + gathered)
    assert mixed.optimizer_bytes == 12 * sharded
    assert mixed.weights_bytes + mixed.gradients_bytes + mixed.optimizer_bytes == pytest.approx(
        16 * sharded + 4 * gathered, rel=1e-12)
    assert fp32.weights_bytes + fp32.gradients_bytes + fp32.optimizer_bytes == pytest.approx(
        16 * sharded + 8 * gathered, rel=1e-12)
    if case[1] == "megatron-sp":
        assert gathered == 0


def test_bad_settings_name_the_field():
    workload = library.load_workload_spec("llama3-8b")
    with pytest.raises(SpecError, match="checkpointing: expected one of layer, none, got 'full'"):
        mem.training_memory(workload, "ring", 8, N, checkpointing="full")
    with pytest.raises(SpecError, match="training_precision: expected one of fp32, mixed, got 'bf16'"):
        mem.training_precision("bf16")


# --- ParallelSpec ------------------------------------------------------------------------------------------------

def _spec(**fields) -> ParallelSpec:
    topology = load_topology("hgx-h100-8")
    fields = {"direction": "fwd+bwd", **fields}
    return ParallelSpec("ring", 8, library.load_workload_spec("llama3-8b"), 32768, topology.gpu, topology, **fields)


def test_the_spec_defaults_are_the_memory_models():
    default = _memory(_spec())
    assert default == _memory(_spec(checkpointing="layer", training_precision="fp32"))
    none, mixed = _memory(_spec(checkpointing="none")), _memory(_spec(training_precision="mixed"))
    assert none[0].total_bytes > default[0].total_bytes and none[1] < default[1]
    assert mixed[0].total_bytes < default[0].total_bytes and mixed[1] > default[1]


@pytest.mark.parametrize("fields, field, message", [
    ({"checkpointing": "none", "direction": "fwd"}, "checkpointing", "expected direction fwd+bwd, got fwd"),
    ({"training_precision": "mixed", "direction": "decode"}, "training_precision",
     "expected direction fwd+bwd, got decode"),
    ({"checkpointing": "full"}, "checkpointing", "expected one of layer, none"),
    ({"training_precision": "bf16"}, "training_precision", "expected one of fp32, mixed"),
])
def test_the_spec_refuses_a_setting_it_cannot_apply(fields, field, message):
    with pytest.raises(SpecError) as error:
        check_spec(_spec(**fields))
    assert error.value.where == field and message in error.value.message


# --- archsim parallel --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (("--checkpointing", "none"), "--checkpointing"),
    (("--checkpointing", "layer", "--direction", "decode"), "--checkpointing"),
    (("--training-precision", "mixed"), "--training-precision"),
    (("--training-precision", "fp32", "--direction", "fwd"), "--training-precision"),
])
def test_a_training_setting_outside_fwd_bwd_exits_2_naming_it(cli, args, option):
    lines = cli(*CLI_BASE, *args, expect=2).output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and option in lines[0] and "fwd+bwd" in lines[0]


@pytest.mark.parametrize("args, option, choices", [
    (("--checkpointing", "full"), "--checkpointing", "'layer', 'none'"),
    (("--training-precision", "bf16"), "--training-precision", "'fp32', 'mixed'"),
])
def test_an_unknown_setting_exits_2_naming_the_choices(cli, args, option, choices):
    lines = cli(*CLI_BASE, "--direction", "fwd+bwd", *args, expect=2).output.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and choices in lines[0]


def test_no_checkpointing_fits_a_shorter_context_and_json_echoes_the_settings(cli):
    def point(*settings: str) -> dict:
        output = cli(*CLI_BASE, "--direction", "fwd+bwd", *settings, "--json").output
        return json.loads(output)["points"][0]

    default = point()
    layer = point("--checkpointing", "layer", "--training-precision", "mixed")
    none = point("--checkpointing", "none", "--training-precision", "mixed")
    assert (default["checkpointing"], default["training_precision"]) == ("layer", "fp32")
    assert (none["checkpointing"], none["training_precision"]) == ("none", "mixed")
    assert 0 < none["max_context_tokens"] < layer["max_context_tokens"]
    assert none["memory_bytes"] > layer["memory_bytes"]
    # the precision sets the memory only; layer checkpointing adds its recomputed forward to the time (its own
    # test: tests/test_seqpar_recompute_s36.py)
    assert layer["latency_s"] == default["latency_s"] > none["latency_s"]
    text = cli(*CLI_BASE, "--direction", "fwd+bwd", "--checkpointing", "none", "--training-precision", "mixed").output
    assert "checkpointing none, mixed precision" in text.splitlines()[0]
    assert f"{none['max_context_tokens']}" in text.splitlines()[2]


# --- sweeps ------------------------------------------------------------------------------------------------------

SWEEP = {"name": "training-settings",
         "parallel": {"workload": "llama3-8b", "seq_len": 32768, "topology": "hgx-h100-8", "scheme": "ring",
                      "devices": 8, "direction": "fwd+bwd"},
         "axes": {"parallel.checkpointing": ["layer", "none"], "parallel.training_precision": ["fp32", "mixed"]},
         "objectives": ["memory_bytes", "max_context_tokens"]}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_sweep_over_checkpointing_and_precision(tmp_path, cli_json):
    df = run_sweep(load_sweep_spec(_write(tmp_path / "train.yaml", SWEEP)), tmp_path / "train.sqlite")
    assert len(df) == 4 and df.feasible.all()
    context = {(row["parallel.checkpointing"], row["parallel.training_precision"]): row.max_context_tokens
               for _, row in df.iterrows()}
    assert context["none", "fp32"] < context["layer", "fp32"] < context["layer", "mixed"]
    assert context["none", "fp32"] < context["none", "mixed"] < context["layer", "mixed"]
    cli_point = cli_json(*CLI_BASE, "--direction", "fwd+bwd", "--checkpointing", "none")["points"][0]
    assert context["none", "fp32"] == cli_point["max_context_tokens"]


def test_a_default_setting_leaves_a_points_key_as_before(tmp_path):
    from archsim.dse.parallel_spec import load_targets

    targets = load_targets(SWEEP["parallel"], {}, str(tmp_path / "s.yaml"))
    default, none = (parallel_config(targets, _spec(checkpointing=c)) for c in ("layer", "none"))
    assert "checkpointing" not in default["parallel"] and "training_precision" not in default["parallel"]
    assert none["parallel"]["checkpointing"] == "none"


def test_a_sweep_point_at_another_direction_is_refused_naming_the_sweeps_field(tmp_path):
    from archsim.dse.parallel_spec import load_targets

    source = str(tmp_path / "s.yaml")
    targets = load_targets({**SWEEP["parallel"], "direction": "fwd"}, {}, source)
    with pytest.raises(SpecError) as error:
        parallel_record(targets, {"parallel.checkpointing": "none"}, source)
    assert error.value.where == "parallel.checkpointing" and "expected direction fwd+bwd" in error.value.message


def test_an_unknown_setting_in_a_sweep_exits_2_naming_its_path(tmp_path, cli):
    data = {**SWEEP, "axes": {"parallel.checkpointing": ["layer", "full"]}}
    path = _write(tmp_path / "bad.yaml", data)
    output = cli("sweep", str(path), "--db", str(tmp_path / "bad.sqlite"), "--local", expect=2).output.strip()
    assert output.startswith(f"error: {path}: axes.parallel.checkpointing[1]: expected one of layer, none")


@pytest.mark.parametrize("precision", sorted(mem.TRAINING_PRECISIONS))
def test_a_lasp_state_is_fp32_at_either_precision(precision):
    """LASP-2 holds the P gathered d x d states per head (fp32, as its code keeps them): at 4 bytes an element
    whatever the activations' precision, so one more device adds one state per layer and head, 4 d^2 bytes."""
    workload = library.load_workload_spec("linear-llama3-1b")
    params = workload.params
    kwargs = mem.TRAINING_PRECISIONS[precision]
    heads, head_dim = int(params["heads"]), int(params["hidden"]) // int(params["heads"])
    # the same tokens per device (64 x 64), so only the gathered states and the sharded parameters differ
    at = {p: mem.training_memory(workload, "lasp2", p, 64 * 64 * p, **kwargs) for p in (4, 8)}
    states = at[8].activations_bytes - at[4].activations_bytes
    assert states == pytest.approx((8 - 4) * heads * head_dim * head_dim * 4, rel=1e-12)


def test_lasp1_plot_runs_2048k_and_is_out_of_memory_at_4096k_in_mixed_precision_without_checkpointing():
    """The LASP-1 plot (seqpar-sparse.md §2.5): on 64 A100s the 1B model trains 2048K tokens and 4096K is out of
    memory. TNL-1B's shape is not in the reference; LASP-2's Linear-Llama3-1B stands in (README). The default
    setting (layer checkpointing) fits both, so this is the settings' doing."""
    workload = library.load_workload_spec("linear-llama3-1b")
    capacity = load_gpu("a100-80gb-sxm4").dram_bytes
    mixed = mem.TRAINING_PRECISIONS["mixed"]

    def total(n, **kwargs):
        return mem.training_memory(workload, "lasp1", 64, n, **kwargs).total_bytes

    assert total(2048 * 1024, checkpointing="none", **mixed) <= capacity < total(4096 * 1024, checkpointing="none",
                                                                                 **mixed)
    assert total(4096 * 1024) <= capacity


def test_the_defaults_are_one_setting_everywhere():
    """training_memory's keyword defaults are TRAINING_PRECISIONS' fp32 and layer checkpointing, as ParallelSpec's."""
    import inspect

    defaults = {name: p.default for name, p in inspect.signature(mem.training_memory).parameters.items()}
    assert {k: defaults[k] for k in mem.TRAINING_PRECISIONS[mem.DEFAULT_PRECISION]} == \
        mem.TRAINING_PRECISIONS[mem.DEFAULT_PRECISION]
    assert defaults["checkpointing"] == mem.DEFAULT_CHECKPOINTING
    fields = {f.name: f.default for f in dataclasses.fields(ParallelSpec)}
    assert (fields["checkpointing"], fields["training_precision"]) == (mem.DEFAULT_CHECKPOINTING,
                                                                       mem.DEFAULT_PRECISION)


def test_lasp1_on_one_device_holds_one_state_as_lasp2_does():
    """A LASP-1 device holds its own state and the one it receives; alone it receives none (the memory model holds
    only what a scheme moves), so at P = 1 both LASP schemes hold the same bytes."""
    workload = library.load_workload_spec("linear-llama3-1b")
    lasp1, lasp2 = (mem.training_memory(workload, scheme, 1, 64 * 1024) for scheme in ("lasp1", "lasp2"))
    assert lasp1 == lasp2


def test_a_training_precision_at_tp_above_one_is_refused(cli):
    """Training memory is not modelled at tp > 1 (NaN bytes), so a precision there, which sets the memory only, would
    change nothing (checkpointing also sets the time: tests/test_seqpar_recompute_s36.py)."""
    result = cli(*CLI_BASE, "--direction", "fwd+bwd", "--tp", "2", "--training-precision", "mixed", expect=2)
    assert "--training-precision sets the training memory, which is not modelled at --tp above 1" in result.output
    spec = _spec(tp=2, training_precision="mixed")
    with pytest.raises(SpecError, match="not modelled at tp > 1"):
        check_spec(spec)
