"""A GPU file's `host_link`, when it is a path, is read beside the GPU file, as a preset's `base` and a system
spec's links are, and resolved when the file loads (`archsim.gpu.load`): it was taken from the working directory,
so `archsim check /elsewhere/gpu.yaml` refused a link file lying beside it, and `archsim sparse` ran a GPU naming
a missing link file (exit 0) whenever no host copy was needed. The GPU is the H100 SXM5 preset's numbers with a
host link of its own: NVLink-C2C's 450 GB/s per direction (a user's link file)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.dse.store import read_records
from archsim.gpu.load import gpu_names, load_gpu
from archsim.systems.links import link_names

LINK = {"name": "nvlink-c2c", "description": "NVLink-C2C, 450 GB/s per direction",
        "source": "NVIDIA Grace Hopper whitepaper", "latency_s": 1.0e-6, "bytes_per_s_per_direction": 450.0e9}
# Llama-3-8B's 1M-token KV cache (128 KiB a token: 128 GiB) exceeds the H100's 80 GB: the prefill copies it to
# the host over the GPU's host link; Quest's 32K decode copies nothing.
OFFLOADING = ("--method", "flexprefill", "-w", "llama3-8b", "--context", "1M", "--density", "0.1")
RESIDENT = ("--method", "quest", "-w", "llama3-8b", "--context", "32768", "--budget", "2048")


def _write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _gpu_file(path: Path, host_link: str) -> Path:
    """The H100 SXM5 preset as a user's file at `path` (its aliases left out: a label names one preset)."""
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text())
    data.pop("aliases", None)
    return _write(path, {**data, "name": "h100-c2c", "host_link": host_link})


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """gpus/ holding the GPU file and its link file beside it; the working directory another folder."""
    _write(tmp_path / "gpus" / "c2c.yaml", LINK)
    _gpu_file(tmp_path / "gpus" / "g.yaml", "c2c.yaml")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return tmp_path


def test_a_host_link_path_is_read_beside_the_gpu_file(folder, cli) -> None:
    assert cli("check", str(folder / "gpus" / "g.yaml")).output.startswith("ok  ")
    assert Path(load_gpu(folder / "gpus" / "g.yaml").host_link).resolve() == (folder / "gpus" / "c2c.yaml").resolve()


def test_the_host_copy_takes_the_link_file_beside_the_gpu_file(folder, cli_json) -> None:
    """The KV cache's copy is timed over the link the file names: the same point as with the link's absolute path
    (which was read right before)."""
    absolute = _gpu_file(folder / "gpus" / "abs.yaml", str(folder / "gpus" / "c2c.yaml"))
    by_path = cli_json("sparse", *OFFLOADING, "--gpu", str(folder / "gpus" / "g.yaml"))["points"][0]
    assert by_path["kv_host_s"] > 0
    assert by_path == cli_json("sparse", *OFFLOADING, "--gpu", str(absolute))["points"][0]


def test_a_missing_host_link_file_is_refused_when_the_gpu_file_loads(folder, cli) -> None:
    """Quest's 32K decode needs no host copy: the run printed its point (exit 0) with a link that names nothing."""
    path = _gpu_file(folder / "gpus" / "missing.yaml", "pcie-typo.yaml")
    out = cli("sparse", *RESIDENT, "--gpu", str(path), expect=2).output
    assert out == f"error: {path}: host_link: {folder / 'gpus' / 'pcie-typo.yaml'}: no such file\n"


def test_a_derived_gpu_file_reads_its_bases_host_link_beside_the_base(folder, cli) -> None:
    """A preset with a base takes the base's host link: the file beside the base, not beside the derived file; a
    host link the derived file writes is read beside the derived file."""
    derived = _write(folder / "derived" / "d.yaml", {"base": "../gpus/g.yaml", "name": "h100-c2c-derived"})
    assert Path(load_gpu(derived).host_link).resolve() == (folder / "gpus" / "c2c.yaml").resolve()
    assert cli("check", str(derived)).output.startswith("ok  ")
    _write(folder / "derived" / "own.yaml", {**LINK, "name": "own-link"})
    own = _write(folder / "derived" / "o.yaml", {"base": "../gpus/g.yaml", "name": "h100-own", "host_link": "own.yaml"})
    assert Path(load_gpu(own).host_link).resolve() == (folder / "derived" / "own.yaml").resolve()
    chained = _write(folder / "chained" / "c.yaml", {"base": "../derived/d.yaml", "name": "h100-c2c-chained"})
    assert Path(load_gpu(chained).host_link).resolve() == (folder / "gpus" / "c2c.yaml").resolve()  # its base's base


def test_a_sweep_runs_a_gpu_file_of_another_folder_over_its_host_link(folder, invoke, cli_json) -> None:
    """The sweep's file in sweeps/ names ../gpus/g.yaml, whose host link is c2c.yaml beside it: its point is
    `archsim sparse`'s on that GPU (the copy crossing the link), not a refusal."""
    spec = _write(folder / "sweeps" / "s.yaml", {
        "name": "c2c", "sparse": {"method": "flexprefill", "gpu": "../gpus/g.yaml", "workload": "llama3-8b",
                                  "context": 1048576}, "axes": {"sparse.density": [0.1]}})
    code, out = invoke("sweep", str(spec), "--db", str(folder / "sweeps" / "s.sqlite"), "--local")
    assert code == 0, out
    [record] = read_records(folder / "sweeps" / "s.sqlite").to_dict("records")
    assert record["feasible"], record["reason"]
    point = cli_json("sparse", *OFFLOADING, "--gpu", str(folder / "gpus" / "g.yaml"))["points"][0]
    assert record["latency_s"] == point["time_s"]


def test_the_packaged_presets_name_link_presets_as_written() -> None:
    """Each preset's host link is the link preset its file (or its base's) names, by name."""
    for name in gpu_names():
        gpu = load_gpu(name)
        written = yaml.safe_load(Path(gpu.source).read_text()).get("host_link")
        assert gpu.host_link in link_names() and written in (None, gpu.host_link), name
