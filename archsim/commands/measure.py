"""`archsim measure`: time the Triton kernels of `kernels/` at the published benchmark shapes (or, with
`--grid heldout`, at shapes no calibration has seen: `archsim.commands.benchmarks.heldout_cases`) and append the rows
to a CSV in the schema of the reference `attention_measured.csv`.

On a GPU every case is timed with `triton.testing.do_bench` (median; its defaults: 25 ms warm-up, 100 ms of
repetitions, L2 flushed between runs) and converted to TFLOPs/s by the FlashAttention convention
(`benchmarks.attention_flops`); decode is reported as latency in us, Lightning Attention-2 as latency in ms.
Where each row says how it was obtained:
  gpu           the device name (torch.cuda.get_device_name)
  heads         query heads; `16q/2kv` for a GQA decode (the schema's form)
  how_obtained  the timing method, or "interpret (not a timing)" (`archsim validate` skips such rows)
  note          "key=value; ..." with sm_clock_mhz (read with nvidia-smi right after the case ran) and
                max_sm_clock_mhz, driver, cuda, triton, torch, the shape details (kv_heads) and the FLOP convention;
                first "not measured: ERROR: message" where Triton failed to compile or launch the kernel (one of
                triton's errors, such as OutOfResources; value "n/a"; "OOM" out of GPU memory), a case not measured
                that the run goes past and a later run into the same `--out` tries again, its rows replacing these.
                Any other error (a CUDA error such as an illegal memory access, which leaves the GPU unusable)
                ends the run, the rows of the cases before it kept.
`--interpret` runs the same pipeline on the CPU under TRITON_INTERPRET=1 at tiny shapes; its values are the
wall-clock time of one interpreted run and say nothing about any GPU. The kernel modules must not have been
imported in this process before with the interpreter off; without `--interpret`, a TRITON_INTERPRET that turns the
interpreter on is refused (exit 2), as its runs would be written as GPU timings. Runs into one `--out` at once
take turns per case (a lock on the sidecar `OUT.lock`, `_locked`): each case is measured and written once.
"""

from __future__ import annotations

import contextlib
import csv
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click

try:
    import fcntl
except ImportError:  # not POSIX (Windows): `_locked` takes no lock there
    fcntl = None

from archsim.commands.benchmarks import (
    DEFAULT_KERNELS,
    KERNELS,
    SPARSE_BLOCK,
    SPARSE_KERNELS,
    TORCH_KERNELS,
    Case,
    attention_flops,
    benchmark_cases,
    heldout_cases,
)
from archsim.commands.options import WholeRange, names_among
from archsim.errors import LimitError, SpecError
from archsim.gpu.measurements import INTERPRETED, read_csv_rows
from archsim.limits import env_limit
from archsim.outputs import atomic_file, check_writable

COLUMNS = ("source", "gpu", "kernel", "dtype", "causal", "batch", "heads", "head_dim", "seqlen", "direction",
           "metric", "value", "unit", "how_obtained", "note")
KEY_COLUMNS = ("gpu", "kernel", "dtype", "causal", "batch", "heads", "head_dim", "seqlen", "direction", "metric")
INTERPRET_MAX_SEQLEN = 64
GRIDS = {"published": benchmark_cases, "heldout": heldout_cases}
MAX_INTERPRET_SEQLEN = 1024  # ~5 s per kernel and shape on this CPU; ARCHSIM_MAX_INTERPRET_SEQLEN raises it
INTERPRET_SEQLEN_ENV = "ARCHSIM_MAX_INTERPRET_SEQLEN"
TIMED = "measured: triton.testing.do_bench, median (warmup 25 ms, rep 100 ms)"
FLOP_NOTE = "FLOPs=4*b*h*s^2*d (/2 causal) x2.5 bwd x3.5 fwd+bwd"
NOT_MEASURED = "not measured:"  # a note's start where the kernel failed to compile or launch: the reason follows
NO_GPU = ("error: no GPU available (torch.cuda.is_available() is False); run this on a CUDA GPU, or pass "
          "--interpret for a functional run on the CPU that times nothing")


def _parse_kernels(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    return names_among(param.opts[0], value, KERNELS, "kernel")


def _check_out(path: Path) -> None:
    """Before any work: `--out` can be written, and an existing non-empty file is a UTF-8 CSV with `COLUMNS`."""
    check_writable(path, "--out")
    if path.exists() and path.stat().st_size:
        header = tuple(read_csv_rows(path, f"the columns {','.join(COLUMNS)}")[0])
        if header != COLUMNS:
            raise SpecError(str(path), "line 1", f"--out exists with the columns {','.join(header)}; expected "
                                                 f"{','.join(COLUMNS)}")


def _row_key(row: dict) -> tuple[str, ...]:
    """What a row measured, as the CSV holds it (`KEY_COLUMNS`)."""
    return tuple(str(row[c]).strip() for c in KEY_COLUMNS)


def _not_measured(row: dict) -> bool:
    """A row written for a case Triton could not compile or launch (`NOT_MEASURED`): a later run tries it again."""
    return str(row.get("note") or "").startswith(NOT_MEASURED)


def _file_rows(path: Path) -> list[dict]:
    """The rows of the CSV at `path` by column ([] for a missing or empty file)."""
    if not path.exists() or not path.stat().st_size:
        return []
    header, *rows = read_csv_rows(path, f"the columns {','.join(COLUMNS)}")
    return [dict(zip(header, row, strict=False)) for row in rows]


def _measured(path: Path) -> set[tuple[str, ...]]:
    """The rows `path` holds already, by `_row_key`, but those of a case not measured (`_not_measured`): a case
    whose rows are all there is not measured again (a second row of one configuration makes the file unreadable to
    `validate`, and a killed run resumes)."""
    return {_row_key(row) for row in _file_rows(path) if not _not_measured(row)}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock (`fcntl.flock`) on the sidecar file `PATH.lock` (created, and left, beside `path`), so
    that of two runs into one CSV one at a time checks a case, measures it and appends its rows: the other then finds
    them and keeps them, never writing a case twice (nor timing on the GPU at the same time). Where fcntl is missing
    (not POSIX) nothing is locked: there two runs into one file at once may each write a case."""
    if fcntl is None:
        yield
        return
    try:
        lock = open(f"{path}.lock", "a")  # noqa: SIM115 - held across the yield
    except OSError as exc:
        raise SpecError("--out", str(path), f"cannot create its lock file {path}.lock: {exc.strerror or exc}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _append(path: Path, rows: list[dict]) -> None:
    """Add `rows` to the CSV atomically (the old rows and the new ones are written to a temporary file that then
    replaces it), so a run killed mid-write leaves the rows of the cases already done, each row whole. The old rows
    of `rows`' configurations written as not measured (`_not_measured`: a case tried again) are dropped, so that
    each configuration keeps one row; the other old rows are written back as they were (their text unchanged where
    nothing is dropped)."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    keys = {_row_key(r) for r in rows}
    old_rows = _file_rows(path)
    kept = [r for r in old_rows if not (_not_measured(r) and _row_key(r) in keys)]
    with atomic_file(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if len(kept) < len(old_rows):
            writer.writeheader()
            writer.writerows(kept)
        else:
            f.write(old)
            if not old:
                writer.writeheader()
        writer.writerows(rows)


def _nvidia_smi(fields: str, device_uuid: str) -> list[str]:
    """Values of `nvidia-smi --query-gpu=fields` for one GPU, or "unknown" for each when nvidia-smi fails."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits",
                              "-i", device_uuid], capture_output=True, text=True, timeout=30, check=True).stdout
        values = [v.strip() for v in out.strip().split(",")]
    except (OSError, subprocess.SubprocessError):
        values = []
    n = fields.count(",") + 1
    return values if len(values) == n else ["unknown"] * n


def _environment(interpret: bool) -> tuple[str, str, Callable[[], str]]:
    """(gpu column, note prefix, a function giving the current SM clock note) for this run."""
    import torch
    import triton

    versions = f"triton={triton.__version__}; torch={torch.__version__}"
    if interpret:
        cpu = platform.processor() or platform.machine()
        return "CPU (Triton interpreter)", f"TRITON_INTERPRET=1 on {cpu}; {versions}", lambda: "sm_clock_mhz=n/a"
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    uuid = str(props.uuid)
    uuid = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"  # the form nvidia-smi -i takes
    driver, max_clock = _nvidia_smi("driver_version,clocks.max.sm", uuid)
    prefix = (f"device={props.name}; max_sm_clock_mhz={max_clock}; driver={driver}; cuda={torch.version.cuda}; "
              f"{versions}")
    return props.name, prefix, lambda: f"sm_clock_mhz={_nvidia_smi('clocks.sm', uuid)[0]}"


def _runner(case: Case, device: str) -> Callable[[], object]:
    """A no-argument call of the case's kernel on random inputs (allocated here, before timing)."""
    import torch

    from archsim.kernels import block_sparse, decode, flash_bwd, flash_fwd, lightning, naive, vertical_slash

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[case.dtype]
    shape = (case.batch, case.heads, case.seqlen, case.head_dim)

    def rand(*size: int) -> torch.Tensor:
        return torch.randn(size, dtype=dtype, device=device)

    if case.kernel in TORCH_KERNELS:
        return _torch_runner(case, rand)
    if case.direction == "decode":
        q, k, v = _decode_inputs(case, rand)
        return lambda: decode.decode_attention(q, k, v)
    q, k, v = rand(*shape), rand(*shape), rand(*shape)
    if case.kernel == "naive":
        return lambda: naive.naive_attention(q, k, v, causal=case.causal)
    if case.kernel == "lightning":
        return lambda: lightning.lightning_attention(q, k, v, scale=case.head_dim**-0.5)
    if case.kernel == "block_sparse":  # the kernel alone: its block list is drawn and checked here, untimed
        index, count = block_sparse.random_block_list(case.batch, case.heads, case.seqlen, case.block_topk,
                                                      SPARSE_BLOCK, device=device)
        block_sparse.check_block_list(index, count, case.batch, case.heads, -(-case.seqlen // SPARSE_BLOCK))
        return lambda: block_sparse.block_list_attention(q, k, v, index, count, block=SPARSE_BLOCK)
    if case.kernel == "vertical_slash":  # the kernel alone: its index is built here, untimed (torch, not MInference's)
        pattern = vertical_slash.random_pattern(case.batch, case.heads, case.seqlen, case.vertical_size,
                                                case.slash_size, device=device)
        index = vertical_slash.vertical_slash_index(*pattern, case.seqlen, SPARSE_BLOCK)
        return lambda: vertical_slash.indexed_attention(q, k, v, index, block=SPARSE_BLOCK)
    if case.direction == "fwd":
        return lambda: flash_fwd.flash_fwd(q, k, v, causal=case.causal)
    dout = rand(*shape)
    if case.direction == "bwd":
        out, lse = flash_fwd.flash_fwd(q, k, v, causal=case.causal)
        return lambda: flash_bwd.flash_bwd(dout, q, k, v, out, lse, causal=case.causal)
    return lambda: flash_bwd.flash_bwd(dout, q, k, v, *flash_fwd.flash_fwd(q, k, v, causal=case.causal),
                                       causal=case.causal)


def _decode_inputs(case: Case, rand: Callable[..., object]) -> tuple:
    """q [batch, heads, 1, head_dim] and K, V [batch, kv_heads, seqlen, head_dim] of a decode case."""
    return rand(case.batch, case.heads, 1, case.head_dim), *(
        rand(case.batch, case.kv_heads, case.seqlen, case.head_dim) for _ in range(2))


def _torch_runner(case: Case, rand: Callable[..., object]) -> Callable[[], object]:
    """A call of PyTorch's path (`kernels/torch_attention.py`): eager decode at decode; else as the FlashAttention
    benchmark times it, the forward, the backward of one saved forward (`retain_graph`), or both. Input gradients
    are reset before each backward, so every one writes them afresh (the benchmark's `x.grad = None`)."""
    from archsim.kernels import torch_attention

    if case.direction == "decode":  # eager GQA decode
        q, k, v = _decode_inputs(case, rand)
        return lambda: torch_attention.eager_decode(q, k, v)
    b, s, h, d = case.batch, case.seqlen, case.heads, case.head_dim
    if case.kernel == "pytorch":
        inputs = (rand(b, s, 3, h, d).requires_grad_(),)
        dout = rand(b, h, s, d)
    else:
        inputs = tuple(rand(b, s, h, d).requires_grad_() for _ in range(3))
        dout = rand(b, s, h, d).transpose(1, 2)  # the output's own layout, so autograd copies nothing

    def forward() -> object:
        if case.kernel == "pytorch":
            return torch_attention.standard_attention(*inputs, causal=case.causal)
        return torch_attention.sdpa_flash(*inputs, causal=case.causal)

    def backward(out: object) -> None:
        for x in inputs:
            x.grad = None
        out.backward(dout, retain_graph=True)

    if case.direction == "fwd":
        return forward
    if case.direction == "bwd":
        saved = forward()
        return lambda: backward(saved)
    return lambda: backward(forward())


def _first_line(exc: BaseException) -> str:
    """An exception's message up to its first line break (its class name when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _time_ms(fn: Callable[[], object], interpret: bool) -> float:
    if interpret:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    import triton.testing

    return triton.testing.do_bench(fn, return_mode="median")


def _module(case: Case) -> str:
    """The module of kernels/ whose code the case runs: its kernel's name (`DEFAULT_KERNELS`, `SPARSE_KERNELS`), or
    torch_attention for PyTorch's paths (`_torch_runner`)."""
    return "torch_attention" if case.kernel in TORCH_KERNELS else case.kernel


def _rows(case: Case, time_ms: float | None, base: dict, note: str, missing: str = "OOM") -> list[dict]:
    """The CSV rows of one case: latency, plus throughput where the FLOP convention applies (time None: no value,
    written as `missing`, "OOM" or "n/a")."""
    row = {**base, "kernel": case.label, "dtype": case.dtype, "causal": case.causal,
           "batch": case.batch, "heads": case.heads, "head_dim": case.head_dim, "seqlen": case.seqlen,
           "direction": case.direction, "source": f"archsim measure (kernels/{_module(case)}.py)"}
    if case.direction == "decode":  # GQA heads as the measurements schema writes them: 16q/2kv
        row["heads"] = f"{case.heads}q/{case.kv_heads}kv"
        note += f"; kv_heads={case.kv_heads}; query length 1"
        return [{**row, "metric": "latency", "value": missing if time_ms is None else f"{time_ms * 1e3:.6g}",
                 "unit": "us", "note": note}]
    rows = [{**row, "metric": "latency", "value": missing if time_ms is None else f"{time_ms:.6g}", "unit": "ms",
             "note": note + case.pattern_note}]
    if case.kernel != "lightning" and case.kernel not in SPARSE_KERNELS:
        flops = attention_flops(case.batch, case.heads, case.seqlen, case.head_dim, case.causal, case.direction)
        value = missing if time_ms is None else f"{flops / (time_ms * 1e-3) / 1e12:.6g}"
        rows.append({**row, "metric": "throughput", "value": value, "unit": "TFLOPs/s", "note": f"{note}; {FLOP_NOTE}"})
    return rows


def _measure_case(case: Case, out: Path, device: str, interpret: bool, base: dict, prefix: str,
                  clock: Callable[[], str]) -> list[dict] | None:
    """Time `case` and append its rows to `out` (the caller holds `_locked(out)`); None, measuring nothing, where
    `out` holds its rows already (rows written as not measured do not count: the case is tried again). A case out of
    GPU memory is written "OOM"; a Triton kernel that fails to compile or launch (one of triton's errors,
    `TritonError`, such as OutOfResources for a tile the GPU's shared memory cannot hold) is a case not measured:
    its rows "n/a", the reason first in their note (`NOT_MEASURED`), and the run goes on. Any other RuntimeError
    of a Triton kernel (a CUDA error, which leaves the context unusable for the cases after it, or a bug) raises,
    writing nothing for the case. A PyTorch path that cannot run here exits 2."""
    import torch
    from triton.errors import TritonError

    if {_row_key(r) for r in _rows(case, None, base, "")} <= _measured(out):
        return None
    note, missing = f"{prefix}; {clock()}", "OOM"
    try:
        time_ms = _time_ms(_runner(case, device), interpret)
    except torch.cuda.OutOfMemoryError:
        time_ms = None
    except TritonError as exc:
        time_ms, missing = None, "n/a"
        note = f"{NOT_MEASURED} {type(exc).__name__}: {_first_line(exc)}; {prefix}; {clock()}"
    except RuntimeError as exc:  # PyTorch's flash backend refuses a GPU, dtype or head_dim it has no kernel for
        if case.kernel not in TORCH_KERNELS:
            raise
        click.echo(f"error: --kernels {case.kernel}: PyTorch cannot run it here ({case.direction}, {case.dtype}, "
                   f"head_dim {case.head_dim}): {_first_line(exc)}; the rows measured so far are in {out}", err=True)
        sys.exit(2)
    rows = _rows(case, time_ms, base, note, missing)
    _append(out, rows)
    if not interpret:
        torch.cuda.empty_cache()
    return rows


@click.command("measure")
@click.option("--kernels", "kernel_names", default=",".join(DEFAULT_KERNELS), show_default=True,
              callback=_parse_kernels, help=f"Comma-separated kernels to time, among {', '.join(KERNELS)}.")
@click.option("--out", default="measurements.csv", show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV to append the rows to (created with a header if missing).")
@click.option("--interpret", is_flag=True,
              help="Run on the CPU under TRITON_INTERPRET=1 at tiny shapes; rows are marked as not timings.")
@click.option("--max-seqlen", type=WholeRange(min=16), default=None,
              help=f"Longest sequence length to run [default: the published ones; {INTERPRET_MAX_SEQLEN} with "
                   "--interpret].")
@click.option("--grid", type=click.Choice(tuple(GRIDS)), default="published", show_default=True,
              help="The published benchmark shapes, or held-out shapes no calibration has seen (GQA/MHA/MQA decode "
                   "at large batch, 32K-64K causal prefill, head dims 32, 96 and 256, a length off every tile).")
def measure(kernel_names: tuple[str, ...], out: Path, interpret: bool, max_seqlen: int | None, grid: str) -> None:
    """Time the Triton attention kernels at the published benchmark shapes and append rows to a CSV.

    Example: archsim measure --kernels flash_fwd,flash_bwd --max-seqlen 4096 --out measurements.csv
    """
    _check_out(out)
    if interpret and max_seqlen is not None:
        limit = env_limit(INTERPRET_SEQLEN_ENV, MAX_INTERPRET_SEQLEN)
        if max_seqlen > limit:
            raise LimitError("--max-seqlen", str(max_seqlen), f"at most {limit} with --interpret (the interpreter "
                             f"takes seconds per kernel at 1K tokens); raise it with {INTERPRET_SEQLEN_ENV}")
    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # read by triton.jit when the kernel modules are imported
    try:
        import torch
        import triton
    except ImportError as exc:
        click.echo(f"error: {exc.name} is not installed; install the kernels extra: pip install 'archsim[kernels]'",
                   err=True)
        sys.exit(2)
    if not interpret and not torch.cuda.is_available():
        click.echo(NO_GPU, err=True)
        sys.exit(2)
    if not interpret and triton.knobs.runtime.interpret:  # the kernels would run interpreted, written as timings
        click.echo(f"error: TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '1')} is set: the kernels would run "
                   "in Triton's interpreter and be written as GPU timings; unset it, or pass --interpret", err=True)
        sys.exit(2)
    gpu, prefix, clock = _environment(interpret)
    base = {"gpu": gpu, "how_obtained": INTERPRETED if interpret else TIMED}
    device = "cpu" if interpret else "cuda"
    cases = GRIDS[grid](kernel_names, INTERPRET_MAX_SEQLEN if interpret and max_seqlen is None else max_seqlen,
                            tiny=interpret)
    written = 0
    for case in cases:
        with _locked(out):  # the file's rows are read again: a run into it meanwhile may have measured the case
            rows = _measure_case(case, out, device, interpret, base, prefix, clock)
        if rows is None:
            click.echo(f"{case.kernel:<10} {case.direction:<7} causal={case.causal!s:<5} b={case.batch} "
                       f"h={case.heads} d={case.head_dim} s={case.seqlen}: already in {out}, kept")
            continue
        written += len(rows)
        shown = ", ".join(f"{r['value']} {r['unit']}" for r in rows)
        if rows[0]["note"].startswith(NOT_MEASURED):
            shown = rows[0]["note"].split(f"; {prefix}")[0]
        click.echo(f"{case.kernel:<10} {case.direction:<7} causal={case.causal!s:<5} b={case.batch} h={case.heads} "
                   f"d={case.head_dim} s={case.seqlen}: {shown}")
    click.echo(f"appended {written} rows to {out}" + (" (interpreter: not timings)" if interpret else ""))
