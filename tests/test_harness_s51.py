"""The measurement harness (audit s51): `archsim measure`, `calibrate` and `validate` and the kernels they time.

1. A row's digest (`row_digest`, what tells the rows a calibration was fitted on) is of its time rounded to 12
   significant digits: 657.088 us and 0.657088 ms are one time (657.088e-6 != 0.657088e-3 as floats).
2. A case `archsim measure` wrote as a latency row and a throughput row is one timing: it counts once, by its
   latency row, in validate's rows and MAPE and in calibrate's fit (the throughput row is skipped with that
   reason).
3. The block-sparse timing runs the kernel alone: its block list is checked once, before timing.
4. A Triton kernel that fails to compile or launch (triton's OutOfResources, an Exception) is a case not measured,
   its rows written without a value and with the reason, not a traceback.
5. Each kernel's output equals what `archsim execute` computes for the cascade it names (`CASCADE` and the
   module's other `CASCADE_*`), at a tiny size and seed: vertical_slash attends whole 64-wide windows, so its
   cascade is `minference-vertical-slash-kernel`, not the token-level `minference-vertical-slash`.
6. A malformed field names the file's line, blank lines counted, and validate's text names the lines of the rows
   it skipped.
7. (review) Only triton's errors make a case not measured; any other RuntimeError (a sticky CUDA error) ends the
   run, and a rerun measures a case not measured again, its rows replacing the "n/a" ones.
8. (review) A calibration fitted on the file validated (its sha256) none of whose fitted_rows is a row of it (an
   older digest) is refused, not split all held-out.
9. (review) calibrate's "nothing to fit" counts each timing once, as the fit does.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cascade.bind import bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.calibrate import calibrate
from archsim.gpu.measurements import ONE_TIMING, read_measurements, row_digest, skip_reasons
from archsim.gpu.params import load_calibration
from archsim.gpu.validate import validate

HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
# /tmp/s51audK/good.csv's rows: archsim's flash forward at b 8, h 16, d 128, 2048 tokens (FLOPs 4·8·16·2048²·128 =
# 2.749e11, so 0.657088 ms is 418.327 TFLOPs/s) and its Flash-Decoding at 2048 keys
FWD = "NVIDIA H200,archsim FlashAttention-2 (Triton),fp16,False,8,16,128,2048,fwd"
DECODE = "NVIDIA H200,archsim Flash-Decoding split-KV GQA (Triton),fp16,False,1,16q/2kv,128,2048,decode"
FWD_GROUP = "NVIDIA H200 | archsim FlashAttention-2 (Triton) | fwd"


def _csv(path: Path, *rows: str) -> Path:
    path.write_text("\n".join((HEADER, *rows)) + "\n", encoding="utf-8")
    return path


# 1. one time, any unit

@pytest.mark.parametrize(("row", "scale"), [
    ("latency,657.088,us", 1e-6), ("latency,0.000657088,s", 1.0), ("latency,657088,ns", 1e-9),
    ("throughput,418327,GFLOPs/s", None)])
def test_a_row_in_another_unit_has_the_same_digest(tmp_path: Path, row: str, scale: float | None) -> None:
    (ms,), _ = read_measurements(_csv(tmp_path / "ms.csv", f"{FWD},latency,0.657088,ms"))
    (respelt,), _ = read_measurements(_csv(tmp_path / "other.csv", f"{FWD},{row}"))
    (tflops,), _ = read_measurements(_csv(tmp_path / "tflops.csv", f"{FWD},throughput,418.327,TFLOPs/s"))
    if scale == 1e-6:  # the floats differ in the last bit: a digest of the float itself told them apart
        assert 657.088 * 1e-6 != 0.657088 * 1e-3 and respelt.time_s != ms.time_s
    assert row_digest(respelt) == row_digest(ms if scale else tflops)
    (other,), _ = read_measurements(_csv(tmp_path / "slower.csv", f"{FWD},latency,0.657089,ms"))
    assert row_digest(other) != row_digest(ms)


def test_a_fitted_row_respelt_in_us_is_in_the_calibration_split(tmp_path: Path) -> None:
    """The auditor's repro: calibrate archsim's family on the ms row, validate the same row written in us."""
    fitted = calibrate(_csv(tmp_path / "ms.csv", f"{FWD},latency,0.657088,ms"), ("archsim",), load_calibration("v1"))
    (row,) = validate(_csv(tmp_path / "us.csv", f"{FWD},latency,657.088,us"), fitted).comparisons
    assert row.split == "calibration"


# 2. one entry per measured case

def _pair_and_decode(tmp_path: Path) -> Path:
    """Lines 2-3: one flash forward timed as latency and throughput (as `archsim measure` writes it); line 4: a
    decode latency. Two timings."""
    return _csv(tmp_path / "pair.csv", f"{FWD},latency,0.657088,ms", f"{FWD},throughput,418.327,TFLOPs/s",
                f"{DECODE},latency,33.024,us")


def test_validate_counts_a_latency_and_throughput_pair_once_by_its_time(tmp_path: Path) -> None:
    """Two timings, two rows compared; the forward's MAPE is |predicted / measured time - 1| of its one timing
    (the pair had counted as two rows, averaging +x % in latency with -x / (1 + x) in throughput)."""
    result = validate(_pair_and_decode(tmp_path), load_calibration())
    assert len(result.comparisons) == 2
    (fwd,) = [c for c in result.comparisons if c.measurement.case.direction == "fwd"]
    assert (fwd.measurement.metric, fwd.measurement.line) == ("latency", 2)
    time_error = fwd.result.time_s / 0.657088e-3 - 1
    assert result.mape()[FWD_GROUP] == pytest.approx(100 * abs(time_error), rel=1e-9)
    (twin,) = result.skipped
    assert twin.line == 3 and twin.reason == ONE_TIMING


def test_calibrate_fits_each_timing_once(tmp_path: Path) -> None:
    """The auditor's "3 rows, time MAPE 0.00 %" for two timings: two rows fitted, two digests recorded."""
    fitted = calibrate(_pair_and_decode(tmp_path), ("archsim",), load_calibration("v1"))
    assert fitted.fit["archsim"]["rows"] == fitted.measurements["calibration_rows"] == 2
    assert len(fitted.measurements["fitted_rows"]) == 2 and fitted.measurements["rows"] == 3


# 3. the block-sparse kernel timed alone

def test_the_block_sparse_timing_runs_the_kernel_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`check_block_list` (three host syncs and a sort) runs once, when the timed call is built, not in it."""
    from triton_cpu import DEVICE  # the interpreter on before the kernel modules load

    # isort: split
    from archsim.kernels import block_sparse

    from archsim.commands.benchmarks import Case
    from archsim.commands.measure import _runner

    checks = []
    real = block_sparse.check_block_list
    monkeypatch.setattr(block_sparse, "check_block_list", lambda *args: checks.append(args) or real(*args))
    timed = _runner(Case("block_sparse", "fwd", True, 1, 2, 16, 128, "fp32", block_topk=2), DEVICE)
    assert len(checks) == 1
    out = timed()
    assert len(checks) == 1 and tuple(out.shape) == (1, 2, 128, 16)


# 4. a Triton failure is a case not measured

def test_a_triton_failure_is_a_case_skipped_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the command sets it; this restores it afterwards
    pytest.importorskip("torch")
    errors = pytest.importorskip("triton.runtime.errors")
    from archsim.kernels import flash_fwd

    real = flash_fwd.flash_fwd

    def causal_too_big(q, k, v, causal=False, **kwargs):
        if causal:
            raise errors.OutOfResources(232448, 101376, "shared memory")
        return real(q, k, v, causal=causal, **kwargs)

    monkeypatch.setattr(flash_fwd, "flash_fwd", causal_too_big)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(main, ["measure", "--interpret", "--kernels", "flash_fwd", "--max-seqlen", "32",
                                       "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert "not measured: OutOfResources: out of resource: shared memory, Required: 232448" in result.output
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    causal = [r for r in rows if r["causal"] == "True"]
    assert causal and all(r["value"] == "n/a" and "not measured: OutOfResources" in r["note"] for r in causal)
    assert all(float(r["value"]) > 0 for r in rows if r["causal"] == "False")


# 5. each kernel computes the cascade it names

def _executed(cascade: str, seed: int, **params: int) -> tuple[dict, dict]:
    """(inputs, every tensor) of `archsim execute CASCADE --set ... --seed SEED`."""
    binding = bind(library.load_cascade_spec(cascade), None, params, source="--set")
    inputs = random_inputs(binding, seed)
    with np.errstate(all="ignore"):
        return inputs, execute(binding, inputs)


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).float()


def _dense(module: str, name: str) -> float:
    """naive / flash_fwd / flash_bwd / torch_attention against a dense cascade (scores unscaled: scale 1)."""
    import torch
    from archsim.kernels import flash_bwd, flash_fwd, naive, torch_attention

    causal = name.endswith("causal")
    inputs, tensors = _executed(name, 7, batch=2, heads=2, seq_len=48, head_dim=16,
                                **({"tile_kv": 16} if "1pass" in name else {}))
    q, k, v = (_tensor(inputs[x]) for x in "QKV")
    if module == "naive":
        out = naive.naive_attention(q, k, v, scale=1.0, causal=causal, block_m=16, block_n=16)
    elif module == "flash_fwd":
        out = flash_fwd.flash_fwd(q, k, v, scale=1.0, causal=causal, block_m=16, block_n=16)[0]
    elif module == "flash_bwd":  # the gradients of the cascade's AV, by autograd on its float64 twin
        out, lse = flash_fwd.flash_fwd(q, k, v, scale=1.0, causal=causal, block_m=16, block_n=16)
        dout = torch.randn(q.shape, generator=torch.Generator().manual_seed(5))
        grads = flash_bwd.flash_bwd(dout, q, k, v, out, lse, scale=1.0, causal=causal, block_m=16, block_n=16)
        twin = [t.double().requires_grad_() for t in (q, k, v)]
        scores = twin[0] @ twin[1].transpose(-1, -2)
        if causal:
            scores = scores.masked_fill(torch.ones(48, 48, dtype=torch.bool).triu(1), -math.inf)
        av = torch.softmax(scores, -1) @ twin[2]
        assert np.abs(av.detach().numpy() - tensors["AV"]).max() < 1e-6  # the twin is the cascade
        av.backward(dout.double())
        return max((g.double() - t.grad).abs().max().item() for g, t in zip(grads, twin, strict=True))
    elif name == torch_attention.CASCADE:  # its standard path: qkv packed, scaled by 1/sqrt(d) itself
        qkv = torch.stack([q * 16**0.5, k, v], dim=2).permute(0, 3, 2, 1, 4)  # [batch, seqlen, 3, heads, d]
        out = torch_attention.standard_attention(qkv.contiguous(), causal=False)
    else:
        out = torch_attention.sdpa_flash(*(t.transpose(1, 2) * (16**0.5 if t is q else 1) for t in (q, k, v)),
                                         causal=False)
    return float(np.abs(out.double().numpy() - tensors["AV"]).max())


def _decode(module: str, name: str) -> float:
    from archsim.kernels import decode, torch_attention

    inputs, tensors = _executed(name, 7, batch=2, heads=8, kv_heads=2, seq_len=80, head_dim=16,
                                **({"splits": 5} if name == decode.CASCADE else {}))
    q, k, v = _tensor(inputs["Q"])[:, :, None, :], _tensor(inputs["K"]), _tensor(inputs["V"])
    out = decode.decode_attention(q, k, v, scale=1.0, num_splits=5, block_n=16) if module == "decode" \
        else torch_attention.eager_decode(q * 16**0.5, k, v)
    return float(np.abs(out[:, :, 0].double().numpy() - tensors["AV"]).max())


def _lightning(module: str, name: str) -> float:
    from archsim.kernels import lightning

    binding = bind(library.load_cascade_spec(name), None, dict(batch=1, heads=2, seq_len=64, head_dim=16, block=16),
                   source="--set")
    inputs = {x: 0.5 * value for x, value in random_inputs(binding, 7).items()}  # |O| within fp32's reach
    tensors = execute(binding, inputs)
    out = lightning.lightning_attention(*(_tensor(inputs[x]) for x in "QKV"), block=16, block_f=16)
    return float(np.abs(out.double().numpy() - tensors["O"]).max() / np.abs(tensors["O"]).max())


def _per_head(selection: np.ndarray, batch: int, heads: int) -> np.ndarray:
    return np.nan_to_num(selection).reshape(batch, heads, *selection.shape[3:]) > 0


def _sparse(module: str, name: str) -> float:
    """The sparse kernels on the cascade's own selection (BSEL; VSEL and SSEL), K and V repeated per group."""
    import torch
    from archsim.kernels import block_sparse, vertical_slash

    b, h, g, n, d, block = 1, 4, 2, 64, 16, 16
    sizes = dict(k_b=2) if module == "block_sparse" else dict(last_q=8, k_v=6, k_s=6, sink_columns=2,
                                                               local_diagonals=2)
    inputs, tensors = _executed(name, 11, batch=b, heads=h, kv_heads=g, seq_len=n, head_dim=d, block=block, **sizes)
    q = _tensor(inputs["Q"])
    k, v = (_tensor(inputs[x]).repeat_interleave(h // g, 1) for x in "KV")
    if module == "block_sparse":
        chosen = _per_head(tensors["BSEL"], b, h)
        count = torch.from_numpy(chosen.sum(-1).astype(np.int32))
        index = torch.zeros(*chosen.shape, dtype=torch.int32)
        for i in np.ndindex(*chosen.shape[:3]):
            listed = np.flatnonzero(chosen[i])
            index[i][:listed.size] = torch.from_numpy(listed.astype(np.int32))
        out = block_sparse.block_sparse_attention(q, k, v, index, count, scale=1.0, block=block)
    else:
        def listed(kept: np.ndarray) -> torch.Tensor:
            width = int(kept.sum(-1).max())
            rows = [np.flatnonzero(kept[i]) for i in np.ndindex(*kept.shape[:2])]
            return torch.tensor(np.array([np.pad(r, (0, width - r.size), constant_values=r[0]) for r in rows],
                                         dtype=np.int32).reshape(*kept.shape[:2], width))

        out = vertical_slash.vertical_slash_attention(q, k, v, listed(_per_head(tensors["VSEL"], b, h)),
                                                      listed(_per_head(tensors["SSEL"], b, h)), scale=1.0,
                                                      block=block)
    return float(np.abs(out.double().numpy() - tensors["AV"]).max())


KERNEL_CASCADES = [  # (module, the attribute naming a cascade, how to run the module on it)
    ("naive", "CASCADE", _dense), ("naive", "CASCADE_CAUSAL", _dense),
    ("flash_fwd", "CASCADE", _dense), ("flash_fwd", "CASCADE_CAUSAL", _dense),
    ("flash_bwd", "CASCADE", _dense), ("flash_bwd", "CASCADE_CAUSAL", _dense),
    ("decode", "CASCADE", _decode), ("lightning", "CASCADE", _lightning),
    ("block_sparse", "CASCADE", _sparse), ("vertical_slash", "CASCADE", _sparse),
    ("torch_attention", "CASCADE", _dense), ("torch_attention", "CASCADE_FLASH", _dense),
    ("torch_attention", "CASCADE_DECODE", _decode),
]


def test_every_cascade_a_kernel_names_is_run_here() -> None:
    import importlib

    from triton_cpu import DEVICE  # noqa: F401 - the interpreter on before the kernel modules load

    named = {(module, attr) for module in ("naive", "flash_fwd", "flash_bwd", "decode", "lightning", "block_sparse",
                                           "vertical_slash", "torch_attention")
             for attr in dir(importlib.import_module(f"archsim.kernels.{module}")) if attr.startswith("CASCADE")}
    assert named == {(module, attr) for module, attr, _ in KERNEL_CASCADES}


@pytest.mark.parametrize(("module", "attr", "run"), KERNEL_CASCADES, ids=[f"{m}.{a}" for m, a, _ in KERNEL_CASCADES])
def test_each_kernel_computes_the_cascade_it_names(module: str, attr: str, run) -> None:
    """fp32 inputs: within 1e-5 of the float64 cascade (tests/test_kernels.py's fp32 tolerance; Lightning's
    relative to max |O|). The token-level `minference-vertical-slash` had been named: 3.58 away on its own
    selection (/tmp/s51audK/c3.py)."""
    import importlib

    from triton_cpu import DEVICE

    if DEVICE != "cpu":
        pytest.skip("the cascades run on the CPU; the comparison feeds the kernels CPU tensors")
    name = getattr(importlib.import_module(f"archsim.kernels.{module}"), attr)
    assert name in library.names("cascades")
    assert run(module, name) < 1e-5, name


# 6. lines, not data rows

def test_a_bad_field_names_its_line_counting_blank_lines(tmp_path: Path) -> None:
    """/tmp/s51audK/blank2.csv: header, a blank line, a good row, two blank lines, a row with batch=four (line 6,
    the second data row)."""
    path = tmp_path / "blank2.csv"
    path.write_text(f"{HEADER}\n\n{FWD},latency,0.657088,ms\n\n\n"
                    f"{FWD.replace(',8,16,128,2048,', ',four,16,128,4096,')},latency,1.27,ms\n", encoding="utf-8")
    with pytest.raises(SpecError) as error:
        read_measurements(path)
    assert error.value.where == "line 6, field 'batch'"


def test_validate_names_the_lines_it_skipped(tmp_path: Path) -> None:
    oom = [f"{FWD.replace(',2048,', f',{n},')},latency,OOM,ms" for n in (512, 1024, 4096, 8192, 16384, 32768, 65536)]
    path = _csv(tmp_path / "skips.csv", f"{FWD},latency,0.657088,ms", *oom,
                "NVIDIA H200,xformers,fp16,False,8,16,128,2048,fwd,latency,1.0,ms")
    result = CliRunner().invoke(main, ["validate", "--measurements", str(path)])
    assert result.exit_code == 0, result.output
    assert "  7  no measured value ('OOM'): lines 3, 4, 5, 6, 7 and 2 more" in result.output
    assert "  1  no model for kernel 'xformers': line 10" in result.output
    _, skipped = read_measurements(path)
    assert skip_reasons(skipped)[0] == ("no measured value ('OOM'): lines 3, 4, 5, 6, 7 and 2 more", 7)


# 7. a case not measured is Triton's failure alone, and a rerun tries it again (review s51)

def _flash_fwd_failing(monkeypatch: pytest.MonkeyPatch, error: Exception):
    """flash_fwd with its causal cases raising `error`; restores the real kernel when called."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # the command sets it; this restores it afterwards
    pytest.importorskip("torch")
    from archsim.kernels import flash_fwd

    real = flash_fwd.flash_fwd

    def failing(q, k, v, causal=False, **kwargs):
        if causal:
            raise error
        return real(q, k, v, causal=causal, **kwargs)

    monkeypatch.setattr(flash_fwd, "flash_fwd", failing)
    return lambda: monkeypatch.setattr(flash_fwd, "flash_fwd", real)


def _measure_flash_fwd(out: Path):
    return CliRunner().invoke(main, ["measure", "--interpret", "--kernels", "flash_fwd", "--max-seqlen", "32",
                                     "--out", str(out)])


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_runtime_error_of_a_triton_kernel_is_not_a_case_skipped(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """/tmp/s51rev/t9.py: a sticky CUDA error (or a runner's bug) is a RuntimeError, not triton's: it had been
    written "n/a" and the run went on, every later case on a broken context, and a rerun skipped the case for good.
    It raises (the CLI's internal error, exit 1), as before the not-measured rows, writing no row for the case."""
    _flash_fwd_failing(monkeypatch, RuntimeError("CUDA error: an illegal memory access was encountered"))
    out = tmp_path / "m.csv"
    result = _measure_flash_fwd(out)
    assert result.exit_code == 1  # the CLI's one line for an error it did not expect
    assert "(RuntimeError: CUDA error: an illegal memory access was encountered)" in result.output, result.output
    rows = _csv_rows(out) if out.exists() else []
    assert not any(r["causal"] == "True" or "not measured" in r["note"] for r in rows), rows


def test_a_case_not_measured_is_measured_again_by_a_rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A case written "n/a" (OutOfResources) is no measurement: a rerun into the same --out times it again and
    its new rows replace the "n/a" ones (one row per configuration, as `validate` requires); the cases measured
    the first time are kept, not timed again."""
    errors = pytest.importorskip("triton.runtime.errors")
    restore = _flash_fwd_failing(monkeypatch, errors.OutOfResources(232448, 101376, "shared memory"))
    out = tmp_path / "m.csv"
    assert _measure_flash_fwd(out).exit_code == 0
    first = _csv_rows(out)
    causal = [r for r in first if r["causal"] == "True"]
    assert causal and all(r["value"] == "n/a" for r in causal)
    restore()
    result = _measure_flash_fwd(out)
    assert result.exit_code == 0, (result.output, result.exception)
    kept = [line for line in result.output.splitlines() if line.endswith(", kept")]
    assert len(kept) == (len(first) - len(causal)) // 2 and all("causal=False" in line for line in kept)
    second = _csv_rows(out)
    keys = [tuple(r[c] for c in ("causal", "batch", "heads", "head_dim", "seqlen", "metric")) for r in second]
    assert len(keys) == len(set(keys)) == len(first)
    assert second[:len(first) - len(causal)] == [r for r in first if r["causal"] == "False"]
    assert all(float(r["value"]) > 0 and not r["note"].startswith("not measured") for r in second)


# 8. a calibration fitted before the 12-digit row digest (review s51)

def _digest_before_s51(m) -> str:
    """`row_digest` as it was before audit s51: the time in s as a float, not to 12 digits."""
    import hashlib
    import json

    from archsim.gpu.measurements import configuration

    gpu, kernel, case, metric = configuration(m)
    fields = [gpu, kernel, case.direction, case.batch, case.heads, case.kv_heads, case.head_dim, case.seqlen,
              case.causal, case.precision, metric, m.time_s]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:16]


def test_a_calibration_with_digests_of_before_is_refused_not_split_as_held_out(tmp_path: Path) -> None:
    """Fitted on this very file (its sha256 recorded) yet none of its fitted_rows is a row of it: its digests are
    of the older form. validate had labelled every fitted row held-out, its held-out MAPE the fit's own error."""
    from dataclasses import replace

    path = _pair_and_decode(tmp_path)
    fitted = calibrate(path, ("archsim",), load_calibration("v1"))
    assert validate(path, fitted).mape("held-out") == {}  # today's digests: every row in the calibration split
    measurements, _ = read_measurements(path)
    old = replace(fitted, source=str(tmp_path / "old.yaml"),
                  measurements={**fitted.measurements, "fitted_rows": [_digest_before_s51(m) for m in measurements
                                                                      if m.metric == "latency"]})
    assert not set(old.measurements["fitted_rows"]) & set(fitted.measurements["fitted_rows"])
    with pytest.raises(SpecError) as error:
        validate(path, old)
    assert (error.value.source, error.value.where) == (str(tmp_path / "old.yaml"), "measurements.fitted_rows")
    assert "older row digest; refit it with archsim calibrate" in error.value.message
    other = _csv(tmp_path / "other.csv", f"{FWD},latency,0.7,ms")  # another file: held out whole, as before
    assert [c.split for c in validate(other, old).comparisons] == ["held-out"]


def test_the_packaged_calibrations_keep_their_split() -> None:
    """v1's A100 rows (v2's kept_from too) and v2's own H200 rows match their records' digests: no refusal, and
    rows in both splits."""
    from archsim.commands.gpu import reference_csv

    h200 = Path(__file__).resolve().parent.parent / "reports" / "measured" / "measured-NVIDIA-H200.csv"
    for path, version in ((reference_csv(), "v1"), (reference_csv(), "v2"), (h200, "v2")):
        splits = {c.split for c in validate(path, load_calibration(version)).comparisons}
        assert splits == {"calibration", "held-out"}, (path, version)


# 9. calibrate's "nothing to fit" counts timings as the fit does (review s51)

def test_nothing_to_fit_counts_each_timing_once(tmp_path: Path) -> None:
    """The forward pair (lines 2-3) is one timing of archsim's family; it had been counted as 2 rows."""
    path = _csv(tmp_path / "pair.csv", f"{FWD},latency,0.657088,ms", f"{FWD},throughput,418.327,TFLOPs/s")
    result = CliRunner().invoke(main, ["calibrate", "--measurements", str(path), "--families", "fa2"])
    assert result.exit_code == 1
    assert "the families with rows there: archsim (1)" in result.output, result.output
    unknown = _csv(tmp_path / "l4.csv", *(f"{FWD.replace('NVIDIA H200', 'NVIDIA L4')},{r}"
                                          for r in ("latency,0.657088,ms", "throughput,418.327,TFLOPs/s")))
    result = CliRunner().invoke(main, ["calibrate", "--measurements", str(unknown)])
    assert result.exit_code == 1
    assert "; 1 of the split's rows: the GPU label 'NVIDIA L4' matches no preset" in result.output, result.output
