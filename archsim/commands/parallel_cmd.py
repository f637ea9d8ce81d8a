"""`archsim parallel`: one layer's attention (or whole decoder layer) of a long sequence cut over P devices, timed
by `archsim.systems.seqpar` at every point of a grid of schemes x device counts x sequence lengths.

Comma lists in --scheme, --devices and --seq-len make the grid. A point whose spec the scheme rejects (Ulysses
with P not dividing the heads, N not a multiple of the chunks) is an infeasible row with the reason when the grid
has more than one point, so one bad corner does not kill a sweep; a single point exits 2 with the reason. The
model's field names are given as the options that set them (`seq_len` -> `--seq-len`). `--checkpointing` and
`--training-precision` set the training memory (`seqpar_memory`'s "Training"), and `--checkpointing layer` adds the
recomputed forward to the time (`seqpar._timing`: the "recompute ms" column, `recompute_s`), so they apply to
`--direction fwd+bwd` only: given with another direction, exit 2 naming the option; `--training-precision`, which
sets the memory only, needs `--tp 1` too (training memory is not modelled above it). Like `--direction` and
`--scope`, each takes one value for the whole grid. So is a value no point of the grid models, naming the option:
`--ulysses` without usp; a `--kernel` no point runs (it sets the softmax schemes' prefill kernel: a decode step runs
Flash-Decoding and LASP's chunks Lightning Attention-2, so with decode or LASP alone only the kernel they run is
taken); `--no-causal` with decode, whose one query attends every cached token (modelled, and recorded, causal). In
a grid mixing usp or a softmax scheme with others, each row records what it models: another scheme's no Ulysses
degree, a LASP row its own kernel. `--system` names a context-parallel system spec
(`archsim.systems.context_parallel`): its GPUs and links are the topology (`topology_of`), and its scheme, cp,
tp, Ulysses degree and attention kernel the defaults of the options that set them, so `--scope layer` times the
layer its prefill repeats; it excludes `--topology` and `--gpu`, and a spec of another schedule is refused, as is
(without --devices) its tp x cp beyond a node without a link named cp, naming `links.cp` as `archsim simulate` does.
`--gpu` replaces the GPU of a `--topology` the user names (their choice of links: a what-if), but the default
topology's links are its own GPU's (H100s over NVLink 4), so another `--gpu` without `--topology` is refused, exit
2 naming `--gpu` and the library topologies of that GPU, not timed over another GPU's links. A topology of arrays
(`device:` in place of `gpu:`, e.g. fusemax-ici-8) times each block through the analytical model under its mappings;
what has no array form (`--direction` fwd+bwd or decode, `--scope layer`, a LASP or decode `--scheme`, any
`--kernel`) is refused before the grid, exit 2 naming the option, and so is a causal run on a topology whose
`device` has no `causal_mapping`, naming that field of its file (`_refuse_on_arrays`).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from archsim.commands.options import Size, WholeRange, named, names_among, nan_as_null, nonempty, whole_numbers
from archsim.errors import LimitError, SpecError
from archsim.outputs import capacity_text, check_writable

if TYPE_CHECKING:  # the command loads the models only when it runs
    from archsim.arch.gpu import GPU
    from archsim.systems.topology import Topology

DEFAULT_TOPOLOGY = "hgx-h100"
MAX_POINTS, MAX_POINTS_ENV = 10_000, "ARCHSIM_MAX_PARALLEL_POINTS"  # points of one command (`_check_point_count`)
FIELD_OPTIONS = {"devices": "--devices", "seq_len": "--seq-len", "batch": "--batch", "tp": "--tp",
                 "ulysses": "--ulysses", "kernel": "--kernel", "scheme": "--scheme", "direction": "--direction",
                 "causal": "--no-causal",
                 "scope": "--scope", "checkpointing": "--checkpointing",
                 "training_precision": "--training-precision",
                 # and the GPU kernel's rows, batch x heads x N, blamed on the largest factor:
                 "AttentionCase.seqlen": "--seq-len", "AttentionCase.batch": "--batch"}
SWEPT = {"--scheme", "--devices", "--seq-len"}  # the options a grid sweeps: a point may be rejected for its value
# the text table: header, row key, how a value is shown (ms per layer, GB per device)
TEXT_COLUMNS = (
    ("time ms", "latency_s", lambda v: f"{v * 1e3:.4g}"),
    ("compute ms", "compute_s", lambda v: f"{v * 1e3:.4g}"),
    ("comm ms", "comm_s", lambda v: f"{v * 1e3:.4g}"),
    ("exposed ms", "exposed_comm_s", lambda v: f"{v * 1e3:.4g}"),
    ("hidden ms", "hidden_comm_s", lambda v: f"{v * 1e3:.4g}"),
    ("wait ms", "wait_s", lambda v: f"{v * 1e3:.4g}"),  # on another device's compute (LASP-1's chain)
    # of the time, the recomputed forward of a training step (layer checkpointing); none outside fwd+bwd: null
    ("recompute ms", "recompute_s", lambda v: "-" if v is None or math.isnan(v) else f"{v * 1e3:.4g}"),
    ("ideal ms", "ideal_s", lambda v: f"{v * 1e3:.4g}"),
    ("efficiency", "efficiency", lambda v: f"{v:.3f}"),
    ("mem/dev GB", "memory_bytes", lambda v: "-" if math.isnan(v) else f"{v / 1e9:.2f}"),  # not modelled: NaN
    ("max context", "max_context_tokens", lambda v: f"{v:.0f}" if v > 0 else "-"),
)


def _schemes(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    from archsim.systems.seqpar_spec import SCHEMES

    return [] if value is None else list(names_among(param.opts[0], value, SCHEMES, "scheme"))


@click.command("parallel")
@click.option("--scheme", "schemes", metavar="S[,S...]", callback=_schemes,
              help="ring, zigzag, stripe, ulysses, usp, megatron-sp, allgather, lasp1, lasp2, lasp2h (a hybrid "
                   "model's: linear layers as lasp2, softmax layers as allgather); decode: ring, megatron-sp, "
                   "distattention (a comma list sweeps). Required, or --system's.")
@click.option("--devices", metavar="P[,P...]", callback=whole_numbers,
              help="Ranks of the sequence-parallel group, each of --tp devices (P x tp devices in all; a comma "
                   "list sweeps). Required, or --system's cp.")
@click.option("--workload", "-w", required=True, metavar="W", callback=nonempty,
              help="Model: a library workload (e.g. llama3-8b, linear-llama3-1b, linear-llama3-1b-hybrid) or a YAML "
                   "file.")
@click.option("--seq-len", "seq_lens", required=True, metavar="N[,N...]", callback=whole_numbers,
              help="Tokens of each sequence, e.g. 32768 or 32K (a comma list sweeps).")
@click.option("--topology", metavar="NAME|FILE", callback=nonempty,
              help=f"Network of the devices: a preset (dgx-a100, hgx-h100, ...) or a YAML file. Default: "
                   f"{DEFAULT_TOPOLOGY} (8 H100 per node over NVLink 4, 400 Gb/s NICs between nodes).")
@click.option("--gpu", metavar="PRESET", callback=nonempty,
              help=f"GPU preset of the devices (default: the topology's). Another GPU than {DEFAULT_TOPOLOGY}'s "
                   "needs a --topology named: its GPU is then replaced, over that topology's links as they are "
                   "(a what-if: an H200 on dgx-a100 runs over A100 links).")
@click.option("--system", "system_name", metavar="NAME|FILE", callback=nonempty,
              help="A context-parallel system spec (e.g. context-parallel-h100, or a YAML file): its GPUs and links "
                   "are the devices and topology (so it excludes --topology and --gpu), and its scheme, cp, tp, "
                   "Ulysses degree and attention kernel the defaults of --scheme, --devices, --tp, --ulysses and "
                   "--kernel: with --scope layer its prefill's layer.")
@click.option("--batch", type=Size(), default=1, show_default=True, help="Sequences per step.")
@click.option("--direction", type=click.Choice(["fwd", "fwd+bwd", "decode"]), default="fwd", show_default=True,
              help="Forward (prefill), forward and backward (training), or one decode step over --seq-len cached "
                   "tokens (ring, megatron-sp, distattention).")
@click.option("--scope", type=click.Choice(["attention", "layer"]), default="attention", show_default=True,
              help="Time the attention and its communication, or the whole decoder layer.")
@click.option("--causal/--no-causal", default=True, show_default=True,
              help="Causal mask of the prefill (lasp1, lasp2 and lasp2h are modelled causal only); a decode step's "
                   "query attends every cached token (causal), so decode refuses --no-causal.")
@click.option("--tp", type=WholeRange(min=1),
              help="Tensor-parallel devices per sequence-parallel rank, inside a node: a divisor of its devices. "
                   "Default: 1, or --system's. Training memory (fwd+bwd) is not modelled above 1: no memory or "
                   "largest context ('-', null in --json).")
@click.option("--ulysses", type=WholeRange(min=1), metavar="U",
              help="[usp] Ulysses degree: all-to-all over U devices, a ring over devices / U groups.")
@click.option("--kernel", metavar="K", help="Attention kernel the GPU model times for the softmax schemes' prefill "
                                            "(default: FlashAttention-2); LASP's chunks run archsim's Lightning "
                                            "Attention-2 and a decode step Flash-Decoding: a kernel no point of the "
                                            "grid runs is refused.")
@click.option("--checkpointing", type=click.Choice(["layer", "none"]),
              help="[fwd+bwd] Activation checkpointing: layer (each layer's input kept, its forward recomputed "
                   "before its backward, so the time adds one more forward with its transfers: the Ring Attention "
                   "paper's) or none (every layer's activations kept, nothing recomputed). Default: layer.")
@click.option("--training-precision", type=click.Choice(["fp32", "mixed"]),
              help="[fwd+bwd] Training precision: fp32 (4 + 4 + 8 bytes per parameter, activations 4: the Ring "
                   "Attention paper's) or mixed (bf16 parameters and gradients, fp32 Adam: 2 + 2 + 12, "
                   "activations 2). Sets the memory only: the time is bf16's at either (the kernels and "
                   "transfers are costed in 16-bit words; fp32's a lower bound). Default: fp32.")
@click.option("--json", "as_json", is_flag=True, help='Print {"points": [one flat record per point]} as JSON.')
@click.option("--out", type=click.Path(file_okay=False), callback=nonempty,
              help="Also write parallel.csv and a report page (scaling figures, their CSVs, index.html) here.")
def parallel_cmd(schemes: list[str], devices: list[int], workload: str, seq_lens: list[int], topology: str | None,
                 gpu: str | None, system_name: str | None, batch: int, direction: str, scope: str, causal: bool,
                 tp: int | None, ulysses: int | None, kernel: str | None, checkpointing: str | None,
                 training_precision: str | None, as_json: bool, out: str | None) -> None:
    """Time one layer's attention cut over P devices by a sequence-parallel scheme: time per layer, communication
    hidden or exposed, the wait on another device's compute (LASP-1's chain; time = compute + exposed + wait), of
    the time a training step's recomputed forward (layer checkpointing), efficiency against one device, memory per
    device and the largest context that fits. A point whose efficiency exceeds 1 gets a note line saying why (its
    JSON row: "note").

    Every scheme x devices x seq-len is a point. Defaults: topology hgx-h100 and its GPU (another --gpu needs a
    --topology with its links), batch 1, fwd, attention only, causal; fwd+bwd with layer checkpointing (its
    recomputed forward in the time) and fp32 memory. Efficiency is the one-device time / P over the time.

    Examples:

    \b
      archsim parallel --scheme ring,zigzag,stripe --devices 2,4,8 --workload llama3-8b --seq-len 64K
      archsim parallel --scheme usp --ulysses 8 --devices 16 --workload llama3-8b --seq-len 128K --direction fwd+bwd
      archsim parallel --scheme lasp1 --devices 64 --workload linear-llama3-1b --seq-len 2M --topology dgx-a100 \\
          --direction fwd+bwd --checkpointing none --training-precision mixed
      archsim parallel --scheme ring,lasp1,lasp2 --devices 64 --workload linear-llama3-1b --seq-len 512K,2M \\
          --topology dgx-a100 --out reports/parallel
      archsim parallel --scheme lasp2h --devices 8 --workload linear-llama3-1b-hybrid --seq-len 16K \\
          --topology dgx-a100 --batch 8 --direction fwd+bwd --scope layer
      archsim parallel --system context-parallel-h100 --workload llama3-70b --seq-len 128K --scope layer
    """
    from archsim.model.gpu_kernels import KERNELS, kernel_attention
    from archsim.systems.seqpar_spec import DEFAULT_KERNEL, LINEAR_SCHEMES, unmodelled
    from archsim.systems.topology import ArrayDevice

    system = _system(system_name, topology, gpu)
    tp_field = None  # (file, field) of a tp the system spec sets (`System.blame`), which its refusal names
    if system is not None:
        from archsim.library import load_workload_spec

        schemes = schemes or [system.schedule.scheme]
        # the workload's own degrees where the spec names it (parallelism.by_workload), as the system runs it
        name = named("--workload", workload, load_workload_spec).name
        if tp is None:
            tp, tp_field = system.parallelism_for(name).tp, system.blame(name, "tp")
        if not devices:
            devices = [_system_cp(system, name, tp)]
        ulysses = ulysses or (system.schedule.ulysses if "usp" in schemes else None)
    for option, given in (("--scheme", schemes), ("--devices", devices)):
        if not given:
            raise click.UsageError(f"Missing option '{option}' (or give --system, whose it would be).")
    _check_point_count(len(schemes) * len(devices) * len(seq_lens))
    tp = tp or 1
    if ulysses is not None and unmodelled("ulysses", [ulysses], [(s, direction) for s in schemes]):
        raise click.UsageError("--ulysses applies to --scheme usp only")
    if ulysses is None and "usp" in schemes:
        raise click.UsageError("--scheme usp needs --ulysses U, its Ulysses degree (a divisor of --devices)")
    training = _training_settings(direction, tp, checkpointing, training_precision)
    _refuse_unmodelled(schemes, direction, kernel, causal)
    kernel_given = kernel
    if kernel is None:  # the system's attention kernel where a point runs it as its prefill's, else the default
        from archsim.systems.system_checks import context_parallel_gpu

        system_kernel = None if system is None else context_parallel_gpu(system).attention_kernel
        ran = system_kernel is not None and not unmodelled("kernel", [system_kernel], [(s, direction) for s in schemes])
        kernel = system_kernel if ran else DEFAULT_KERNEL
    if kernel not in KERNELS:
        raise SpecError("--kernel", kernel, f"expected one of {', '.join(_prefill_choices(direction, causal))}")
    softmax_schemes = [s for s in schemes if s not in LINEAR_SCHEMES]
    if softmax_schemes and direction != "decode" and kernel_attention(kernel) == "linear":  # no such point runs
        raise SpecError("--kernel", kernel, f"computes linear attention (LASP's chunks run it); expected a softmax "
                                            f"attention kernel for {', '.join(softmax_schemes)}")
    if out:
        check_writable(out, "--out", directory=True)
    base = replace(_first_point(schemes, devices[0], seq_lens[0], workload, topology, gpu, system, batch,
                                direction, scope, causal, tp, ulysses, kernel, kernel_given), **training)
    if tp_field is not None:  # every point shares the tp, topology and workload: refused once, naming the file
        from archsim.systems.seqpar_spec import check_tp

        check_tp(base, *tp_field)
    grid = [replace(base, scheme=s, devices=p, seq_len=n, ulysses=ulysses if s == "usp" else None)
            for s in schemes for p in devices for n in seq_lens]
    rows = grid_rows(grid)
    named_by = " (--system)" if system else "" if topology else " (default)"
    if (share := system and _system_share(system)) not in (None, 1):
        named_by += f" with {capacity_text(base.gpu.dram_bytes)} a GPU (memory_utilization {share:g})"
    kernels = base.attention_kernel if isinstance(base.gpu, ArrayDevice) else _prefill_kernels(kernel, schemes)
    title = (f"{base.workload.name} on {base.topology.name}{named_by}, {base.gpu.name}"
             f"{f' x tp {tp} per rank' if tp > 1 else ''}, batch {batch}, {'causal' if causal else 'full'}, "
             f"{direction}, {scope}{f', ulysses {ulysses}' if ulysses else ''}, "
             f"{_decode_kernel() if direction == 'decode' else kernels}"
             + (f", checkpointing {base.checkpointing}, {base.training_precision} precision" if training else ""))
    if out:
        from archsim.report.parallel import write_parallel_report

        write_parallel_report(rows, Path(out), title)
    if as_json:
        click.echo(json.dumps({"points": [nan_as_null(row) for row in rows]}, indent=2))
        return
    _show(title, rows)
    if out:
        click.echo(f"rows written to {out}/parallel.csv, report to {out}/index.html")


def _training_settings(direction: str, tp: int, checkpointing: str | None, precision: str | None) -> dict[str, str]:
    """The training settings given (`ParallelSpec` fields), refused with another direction than fwd+bwd, and one
    that sets the memory only (`seqpar_spec.MEMORY_ONLY`: the precision) with --tp above 1, where the training memory
    is not modelled (a usage error naming the option, as --ulysses without usp); those not given keep the spec's
    defaults."""
    from archsim.systems.seqpar_spec import MEMORY_ONLY, TRAINING_SETS

    given = {"checkpointing": checkpointing, "training_precision": precision}
    for field, value in given.items():
        if value is not None and direction != "fwd+bwd":
            raise click.UsageError(f"{FIELD_OPTIONS[field]} applies to --direction fwd+bwd only (it sets "
                                   f"{TRAINING_SETS[field]}), got --direction {direction}")
        if value is not None and field in MEMORY_ONLY and tp > 1:
            raise click.UsageError(f"{FIELD_OPTIONS[field]} sets {TRAINING_SETS[field]}, which is not modelled "
                                   f"at --tp above 1, got --tp {tp}")
    return {field: value for field, value in given.items() if value is not None}


def _refuse_unmodelled(schemes: list[str], direction: str, kernel: str | None, causal: bool) -> None:
    """Refuse a `--kernel` no point of the grid runs and `--no-causal` with decode (module docstring): a usage
    error naming the option, as --ulysses without usp."""
    from archsim.systems.seqpar_spec import attention_kernel, unmodelled

    points = [(s, direction) for s in schemes]
    if kernel is not None and unmodelled("kernel", [kernel], points):
        runs = dict.fromkeys(attention_kernel(s, direction, kernel) for s in schemes)
        raise click.UsageError(f"--kernel {kernel!r} sets the softmax schemes' prefill kernel, which no point runs: "
                               f"--scheme {','.join(schemes)} at --direction {direction} runs {', '.join(runs)}; "
                               f"drop it")
    if unmodelled("causal", [causal], points):
        raise click.UsageError("--no-causal sets the prefill's mask: a decode step's one query attends every cached "
                               "token (causal); drop it")


def _prefill_choices(direction: str, causal: bool) -> list[str]:
    """The kernels `--kernel` can name for the softmax schemes' prefill at `direction` (a name it does not know
    reaches no other point: `_refuse_unmodelled`): softmax kernels with a path for it, the causal-variant name only
    for a causal run."""
    from archsim.model.gpu_kernels import KERNELS, causal_name_problem, direction_problem, kernel_attention

    return [name for name in sorted(KERNELS) if kernel_attention(name) == "softmax"
            and not direction_problem(name, direction) and not causal_name_problem(name, causal, direction)]


def _prefill_kernels(kernel: str, schemes: list[str]) -> str:
    """The kernels the grid's prefill runs, for the title: `kernel`, and LASP's chunks' (`LINEAR_KERNEL`; a hybrid
    scheme runs both)."""
    from archsim.systems.seqpar_compute import LINEAR_KERNEL
    from archsim.systems.seqpar_spec import LASP_SCHEMES, LINEAR_SCHEMES

    if not any(s in LASP_SCHEMES for s in schemes):
        return kernel
    if all(s in LINEAR_SCHEMES for s in schemes):
        return LINEAR_KERNEL
    return f"{kernel} (LASP chunks: {LINEAR_KERNEL})"


def _system_share(system) -> float | None:
    """The share of each GPU's DRAM a context-parallel system's engine holds (its `memory_utilization`; None: all),
    which `topology_of` gives its GPUs and the title says."""
    from archsim.systems.system_checks import context_parallel_gpu

    return context_parallel_gpu(system).memory_utilization


def _system(name: str | None, topology: str | None, gpu: str | None):
    """The context-parallel system `--system` names (None without it): refused beside --topology or --gpu, which it
    sets, and when it is a spec of another schedule (its devices are not one GPU kind over a tp and a cp link)."""
    if name is None:
        return None
    if topology or gpu:
        raise click.UsageError("--system sets the devices and their topology: drop --topology and --gpu")
    from archsim.systems.system_spec import load_system
    from archsim.systems.system_types import CONTEXT_PARALLEL

    system = named("--system", name, load_system)
    if system.schedule.kind != CONTEXT_PARALLEL:
        raise SpecError(system.source, "schedule.kind", f"--system takes a {CONTEXT_PARALLEL} system (its GPUs and "
                                                        f"links are the topology), got {system.schedule.kind}")
    return system


def _system_cp(system, workload_name: str, tp: int) -> int:
    """The system's cp, the grid's device count when --devices is not given, refused at `tp` (--tp's or the spec's)
    as `archsim simulate` refuses it (`system_checks.check_degrees`): tp x cp GPUs beyond a node without a link
    named cp is a SpecError naming the file's `links.cp`, not the --devices the user did not give."""
    from archsim.systems.system_checks import check_degrees

    parallelism = replace(system.parallelism_for(workload_name), tp=tp)
    check_degrees(system, parallelism, None, functools.partial(system.blame, workload_name))
    return parallelism.cp


def _first_point(schemes: list[str], p: int, n: int, workload: str, topology: str | None, gpu: str | None,
                 system, batch: int, direction: str, scope: str, causal: bool, tp: int, ulysses: int | None,
                 kernel: str, kernel_given: str | None):
    """The grid's first point (of its first scheme), which the others vary; a name that finds no preset or file is
    named by its option. On arrays (a topology whose `device` is not a GPU) what no point has an array form of is
    refused first, naming its option (`_refuse_on_arrays`)."""
    from archsim.library import load_workload_spec
    from archsim.systems.links import load_gpu_with_host_link
    from archsim.systems.seqpar_spec import ParallelSpec, check_workload, memory_modelled
    from archsim.systems.topology import load_topology

    model = named("--workload", workload, load_workload_spec)
    if system is not None:
        from archsim.systems.context_parallel import topology_of

        network = topology_of(system)
    else:
        network = named("--topology", topology or DEFAULT_TOPOLOGY, load_topology)
    device = named("--gpu", gpu, load_gpu_with_host_link) if gpu else network.gpu
    if topology is None and system is None:
        _refuse_default_links(gpu, device, network)
    _refuse_on_arrays(device, schemes, direction, scope, kernel_given, causal)
    # what no point of the grid could run (they share direction and tp): exit 2, not a grid of infeasible rows
    check_workload(model, memory_modelled(direction, tp, device), scope == "layer", device)
    return ParallelSpec(schemes[0], p, model, n, device, network, batch=batch, causal=causal, direction=direction,
                        scope=scope, tp=tp, ulysses=ulysses, kernel=kernel)


def _refuse_on_arrays(device, schemes: list[str], direction: str, scope: str, kernel: str | None,
                      causal: bool) -> None:
    """On arrays, refuse (exit 2 naming the option) a --direction, --scope, --scheme or a --kernel (any: an array's
    blocks run its mappings) that has no array form (`seqpar_spec.check_array`), and a causal run on a device
    without a causal mapping (exit 2 naming the topology file's `device.causal_mapping`: every point has a causal
    block, `seqpar_compute.block_mapping`); a GPU passes."""
    from archsim.systems.seqpar_compute import block_mapping
    from archsim.systems.seqpar_spec import DEFAULT_KERNEL, check_array
    from archsim.systems.topology import ArrayDevice

    if not isinstance(device, ArrayDevice):
        return
    if kernel is not None:
        raise SpecError("--kernel", "", f"{kernel} is a GPU kernel: an array's blocks run its mappings "
                                        f"({device.mappings}); drop it")
    try:
        for scheme in schemes:
            check_array(device, scheme, direction, scope, DEFAULT_KERNEL)
    except SpecError as error:
        raise SpecError(FIELD_OPTIONS[error.where], "", error.message) from None
    block_mapping(device, causal)


def _check_point_count(points: int) -> None:
    """Refuse, before any work, more points than ARCHSIM_MAX_PARALLEL_POINTS (`MAX_POINTS`; a point takes about 0.1 s,
    its rows printed at the end): the lists of --scheme, --devices and --seq-len are crossed."""
    from archsim.limits import env_limit

    most = env_limit(MAX_POINTS_ENV, MAX_POINTS)
    if points > most:
        raise LimitError("--seq-len", "", f"--scheme x --devices x --seq-len make {points:,} points, over the limit of "
                                          f"{most:,} (about 0.1 s each, printed at the end): give shorter lists, or "
                                          f"raise {MAX_POINTS_ENV}")


def _refuse_default_links(gpu: str | None, device: GPU, network: Topology) -> None:
    """Refuse a `--gpu` other than the default topology's own GPU (module docstring): its links are that GPU's, so
    timing another GPU over them would answer for links the user never chose. The same GPU read from another file,
    under any name (`same_hardware`), is the topology's. The SpecError names `--gpu` and the library topologies whose
    GPU is this one."""
    from archsim import library
    from archsim.arch.gpu import same_hardware
    from archsim.systems.topology import PRESETS_PACKAGE, load_topology

    if same_hardware(device, network.gpu):
        return
    matching = [name for name in library.names("topology presets", PRESETS_PACKAGE)
                if same_hardware(device, load_topology(name).gpu)]
    offer = (f"--topology {', '.join(matching)} (library topologies of {device.name}) or --topology FILE" if matching
             else f"--topology FILE (no library topology has {device.name}: see archsim list)")
    links = " then ".join(level.link.name for level in network.levels)
    other = (f"{device.source}, whose fields differ from the preset's" if device.name == network.gpu.name
             else f"{device.name}'s links")
    raise SpecError("--gpu", gpu or "", f"the default topology {network.name} joins {network.gpu.name} GPUs over "
                                        f"{links}, not {other}: give a topology with them, {offer}")


def grid_rows(grid: list) -> list[dict]:
    """Each point of the grid as a flat row (`_point_row`); a point the model rejects is a row with feasible False,
    NaN metrics and the reason. A SpecError instead when the grid is one point, or when every point is rejected by
    the same option that the grid does not sweep (`--scope layer` at decode, a `--tp` beyond a node): that option
    is bad input whatever the point, as a single point and a sweep's parallel block refuse it."""
    from archsim.systems.seqpar import ParallelResult

    rows, refusals = [], []
    for spec in grid:
        try:
            rows.append(_point_row(spec))
        except SpecError as error:
            if len(grid) == 1:
                raise
            refusals.append(error)
            rows.append(_blank_row(ParallelResult.blank(spec), str(error)))
    options = {error.source for error in refusals}
    if len(refusals) == len(grid) and len(options) == 1 and options <= set(FIELD_OPTIONS.values()) - SWEPT:
        raise refusals[0]
    return rows


def _point_row(spec) -> dict:
    """One point as a flat row: the record's row (`Record.row()`: target_kind, target, feasible, reason, its
    fields) and the hidden communication; a point that does not fit has no numbers, as a sweep stores it, and its
    reason. A spec the model rejects is its SpecError, the model's field named as its option."""
    from archsim.systems import seqpar_compute, seqpar_memory
    from archsim.systems.seqpar import parallel_time

    try:
        result = parallel_time(spec)
    except SpecError as error:
        if error.source in (seqpar_compute.SOURCE, seqpar_memory.SOURCE, "<python>") and error.where in FIELD_OPTIONS:
            raise SpecError(FIELD_OPTIONS[error.where], "", error.message) from None
        raise
    record = result.record()
    if not record.feasible:
        return _blank_row(result, record.reason)
    return {**record.row(), "hidden_comm_s": result.hidden_comm_s}


def _blank_row(result, reason: str) -> dict:
    """An infeasible point's row: the record's row (`Record.row()`: every metric NaN) with `reason`."""
    return {**replace(result.record(), feasible=False, reason=reason).row(), "hidden_comm_s": math.nan}


def _show(title: str, rows: list[dict]) -> None:
    click.echo(f"{title}; per layer")
    widths = [max(len(header), 8) for header, _, _ in TEXT_COLUMNS]
    click.echo(f"{'scheme':<13} {'P':>5} {'N':>9}  "
               + " ".join(f"{header:>{w}}" for (header, _, _), w in zip(TEXT_COLUMNS, widths, strict=True)))
    for row in rows:
        lead = f"{row['scheme']:<13} {row['devices']:>5} {row['seq_len']:>9}  "
        if not row["feasible"]:
            click.echo(f"{lead}infeasible: {row['reason']}")
            continue
        click.echo(lead + " ".join(f"{show(row[key]):>{w}}" for (_, key, show), w in zip(TEXT_COLUMNS, widths,
                                                                                          strict=True)))
    for row in rows:
        if row["feasible"] and row["note"]:
            click.echo(f"note: {row['scheme']} P={row['devices']} N={row['seq_len']}: {row['note']}")


def _decode_kernel() -> str:
    from archsim.systems.seqpar_compute import DECODE_KERNEL

    return DECODE_KERNEL
