"""`archsim parallel --gpu` and the topology whose links it runs over. The default topology, hgx-h100, joins H100s
over NVLink 4: another GPU without `--topology` had been timed over those links (an RTX 4090, which has no NVLink,
got the H100's 0.09276 ms Ulysses all-to-all at 8 x 16K where a PCIe topology gives 1.179 ms) and is now refused,
exit 2 naming --gpu. A topology the user names is their choice of links, so --gpu over it stays a what-if; a sweep
has no default topology (`parallel.topology` is required), so it cannot fall into the same substitution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

POINT = ("parallel", "-w", "llama3-8b", "--scheme", "ulysses", "--devices", "8", "--seq-len", "16K")
A100_TOPOLOGIES = ("a100-ib-100g", "a100-nvlink", "dgx-a100")  # the library topologies whose gpu is a100-80gb-sxm4


def _point(cli, *args: str) -> dict:
    [point] = json.loads(cli(*POINT, *args, "--json").output)["points"]
    return point


def _refusal(cli, *args: str) -> str:
    lines = cli(*POINT, *args, expect=2).output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpu: ")
    return lines[0]


def test_gpu_without_a_topology_of_its_own_is_refused_naming_gpu(cli) -> None:
    """No library topology has an RTX 4090: the line says the default's links are the H100's and asks for a file."""
    line = _refusal(cli, "--gpu", "rtx-4090")
    assert "rtx-4090" in line and "hgx-h100" in line and "h100-sxm5" in line and "nvlink4-h100" in line
    assert "--topology FILE" in line and not any(name in line for name in A100_TOPOLOGIES)


def test_refusal_lists_the_library_topologies_of_that_gpu(cli) -> None:
    line = _refusal(cli, "--gpu", "a100-80gb-sxm4")
    assert all(name in line for name in A100_TOPOLOGIES) and "--topology FILE" in line


def test_the_default_topologys_own_gpu_is_the_default_run(cli) -> None:
    """--gpu h100-sxm5 names the GPU hgx-h100 already has: the same point as leaving --gpu out."""
    assert _point(cli, "--gpu", "h100-sxm5") == _point(cli)


def test_the_default_topologys_gpu_read_from_a_copy_of_its_file_runs(cli, tmp_path) -> None:
    """The h100-sxm5 preset copied elsewhere is the same GPU (review helper-215: it had been refused, its message
    naming h100-sxm5 as not h100-sxm5)."""
    from archsim.gpu.load import load_gpu

    copy = tmp_path / "my-h100.yaml"
    copy.write_text(Path(load_gpu("h100-sxm5").source).read_text())
    assert _point(cli, "--gpu", str(copy))["latency_s"] == _point(cli)["latency_s"]


def test_gpu_over_a_named_topology_keeps_that_topologys_links(cli) -> None:
    """The user chose hgx-h100's links: an RTX 4090 over them sends the same all-to-all (the links and the message
    sizes set it, not the GPU) and computes at its own rate; dgx-a100 with its own A100 is the A100's run."""
    h100 = _point(cli, "--topology", "hgx-h100")
    rtx = _point(cli, "--topology", "hgx-h100", "--gpu", "rtx-4090")
    assert (rtx["gpu"], rtx["topology"], rtx["link"]) == ("rtx-4090", "hgx-h100", "nvlink4-h100")
    assert rtx["comm_s"] == h100["comm_s"] and rtx["compute_s"] > h100["compute_s"]
    assert _point(cli, "--topology", "dgx-a100", "--gpu", "a100-80gb-sxm4") == _point(cli, "--topology", "dgx-a100")


@pytest.mark.parametrize("gpu", ["gpu: rtx-4090, ", ""])
def test_a_parallel_sweep_without_a_topology_is_refused(cli, tmp_path, gpu) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(f"name: t\nparallel: {{workload: llama3-8b, seq_len: 16384, scheme: ring, {gpu}devices: 8}}\n"
                    "axes: {parallel.batch: [1]}\n")
    line = cli("sweep", str(spec), "--db", str(tmp_path / "s.sqlite"), expect=2).output.strip()
    assert line == f"error: {spec}: parallel.topology: missing (or give the axis parallel.topology)"
