"""A link or GPU file named by a relative path inside a topology or system file is read from that file's folder,
as a system's `base:` and a workload path already were: a topology naming `mylink.yaml` beside it had been looked
up from the working directory ("no link 'mylink.yaml': no such file"), so only absolute paths worked. A derived
system's base keeps its own folder: its paths had been read from the derived file's folder."""

from pathlib import Path

import yaml

from archsim import library
from archsim.gpu.load import load_gpu
from archsim.systems.links import load_link
from archsim.systems.system_spec import load_system
from archsim.systems.topology import load_topology


def _copy(kind: str, name: str, package: str | None, folder: Path, new_name: str) -> dict:
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
    assert loaded.links["tp"].name == "mylink" and loaded.devices["gpu"].spec.name == "mygpu"


def _derived(tmp_path: Path, over: dict) -> Path:
    """A base system in base/ naming a link, a GPU and a workload beside it and a workload in shared/ by relative
    paths, and a spec in derived/ with only `base: ../base/sys.yaml`, `name` and `over`'s keys."""
    base, derived, shared = tmp_path / "base", tmp_path / "derived", tmp_path / "shared"
    for folder in (base, derived, shared):
        folder.mkdir()
    _copy("links", "nvlink4-h100", "archsim.systems.link_presets", base, "mylink")
    _copy("links", "nvlink4-h100", "archsim.systems.link_presets", derived, "ownlink")
    _copy("GPU presets", "h100-sxm5", "archsim.gpu.presets", base, "mygpu")
    _copy("workloads", "llama-33b", None, base, "mywork")
    _copy("workloads", "llama-65b", None, shared, "sharedwork")
    system = yaml.safe_load(library.find("system presets", "vllm-h100", "archsim.systems.system_presets").read_text())
    system["links"]["tp"] = "mylink.yaml"
    system["devices"]["gpu"]["preset"] = "mygpu.yaml"
    system["parallelism"]["by_workload"] = {"mywork.yaml": {"tp": 2, "pp": 1},
                                           "../shared/sharedwork.yaml": {"tp": 4, "pp": 2}}
    (base / "sys.yaml").write_text(yaml.safe_dump(system))
    (derived / "derived.yaml").write_text(yaml.safe_dump({"base": "../base/sys.yaml", "name": "derived", **over}))
    return derived / "derived.yaml"


def test_a_derived_system_reads_its_bases_files_beside_the_base(tmp_path, monkeypatch) -> None:
    path = _derived(tmp_path, {})
    monkeypatch.chdir(path.parent.parent / "shared")  # neither spec's folder
    loaded = load_system(str(path))
    assert loaded.links["tp"].name == "mylink" and loaded.devices["gpu"].spec.name == "mygpu"
    by_workload = loaded.parallelism.by_workload
    assert (by_workload["mywork"].tp, by_workload["sharedwork"].tp, by_workload["sharedwork"].pp) == (2, 4, 2)


def test_a_derived_systems_own_paths_stay_beside_it(tmp_path, monkeypatch) -> None:
    # derived/ names its own link beside it, and the base's shared workload by the same text, which is the same
    # file from both folders: its tp is laid over the base's entry, whose pp stays
    path = _derived(tmp_path, {"links": {"tp": "ownlink.yaml"},
                               "parallelism": {"by_workload": {"../shared/sharedwork.yaml": {"tp": 8}}}})
    monkeypatch.chdir(tmp_path)
    loaded = load_system(str(path))
    assert loaded.links["tp"].name == "ownlink" and loaded.devices["gpu"].spec.name == "mygpu"
    by_workload = loaded.parallelism.by_workload
    assert (by_workload["mywork"].tp, by_workload["sharedwork"].tp, by_workload["sharedwork"].pp) == (2, 8, 2)
