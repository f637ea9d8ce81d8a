"""Fixes of an audit of the GPU model (s52).

1. A kernel never streams DRAM above its peak: a GPU file's measured `dram_copy_fraction` near 1 had scaled the
   kernels' 0.90 above 1 (0.90 x 1.0 / 0.896 = 1.0045), so a decode ran faster than its K and V at peak bandwidth.
2. `archsim calibrate` keeps what its rows cannot tell apart: FA2's forward and backward efficiencies fitted on
   fwd+bwd rows alone (every row depending on both) had been fitted all the same (the forward's to its bound 1).
3. A calibration names a GPU file by its content (a digest of the loaded spec), not by the path typed: the same file
   by another path had read as another GPU, and another GPU at the same relative path as the fitted one.
4. A CTA's shared memory on an NVIDIA GPU counts the 1 KB CUDA reserves per resident block (compute capability 8.0
   on), and a CTA above the per-block maximum (the SM's less that reserve) does not run: FA v1's 100 KB forward
   CTA had run on the 100 KB SMs of sm89, archsim's decode with three stages where its Triton build takes two.
5. Through the Python API, a GPU with no tensor-core rate for the case's dtype makes every kernel infeasible with
   that reason; most had raised a SpecError from inside planning, eager decode had returned a time.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.commands.gpu import reference_csv
from archsim.gpu.calibrate import calibrate, calibration_yaml
from archsim.gpu.load import gpu_from_dict, load_gpu
from archsim.gpu.params import calibration_from_dict, load_calibration
from archsim.gpu.provenance import provenance, provenance_line
from archsim.model.gpu import (
    AttentionCase,
    Plan,
    Segment,
    Tile,
    TiledLaunch,
    ctas_per_sm,
    dram_efficiency,
    plan_feasibility,
)
from archsim.model.gpu_kernels import KERNELS, family_of, kernel_directions, plans, predict

V2 = load_calibration("v2")
LABEL = "Test A100 PCIe"


def _run(kernel: str, case: AttentionCase, gpu) -> object:
    return predict(kernel, case, gpu, V2.family_params(family_of(kernel)))


# ------------------------------------------------------------------------------------------------ 1: DRAM peak
def test_a_measured_copy_fraction_of_one_never_streams_above_the_dram_peak() -> None:
    """dram_copy_fraction 1.0 (a valid measured fraction in (0, 1]) gives kernels the whole peak, no more: a
    Flash-Decoding step takes at least its K and V at the peak bandwidth."""
    gpu = gpu_from_dict({"base": "h100-sxm5", "name": "h100-copy1", "dram_copy_fraction": 1.0})
    assert dram_efficiency(gpu) == 1.0
    case = AttentionCase("decode", 128, 64, 8, 128, 32768, False, "fp16")
    result = _run("Flash-Decoding", case, gpu)
    assert result.feasible
    assert result.time_s >= case.kv_bytes() / gpu.dram_bytes_per_s


def test_the_packaged_presets_stream_at_their_scaled_efficiency_below_one() -> None:
    """The cap binds no preset: the H100's and H200's 0.896 give the 0.90 measured beside them, MI300X 0.81 x 0.90 /
    0.896."""
    assert dram_efficiency(load_gpu("h100-sxm5")) == pytest.approx(0.90)
    assert dram_efficiency(load_gpu("mi300x")) == pytest.approx(0.81 * 0.90 / 0.896)


# ------------------------------------------------------------------------------------------------ 2: calibrate
def _user_gpu_file(folder: Path, name: str = "a100-pcie-test", **fields) -> Path:
    """A GPU file of one's own: the A100 80GB SXM4 preset under another name (and `fields` laid over it)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base": "a100-80gb-sxm4", "name": name, "description": "test GPU",
                                    "source": "tests/test_gpu_s52.py", **fields}))
    return path


def _fwdbwd_csv(path: Path, forward: bool = False) -> Path:
    """The packaged CSV's FlashAttention-2 fwd+bwd rows (non-causal and causal, the A100's), relabelled to
    `LABEL`: rows that depend on both the forward and the backward efficiency, none on one alone; with `forward`,
    its FlashAttention-2 (causal) forward rows too, each depending on the forward's alone."""
    wanted = {("FlashAttention-2", "fwd+bwd"), *((("FlashAttention-2 (causal)", "fwd"),) if forward else ())}
    with open(reference_csv(), newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if (r["kernel"], r["direction"]) in wanted]
        fields = reader.fieldnames
    assert len(rows) >= 12
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "gpu": LABEL})
    return path


@pytest.fixture(scope="module")
def fwdbwd_fit(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("s52fit")
    gpu_path = _user_gpu_file(folder / "specs")
    measurements = _fwdbwd_csv(folder / "fwdbwd.csv")
    calibration = calibrate(measurements, ("fa2",), V2, {LABEL: load_gpu(gpu_path)})
    return folder, gpu_path, measurements, calibration


def test_forward_and_backward_efficiencies_that_fwd_bwd_rows_cannot_tell_apart_keep_the_base_values(
        fwdbwd_fit) -> None:
    """Every fwd+bwd row depends on both efficiencies, so the rows fix their joint effect only: both keep v2's
    values (listed as kept from the base), and the rest of the family is fitted around them."""
    _, _, _, calibration = fwdbwd_fit
    values, base = calibration.family_params("fa2"), V2.family_params("fa2")
    for name in ("mma_efficiency_fwd", "mma_efficiency_bwd"):
        assert values[name] == base[name], name
        assert name in calibration.fit["fa2"]["kept_from_base"]
        assert name in calibration.fit["fa2"]["not_identifiable"]
    assert calibration.fit["fa2"]["rows"] >= 12


def test_calibrate_says_the_efficiencies_were_kept_and_without_a_base_keeps_their_priors(tmp_path: Path) -> None:
    """The command prints them on its not-identifiable line; a fit without a base keeps their priors."""
    gpu_path = _user_gpu_file(tmp_path / "specs")
    measurements = _fwdbwd_csv(tmp_path / "fwdbwd.csv")
    out = CliRunner().invoke(main, ["calibrate", "--measurements", str(measurements), "--gpu",
                                    f"{LABEL}={gpu_path}", "--families", "fa2", "--base", "v2", "--out",
                                    str(tmp_path / "cal.yaml")])
    assert out.exit_code == 0, out.output
    line = next(line for line in out.output.splitlines() if line.startswith("fa2"))
    kept = line.split("not identifiable from these rows, kept from v2: ")[1]
    assert "mma_efficiency_fwd=" in kept and "mma_efficiency_bwd=" in kept, line
    alone = calibrate(measurements, gpus={LABEL: load_gpu(gpu_path)})
    for name in ("mma_efficiency_fwd", "mma_efficiency_bwd"):
        assert alone.family_params("fa2")[name] == pytest.approx(0.8 if name.endswith("fwd") else 0.6)
        assert name in alone.fit["fa2"]["not_identifiable"]
        assert name not in alone.fitted["fa2"]


def test_forward_rows_beside_fwd_bwd_rows_tell_the_efficiencies_apart(tmp_path: Path) -> None:
    """The fwd+bwd rows with forward rows beside them (as v1's FlashAttention-2 rows are): a forward row pins the
    forward's efficiency and the joint rows then the backward's (`calibrate.apart_problem`), so both are fitted,
    neither kept from the base nor listed as not identifiable."""
    gpu_path = _user_gpu_file(tmp_path / "specs")
    calibration = calibrate(_fwdbwd_csv(tmp_path / "fa2.csv", forward=True), ("fa2",), V2,
                            {LABEL: load_gpu(gpu_path)})
    fit = calibration.fit["fa2"]
    for name in ("mma_efficiency_fwd", "mma_efficiency_bwd"):
        assert name in calibration.fitted["fa2"], name
        assert name not in fit.get("not_identifiable", ()) and name not in fit.get("kept_from_base", ()), name


# ------------------------------------------------------------------------------------------------ 3: provenance
def test_the_same_gpu_file_by_another_path_is_the_gpu_fitted_on(fwdbwd_fit, monkeypatch) -> None:
    """Fitted with the file by an absolute path, named again from its folder by a relative one: its own rows."""
    _, gpu_path, _, calibration = fwdbwd_fit
    monkeypatch.chdir(gpu_path.parent)
    line = provenance_line(provenance(calibration, load_gpu(gpu_path.name)))
    assert "fa2 fitted on its own rows" in line, line
    assert "no measured values of its own" not in line


def test_another_gpu_at_the_same_relative_path_is_not_the_gpu_fitted_on(fwdbwd_fit, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """A different GPU file at the path typed at fitting, relative to another folder, has no rows in the fit."""
    folder, gpu_path, measurements, _ = fwdbwd_fit
    monkeypatch.chdir(folder)
    relative = gpu_path.relative_to(folder)
    calibration = calibrate(measurements, ("fa2",), V2, {LABEL: load_gpu(relative)})
    other = tmp_path / "elsewhere"
    _user_gpu_file(other / relative.parent, relative.stem, dram_bytes_per_s=1.935e12)
    monkeypatch.chdir(other)
    line = provenance_line(provenance(calibration, load_gpu(relative)))
    assert "fitted on its own rows" not in line, line
    assert line.endswith("it runs these fits at its own peaks"), line


def test_a_calibration_recording_a_gpu_file_by_its_path_alone_still_loads_and_says_so(fwdbwd_fit,
                                                                                    tmp_path: Path) -> None:
    """A file written before (a family's `fit.gpus` a path, no content digest) loads; the line says the GPU
    was recorded by its path, which cannot tell whether it is this GPU."""
    _, gpu_path, _, calibration = fwdbwd_fit
    data = yaml.safe_load(calibration_yaml(calibration))
    data["families"]["fa2"]["fit"]["gpus"] = ["specs/a100-pcie-test.yaml"]
    old = calibration_from_dict(data, str(tmp_path / "old.yaml"))
    line = provenance_line(provenance(old, load_gpu(gpu_path)))
    assert "recorded by its path" in line and "specs/a100-pcie-test.yaml" in line, line
    assert "fitted on its own rows" not in line and "no measured values of its own" not in line, line


def test_the_packaged_presets_are_still_named_by_their_names() -> None:
    """v1 and v2 name the A100 and H200 presets: their lines read as before."""
    line = provenance_line(provenance(V2, load_gpu("h200-sxm")))
    assert "archsim on h200-sxm" in line and "h200-sxm: archsim fitted on its own rows" in line, line


# ------------------------------------------------------------------------------------------------ 4: shared memory
def _launch(smem_bytes: int, threads: int = 128) -> TiledLaunch:
    tile = Tile(1.0, 1.0, 1.0, 1.0, 1.0)
    return TiledLaunch("probe", (Segment(tile, np.array([1])),), threads, smem_bytes, 0.0, "sync",
                       "mma_efficiency_fwd", "fp16", 0.0, 0.0)


def test_a_cta_above_the_per_block_maximum_does_not_run_on_an_nvidia_gpu() -> None:
    """sm89's 100 KB SM gives a block at most 99 KB (101376 B): a 100 KB CTA does not fit, with the reason."""
    gpu = load_gpu("rtx-4090")
    assert ctas_per_sm(_launch(101376), gpu) == 1
    assert ctas_per_sm(_launch(102400), gpu) == 0
    reason = plan_feasibility(Plan("p", (_launch(102400),)), gpu)
    assert ("a CTA needs 102400 B of shared memory; rtx-4090 has 102400 B per SM, at most 101376 B a block (CUDA "
            "reserves 1024 B per block)") in reason, reason


def test_each_resident_block_takes_the_1_kb_reserve_from_the_sm() -> None:
    """Four CTAs of a quarter of an H100 SM's 228 KB do not fit beside their four 1 KB reserves: three do."""
    assert ctas_per_sm(_launch(233472 // 4), load_gpu("h100-sxm5")) == 3
    assert ctas_per_sm(_launch(233472 // 4 - 1024), load_gpu("h100-sxm5")) == 4


def test_an_amd_gpu_has_no_per_block_reserve() -> None:
    """MI300X's 64 KB LDS holds one 64 KB workgroup (no reserve in the model for a GPU without NVIDIA's CC)."""
    assert ctas_per_sm(_launch(65536), load_gpu("mi300x")) == 1


@pytest.mark.parametrize("gpu_name", ["rtx-4090", "l40s"])
def test_fa1_forward_at_head_dim_128_fits_a_block_on_sm89(gpu_name: str) -> None:
    """FA v1's head_dim-128 forward ran on sm86 and sm89: its CTA (K, V and the warps' fp32 partial outputs, 96 KB)
    fits the 99 KB a block gets there, where the model's 100 KB (its Q tile counted too) had fit only while the
    reserve went uncounted; one CTA an SM, as before."""
    gpu = load_gpu(gpu_name)
    for head_dim in (96, 128):
        found = plans("FlashAttention (v1)", AttentionCase("fwd", 4, 32, 32, head_dim, 4096, False, "fp16"), gpu)
        launch = found[0].launches[0]
        assert launch.smem_bytes == 98304 <= gpu.smem_bytes_per_block and ctas_per_sm(launch, gpu) == 1


def test_fa1_forward_keeps_its_occupancy_on_every_preset() -> None:
    """Its CTA without the Q tile, the reserve counted: two an A100 SM at head_dim 64 and one at 128, what the
    published rows fit (the packaged fit is unchanged), and four at 32 as before."""
    a100 = load_gpu("a100-80gb-sxm4")
    for head_dim, resident in ((32, 4), (64, 2), (128, 1)):
        found = plans("FlashAttention (v1)", AttentionCase("fwd", 4, 32, 32, head_dim, 4096, False, "fp16"), a100)
        assert ctas_per_sm(found[0].launches[0], a100) == resident, head_dim


@pytest.mark.parametrize("gpu_name", ["rtx-4090", "l40s"])
def test_archsim_decode_runs_the_deepest_pipeline_a_block_holds(gpu_name: str) -> None:
    """archsim's decode at head_dim 128 takes Triton's three stages (102400 B); on sm89 it runs two, as the
    Lightning kernel falls back."""
    gpu = load_gpu(gpu_name)
    case = AttentionCase("decode", 4, 32, 8, 128, 4096, False, "fp16")
    found = plans("archsim Flash-Decoding split-KV GQA (Triton)", case, gpu)
    main_launch = found[0].launches[0]
    assert main_launch.smem_bytes <= gpu.smem_bytes_per_sm - 1024
    assert main_launch.in_flight_tiles == 1  # two stages: one tile in flight
    assert _run("archsim Flash-Decoding split-KV GQA (Triton)", case, gpu).feasible
    h100 = plans("archsim Flash-Decoding split-KV GQA (Triton)", case, load_gpu("h100-sxm5"))
    assert h100[0].launches[0].in_flight_tiles == 2  # three stages where they fit


# ------------------------------------------------------------------------------------------------ 5: dtype rate
def test_a_gpu_without_a_bf16_rate_makes_every_kernel_infeasible_with_that_reason() -> None:
    """No kernel raises from inside planning, and none (eager decode included) returns a time: each one that has a
    path for the case is infeasible, saying the GPU has no tensor-core rate for bf16."""
    gpu = gpu_from_dict({"base": "a100-80gb-sxm4", "name": "a100-nobf16", "tensor_flops_per_s": {"bf16": None}})
    assert not gpu.has_rate("bf16")
    for kernel in KERNELS:
        for direction in kernel_directions(kernel):
            linear = kernel == "archsim Lightning Attention-2 (Triton)"
            causal = kernel.endswith("(causal)") or linear
            case = AttentionCase(direction, 2, 8, 8, 64, 1024, causal and direction != "decode", "bf16",
                                 "linear" if linear else "softmax")
            result = _run(kernel, case, gpu)
            assert not result.feasible and math.isnan(result.time_s), (kernel, direction)
            assert "no tensor-core rate for bf16" in result.reason, (kernel, direction, result.reason)
