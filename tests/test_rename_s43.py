"""A preset copied into a file of one's own and renamed is the same hardware (audit helper-508): `parallel`'s default
topology takes a renamed copy of its GPU (it refused it, saying no library topology had that GPU)."""

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from archsim.cli import main

PRESETS = Path(__file__).resolve().parents[1] / "archsim" / "gpu" / "presets"
RING = ["parallel", "--scheme", "ring", "--devices", "2", "-w", "llama3-8b", "--seq-len", "8K", "--json"]


def _renamed_h100(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load((PRESETS / "h100-sxm5.yaml").read_text())
    data.update(name="my-h100", description="mine", source="my notes", aliases=["My H100"], **changes)
    path = tmp_path / "my-h100.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_default_topology_takes_a_renamed_copy_of_its_gpu(tmp_path: Path) -> None:
    shipped = CliRunner().invoke(main, [*RING, "--gpu", "h100-sxm5"])
    copied = CliRunner().invoke(main, [*RING, "--gpu", str(_renamed_h100(tmp_path))])
    assert shipped.exit_code == copied.exit_code == 0, copied.output
    times = [[p["latency_s"] for p in json.loads(r.output)["points"]] for r in (shipped, copied)]
    assert times[0] == times[1]


def test_a_copy_computing_otherwise_is_still_refused_naming_the_topologies(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, [*RING, "--gpu", str(_renamed_h100(tmp_path, sm_count=100))])
    assert result.exit_code == 2
    assert "the default topology hgx-h100 joins h100-sxm5 GPUs" in result.output
    assert "no library topology has my-h100" in result.output


def _own_lamina(tmp_path: Path) -> Path:
    """lamina's system file in a folder of one's own, its memory pool a copy of the h20 preset named by path."""
    from archsim.systems.system_spec import load_system

    (tmp_path / "h20.yaml").write_text((PRESETS / "h20.yaml").read_text())
    data = yaml.safe_load(Path(load_system("lamina").source).read_text())
    data["devices"]["memory"]["preset"] = "h20.yaml"
    path = tmp_path / "my-lamina.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_an_axis_naming_the_system_files_own_preset_by_another_path_keeps_its_price(tmp_path: Path) -> None:
    """The sweep makes an axis's file absolute; the system wrote it relative: the same file, so the same price (the
    price had been dropped, and a cost objective refused)."""
    from archsim.systems.system_spec import load_system, with_fields

    system = load_system(str(_own_lamina(tmp_path)))
    same = with_fields(system, {"devices.memory.preset": str((tmp_path / "h20.yaml").absolute())})
    assert same.devices["memory"].price_per_hour == system.devices["memory"].price_per_hour == 4.63
    other = with_fields(system, {"devices.memory.preset": "h200-sxm"})
    assert other.devices["memory"].price_per_hour is None


def test_simulate_says_a_workload_without_a_by_workload_entry_runs_at_the_default_degrees(tmp_path: Path) -> None:
    """neupims gives gpt3-30b tp4 pp2; a copy of it under another name ran at the top-level tp4 pp1 (13 % less
    throughput, a third of the KV pages) and said only "tp4 pp1" (audit helper-508)."""
    workloads = Path(__file__).resolve().parents[1] / "workloads"
    copy = tmp_path / "my-gpt3.yaml"
    copy.write_text((workloads / "gpt3-30b.yaml").read_text().replace("name: gpt3-30b", "name: my-gpt3"))
    run = ["simulate", "-s", "neupims", "--rate", "5", "--requests", "4"]
    held_out = CliRunner().invoke(main, [*run, "-w", str(copy)])
    assert held_out.exit_code == 0, held_out.output
    assert "parallelism.by_workload has no entry for my-gpt3 (it has gpt3-7b, gpt3-13b, gpt3-30b" in held_out.output
    shipped = CliRunner().invoke(main, [*run, "-w", "gpt3-30b"])
    assert shipped.exit_code == 0 and "by_workload" not in shipped.output, shipped.output
    given = CliRunner().invoke(main, [*run, "-w", str(copy), "--tp", "4"])  # pp still the top-level one
    assert "parallelism the top-level degrees but --tp 4: " in given.output, given.output


def test_a_changed_copy_keeping_the_presets_name_is_refused_saying_so(tmp_path: Path) -> None:
    """A copy of h100-sxm5 with 100 SMs that keeps the name is not the topology's GPU (a name match must not admit
    it: helper-514); the refusal says the file's fields differ, not 'not h100-sxm5's links'."""
    data = yaml.safe_load((PRESETS / "h100-sxm5.yaml").read_text())
    path = tmp_path / "h100-100sm.yaml"
    path.write_text(yaml.safe_dump({**data, "sm_count": 100}))
    result = CliRunner().invoke(main, [*RING, "--gpu", str(path)])
    assert result.exit_code == 2, result.output
    assert f"not {path}, whose fields differ from the preset's" in result.output, result.output


def test_a_sweep_beside_another_folder_keeps_the_price_of_the_systems_own_preset(tmp_path: Path, invoke) -> None:
    """The sweep's check of a cost objective resolves the system's preset from the system's file, not the sweep's:
    the sweep in another folder naming the same h20.yaml by its own relative path runs (helper-514)."""
    (tmp_path / "sys").mkdir()
    system = _own_lamina(tmp_path / "sys")
    sweep = tmp_path / "sw" / "pools.yaml"
    sweep.parent.mkdir()
    sweep.write_text(yaml.safe_dump({
        "name": "pools", "description": "d", "system": f"../sys/{system.name}", "workload": "llama3-8b",
        "serving": {"requests": 4, "lengths": "azure-conv", "seed": 0, "max_batch": 16, "rate_per_s": 30},
        "axes": {"system.devices.memory.preset": ["../sys/h20.yaml"]}, "sampling": {"kind": "grid"},
        "objectives": ["throughput_tok_s", "cost_per_token_usd"]}))
    code, out = invoke("sweep", str(sweep), "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 0, out
