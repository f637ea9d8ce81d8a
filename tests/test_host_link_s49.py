"""A GPU file whose `host_link` names no link preset is refused by every command that loads it (audit s49,
gpu-107.yaml: `archsim check` and system specs refused it, but gpu-roofline, validate, calibrate, sparse, parallel,
a topology's `gpu` and a sweep's GPU ran it, the link never read): exit 2, one line naming the GPU file and
`host_link`. A GPU file whose host link is a preset still runs."""

from __future__ import annotations

from pathlib import Path

import pytest

BAD_LINK = "abc-zz"  # the audit's: no link preset of that name


def _gpu_file(folder: Path, host_link: str) -> Path:
    """An H100 SXM5 (a packaged preset) with its host link replaced."""
    path = folder / f"gpu-{host_link}.yaml"
    path.write_text(f"base: h100-sxm5\nname: h100-{host_link}\nhost_link: {host_link}\n")
    return path


def _refused_at_host_link(code: int, output: str, gpu: Path) -> None:
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, output)
    assert f"{gpu}: host_link: {BAD_LINK}: not a link preset (known: " in lines[0], lines[0]


@pytest.fixture
def bad_gpu(tmp_path: Path) -> Path:
    return _gpu_file(tmp_path, BAD_LINK)


def test_gpu_roofline_refuses_the_gpu_and_runs_one_with_a_link_preset(bad_gpu, tmp_path, invoke) -> None:
    code, output = invoke("gpu-roofline", "--gpu", str(bad_gpu), "--seq-len", "1024", "--out", str(tmp_path / "a"))
    _refused_at_host_link(code, output, bad_gpu)
    good = _gpu_file(tmp_path, "pcie5-x16")
    code, output = invoke("gpu-roofline", "--gpu", str(good), "--seq-len", "1024", "--out", str(tmp_path / "b"))
    assert code == 0, output


@pytest.mark.parametrize("command", ["validate", "calibrate"])
def test_a_gpu_mapped_to_a_measurements_label_is_refused(command, bad_gpu, tmp_path, invoke) -> None:
    code, output = invoke(command, "--gpu", f"A100 80GB SXM4={bad_gpu}", "--out", str(tmp_path / "out"))
    _refused_at_host_link(code, output, bad_gpu)


def test_sparse_refuses_the_gpu_where_no_host_copy_runs(bad_gpu, invoke) -> None:
    code, output = invoke("sparse", "--method", "quest", "--gpu", str(bad_gpu), "-w", "llama3-8b", "--context", "32K",
                          "--budget", "1024")
    _refused_at_host_link(code, output, bad_gpu)


def test_parallel_refuses_the_gpu_given_and_a_topologys(bad_gpu, tmp_path, write_yaml, invoke) -> None:
    grid = ("parallel", "--scheme", "ring", "--devices", "2", "--workload", "llama3-8b", "--seq-len", "8192")
    _refused_at_host_link(*invoke(*grid, "--topology", "hgx-h100-8", "--gpu", str(bad_gpu)), bad_gpu)
    topology = write_yaml(tmp_path / "topo.yaml", {"name": "t", "source": "a test", "gpu": bad_gpu.name,
                                                   "levels": [{"link": "nvlink4-h100", "devices": 8}]})
    code, output = invoke(*grid, "--topology", str(topology))
    _refused_at_host_link(code, output, bad_gpu)
    assert output.startswith(f"error: {topology}: gpu: "), output


@pytest.mark.parametrize("sweep", [
    {"mapping": "fusemax", "workload": "bert-base", "axes": {"workload.seq_len": [4096]},
     "gpus": {"presets": ["GPU"], "kernel": "FlashAttention-2"}, "objectives": ["latency_s", "energy_pj"]},
    {"parallel": {"scheme": "ring", "workload": "llama3-8b", "seq_len": 8192, "topology": "hgx-h100-8",
                  "gpu": "GPU"},
     "axes": {"parallel.devices": [1, 2]}, "objectives": ["latency_s", "efficiency"]},
    {"sparse": {"method": "quest", "gpu": "GPU", "workload": "llama3-8b", "context": 32768},
     "axes": {"sparse.budget": [1024, 2048]}, "objectives": ["latency_s", "speedup"]},
], ids=["gpus", "parallel", "sparse"])
def test_a_sweep_refuses_the_gpu_at_load(sweep, bad_gpu, tmp_path, write_yaml, invoke) -> None:
    block = next(key for key in ("gpus", "parallel", "sparse") if key in sweep)
    named = {key: ([bad_gpu.name] if value == ["GPU"] else bad_gpu.name if value == "GPU" else value)
             for key, value in sweep[block].items()}
    spec = write_yaml(tmp_path / "sweep.yaml", {"name": "s", **sweep, block: named, "sampling": {"kind": "grid"}})
    code, output = invoke("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), "--local")
    _refused_at_host_link(code, output, bad_gpu)
    assert not (tmp_path / "s.sqlite").exists()
