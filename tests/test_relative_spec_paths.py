"""A link or GPU file named by a relative path inside a topology or system file is read from that file's folder,
as a system's `base:` and a workload path already were: a topology naming `mylink.yaml` beside it had been looked
up from the working directory ("no link 'mylink.yaml': no such file"), so only absolute paths worked."""

from pathlib import Path

import yaml

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.links import load_link
from archsim.systems.system_spec import load_system
from archsim.systems.topology import load_topology


def _copy(kind: str, name: str, package: str, folder: Path, new_name: str) -> dict:
    data = yaml.safe_load(library.find(kind, name, package).read_text())
    data["name"] = new_name
    (folder / f"{new_name}.yaml").write_text(yaml.safe_dump(data))
    return data


def test_a_topology_reads_its_link_and_gpu_files_beside_it(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    _copy("links", "nvlink4-h100", "archsim.systems.link_presets", folder, "mylink")
    _copy("GPU presets", "h100-sxm5", "archsim.gpu.presets", folder, "mygpu")
    topology = _copy("topology presets", "hgx-h100", "archsim.systems.topology_presets", folder, "mytopo")
    topology.update(gpu="mygpu.yaml", levels=[{"link": "mylink.yaml", "devices": 8}, topology["levels"][1]])
    (folder / "mytopo.yaml").write_text(yaml.safe_dump(topology))
    monkeypatch.chdir(tmp_path)  # not the specs' folder
    loaded = load_topology(str(folder / "mytopo.yaml"))
    assert loaded.levels[0].link.name == "mylink" and loaded.gpu.name == "mygpu"
    assert loaded.levels[0].link.bytes_per_s_per_direction == load_link("nvlink4-h100").bytes_per_s_per_direction
    assert loaded.gpu.tensor_flops_per_s == load_gpu("h100-sxm5").tensor_flops_per_s


def test_a_system_reads_its_link_and_gpu_files_beside_it(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    _copy("links", "nvlink4-h100", "archsim.systems.link_presets", folder, "mylink")
    _copy("GPU presets", "h100-sxm5", "archsim.gpu.presets", folder, "mygpu")
    system = yaml.safe_load(library.find("system presets", "vllm-h100", "archsim.systems.system_presets").read_text())
    system["links"]["tp"] = "mylink.yaml"
    system["devices"]["gpu"]["preset"] = "mygpu.yaml"
    (folder / "sys.yaml").write_text(yaml.safe_dump(system))
    monkeypatch.chdir(tmp_path)
    loaded = load_system(str(folder / "sys.yaml"))
    assert loaded.links["tp"].name == "mylink"
