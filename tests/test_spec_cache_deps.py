"""A remembered spec is parsed again when a file it loaded changes (s25's note: a Python session that edited a GPU
file named by a system kept the old system until the system file itself changed)."""

from __future__ import annotations

import threading
from pathlib import Path

from archsim import library
from archsim.systems.system_spec import load_system


def _system_on_a_gpu_file(tmp_path: Path) -> tuple[Path, Path, str]:
    gpu_text = library.find("GPU presets", "h100-sxm5", "archsim.gpu.presets").read_text()
    assert "dram_bytes_per_s: 3.35e+12" in gpu_text  # the edit below changes it
    gpu = tmp_path / "g.yaml"
    gpu.write_text(gpu_text)
    system = tmp_path / "s.yaml"
    system.write_text(f"name: s\nbase: vllm-h100\ndevices:\n  gpu:\n    preset: {gpu}\n")
    return system, gpu, gpu_text


def test_a_system_is_parsed_again_when_a_gpu_file_it_names_changes(tmp_path: Path) -> None:
    system, gpu, gpu_text = _system_on_a_gpu_file(tmp_path)
    first = load_system(system)
    assert load_system(system) is first  # nothing changed: the parsed system is reused
    assert first.devices["gpu"].spec.dram_bytes_per_s == 3.35e12
    gpu.write_text(gpu_text.replace("dram_bytes_per_s: 3.35e+12", "dram_bytes_per_s: 4.80e+12"))
    second = load_system(system)
    assert second.devices["gpu"].spec.dram_bytes_per_s == 4.8e12
    assert load_system(system) is second
    gpu.write_text(gpu_text)  # back to the first bytes: the first system serves again
    assert load_system(system).devices["gpu"].spec.dram_bytes_per_s == 3.35e12


def test_threads_loading_specs_at_once_each_get_their_own(tmp_path: Path) -> None:
    system, _, _ = _system_on_a_gpu_file(tmp_path)
    found, errors = [], []

    def load() -> None:
        try:
            found.append(load_system(system).devices["gpu"].spec.dram_bytes_per_s)
        except Exception as error:  # any error of a thread is the test's failure
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and found == [3.35e12] * 8


def test_a_derived_system_is_parsed_again_when_its_base_file_changes(tmp_path: Path) -> None:
    """Review helper-233: the base is read by the system loader itself, not through the library, and had not been
    recorded, so a derived system kept its old base."""
    base = tmp_path / "b.yaml"
    base.write_text("name: b\nbase: vllm-h100\n")
    derived = tmp_path / "s.yaml"
    derived.write_text("name: s\nbase: b.yaml\n")
    assert load_system(derived).devices["gpu"].spec.name == "h100-sxm5"
    base.write_text("name: b\nbase: vllm-h100\ndevices:\n  gpu:\n    preset: h200-sxm\n")
    assert load_system(base).devices["gpu"].spec.name == "h200-sxm"
    assert load_system(derived).devices["gpu"].spec.name == "h200-sxm"


def test_the_cache_drops_the_least_recently_loaded_spec(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(library, "PARSED_SPECS", 2)
    monkeypatch.setattr(library, "_PARSED", type(library._PARSED)())
    paths = []
    for name in "abc":
        path = tmp_path / f"{name}.yaml"
        path.write_text(library.find("workloads", "bert-base").read_text().replace("name: bert-base", f"name: {name}"))
        paths.append(path)
    a = library.load_workload_spec(str(paths[0]))
    library.load_workload_spec(str(paths[1]))
    assert library.load_workload_spec(str(paths[0])) is a  # a is now the most recently loaded
    library.load_workload_spec(str(paths[2]))  # over the limit: b goes, not a
    assert library.load_workload_spec(str(paths[0])) is a
    assert [Path(key[0]).name for key in library._PARSED] == ["c.yaml", "a.yaml"]
