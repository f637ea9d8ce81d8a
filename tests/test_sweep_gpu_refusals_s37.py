"""Audit s37 (api-gpu): a sweep's sizes without a workload, a GPU spec's missing fp16 peak, and the leave-one-GPU-out
fold's account of the parameters it carries from one family's fit to another family with no rows."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.spec import sweep_from_dict
from archsim.errors import SpecError
from archsim.gpu.calibrate import at_bound, fit_family
from archsim.gpu.cases import resolve
from archsim.gpu.load import gpu_from_dict
from archsim.gpu.measurements import read_measurements
from archsim.gpu.params import load_calibration
from archsim.gpu.validate import validate, validation_to_dict

BW = "arch.memories.DRAM.bandwidth_bytes_per_s"
MODEL_SIZES = ("batch", "heads", "seq_len", "head_dim", "word_bytes")  # attention-1pass binds these (its params)


def _sweep(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "objectives": ["latency_s", "energy_pj"], **fields}))
    return path


def _one_line(result) -> str:
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ------------------------------------------------------------------------------------- 1. a size axis, no workload


def test_a_size_axis_without_a_workload_is_refused_at_load(cli, tmp_path: Path) -> None:
    """The audit's sweep: no workload, axis workload.seq_len: every point failed alike ("batch: missing: seq_len set
    without a workload"), yet the base point (no size axis: the cascade's seq_len 16 under FuseMax's 256-key tiles)
    failed otherwise, so the sweep exited 0 with a store of 4 infeasible points. README "A base no point can run
    on": exit 2, one line, no store."""
    path = _sweep(tmp_path, mapping="fusemax", axes={BW: [1e11, 4e11], "workload.seq_len": [1024, 4096]})
    db = tmp_path / "x.sqlite"
    text = _one_line(cli("sweep", str(path), "--db", str(db), expect=2))
    assert text.startswith(f"error: {path}: workload: missing: axes.workload.seq_len set without a workload")
    assert "(batch 2, heads 2, head_dim 8, word_bytes 2 would be its test sizes)" in text and not db.exists()


def test_a_size_axis_without_a_workload_is_a_spec_error_in_python(tmp_path: Path) -> None:
    data = {"name": "s", "mapping": "fusemax", "axes": {"workload.seq_len": [1024, 4096]},
            "objectives": ["latency_s", "energy_pj"]}
    with pytest.raises(SpecError) as caught:
        sweep_from_dict(data, "s.yaml")
    assert (caught.value.source, caught.value.where) == ("s.yaml", "workload")


# ------------------------------------------------------------------------------------- 2. no size at all, no workload


def test_a_sweep_without_a_workload_does_not_run_on_the_test_sizes(cli, tmp_path: Path) -> None:
    """FuseMax with 16-key tiles fits attention-1pass's test sizes (batch 2, heads 2, seq_len 16, head_dim 8): the
    sweep had run there, 2 feasible points at 1.45e-07 s, nothing saying these were test sizes."""
    mapping = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    (tmp_path / "m16.yaml").write_text(yaml.safe_dump({**mapping, "name": "fusemax-16", "set": {"M0": 16}}))
    path = _sweep(tmp_path, mapping="m16.yaml", axes={BW: [1e11, 4e11]})
    db = tmp_path / "x.sqlite"
    text = _one_line(cli("sweep", str(path), "--db", str(db), expect=2))
    assert text.startswith(f"error: {path}: workload: missing: ")
    assert "test sizes" in text and "sets or axes: batch=N, heads=N, seq_len=N, head_dim=N, word_bytes=N" in text
    assert not db.exists()


def test_every_model_size_in_sets_needs_no_workload() -> None:
    """The sizes a workload would give, all given by the sweep (as `archsim run --set` may): nothing is a test size."""
    sets = {"batch": 64, "heads": 12, "head_dim": 64, "word_bytes": 2}
    spec = sweep_from_dict({"name": "s", "mapping": "fusemax", "sets": sets, "axes": {"workload.seq_len": [1024, 4096]},
                            "objectives": ["latency_s", "energy_pj"]}, "s.yaml")
    assert spec.workload is None and set(spec.sets) | {"seq_len"} == set(MODEL_SIZES)


# ------------------------------------------------------------------------------------- 4. a GPU spec without fp16


def _h100() -> dict:
    return yaml.safe_load((importlib.resources.files("archsim.gpu.presets") / "h100-sxm5.yaml").read_text())


def test_a_tensor_peak_without_fp16_says_fp16_is_missing() -> None:
    """It said "expected a mapping ... with at least fp16 ..., got dict", not what the mapping lacked."""
    data = _h100()
    del data["tensor_flops_per_s"]["fp16"]
    with pytest.raises(SpecError) as caught:
        gpu_from_dict(data, "mygpu.yaml")
    assert caught.value.where == "tensor_flops_per_s.fp16"
    assert caught.value.message.startswith("missing: ") and "(got bf16, tf32, fp8)" in caught.value.message


def test_a_tensor_peak_that_is_no_mapping_says_what_it_got() -> None:
    data = {**_h100(), "tensor_flops_per_s": 989.4e12}
    with pytest.raises(SpecError) as caught:
        gpu_from_dict(data, "mygpu.yaml")
    assert caught.value.where == "tensor_flops_per_s" and "got float" in caught.value.message


# ------------------------------------------------------------------------------------- 5. what a fold carries over

HEADER = "gpu,kernel,dtype,causal,batch,heads,head_dim,seqlen,direction,metric,value,unit"
# reports/measured/measured-NVIDIA-H200.csv: FlashAttention-2's backward, head_dim 64 (ms)
H200_FA2_BWD = ((32, 512, 0.825792), (8, 2048, 2.58872), (2, 8192, 9.64683))


def _two_gpus(tmp_path: Path) -> Path:
    """FlashAttention-2's backward on the H200 and one Triton tutorial backward on the A100 (its value an input)."""
    rows = [f"NVIDIA H200,FlashAttention-2,fp16,False,{b},32,64,{n},bwd,latency,{ms},ms" for b, n, ms in H200_FA2_BWD]
    rows.append("A100 80GB SXM4,Triton tutorial fused attention,fp16,False,4,32,64,2048,bwd,throughput,100,TFLOPs/s")
    path = tmp_path / "two-gpus.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def test_a_family_without_rows_says_which_parameters_come_from_another_family_s_fit(tmp_path: Path) -> None:
    """The A100's Triton tutorial has no row on the H200, so its fold keeps its priors, except autograd_s, which
    it shares from fa2 (`gpu_kernels._autograd_param`): fa2's fit on the H200 rows. The fold had said "priors
    only for triton_tutorial"; it now names the carried parameter and its value (fa2's own fit on those rows)."""
    path = _two_gpus(tmp_path)
    folds = {f.gpu: f for f in validate(path, load_calibration(), leave_one_gpu_out=True).folds}
    h200_rows, _ = resolve(read_measurements(path)[0][:3])
    autograd_s = fit_family("fa2", h200_rows)[0]["autograd_s"]
    a100 = folds["a100-80gb-sxm4"]
    assert a100.prior_families == ("triton_tutorial",)
    assert [(c.family, c.parameter, c.from_family) for c in a100.carried] == [("triton_tutorial", "autograd_s", "fa2")]
    assert a100.carried[0].value == autograd_s
    bound = at_bound("fa2", "autograd_s", autograd_s)
    assert a100.priors_note() == ("; priors only for triton_tutorial (no rows on another GPU), but autograd_s "
                                  f"{autograd_s:.3g}{f' (at its {bound} bound)' if bound else ''} of triton_tutorial "
                                  "from fa2's fit")
    assert (folds["h200-sxm"].prior_families, folds["h200-sxm"].carried) == (("fa2",), ())  # fa2 shares nothing


def test_the_json_folds_list_the_carried_parameters(tmp_path: Path) -> None:
    path = _two_gpus(tmp_path)
    data = validation_to_dict(validate(path, load_calibration(), leave_one_gpu_out=True))
    (a100,) = [f for f in data["leave_one_gpu_out"] if f["gpu"] == "a100-80gb-sxm4"]
    assert [(c["family"], c["parameter"], c["from"]) for c in a100["parameters_from_other_families"]] == [
        ("triton_tutorial", "autograd_s", "fa2")]


def test_validate_prints_the_carried_parameters(cli, tmp_path: Path) -> None:
    """`archsim validate --split leave-one-gpu-out` prints the fold's note (it printed "priors only for ..." alone)."""
    out = cli("validate", "--measurements", str(_two_gpus(tmp_path)), "--split", "leave-one-gpu-out").output
    (line,) = [line for line in out.splitlines() if line.startswith("left-out GPU a100-80gb-sxm4")]
    assert line.endswith("of triton_tutorial from fa2's fit")


# ------------------------------------------------------------------------------------- a kernel name, a GPU label
def test_a_misspelt_kernel_is_a_spec_error_not_an_infeasible_call() -> None:
    from archsim.gpu.load import load_gpu
    from archsim.model.gpu import AttentionCase
    from archsim.model.gpu_kernels import predict, predict_varlen

    case = AttentionCase("fwd", 1, 8, 8, 64, 1024, False, "fp16")
    for call in (lambda: predict("FlashAttention-9", case, load_gpu("h100-sxm5"), {}),
                 lambda: predict_varlen("FlashAttention-9", case, [1024], load_gpu("h100-sxm5"), {})):
        with pytest.raises(SpecError) as caught:
            call()
        assert caught.value.where == "kernel" and "unknown kernel 'FlashAttention-9'" in caught.value.message


def test_an_ambiguous_label_is_told_what_sets_its_presets_apart() -> None:
    """'A100' fits a100-40gb-sxm4 and a100-80gb-sxm4: the hint names an A100's memory and form ('SXM5' is none)."""
    from archsim.gpu.load import gpu_for

    with pytest.raises(SpecError, match=r"e\.g\. '40GB SXM4'"):
        gpu_for("A100")
