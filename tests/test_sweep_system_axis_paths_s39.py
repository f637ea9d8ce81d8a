"""A file a `system.` axis value names is read beside the sweep file (s39, each test failing before its fix), as
every other file a sweep names is (a CSV trace, a `gpus.presets` file, a parallel or sparse block's specs): it had
been taken from the system preset's folder, so `system.devices.gpu.preset: [h100-sxm5, g.yaml]` with g.yaml beside
the sweep was refused at load (`archsim/systems/system_presets/g.yaml: no such file`). A path written in a system
file stays relative to that file; an absolute path and a library preset name stay as written, as does the point's
axis value in the store.

Expected values come from the files: a point's key hashes the system it resolves (`system_points.system_config`),
so a value read from the sweep's folder keys as that file's absolute path does, and a different file differs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.dse.points import expand, keyed, load_base
from archsim.dse.spec import sweep_from_dict
from archsim.dse.store import read_records
from archsim.gpu.load import load_gpu

AXIS = "system.devices.gpu.preset"
SERVING = {"rate_per_s": 5.0, "requests": 6, "lengths": "azure-conv", "seed": 0, "max_batch": 32}
DRAM = "dram_bytes_per_s: 3.35e+12"  # the h100-sxm5 preset's line, edited to tell copies apart


def _gpu_copy(path: Path, dram: str) -> Path:
    """The h100-sxm5 preset copied to `path` with its DRAM bandwidth line replaced by `dram`."""
    text = Path(load_gpu("h100-sxm5").source).read_text()
    assert DRAM in text
    path.write_text(text.replace(DRAM, dram))
    return path


def _sweep_data(system: str, values: list[str]) -> dict:
    return {"name": "relpath", "system": system, "workload": "llama3-8b", "serving": SERVING,
            "axes": {AXIS: values}}


def test_a_gpu_file_an_axis_names_is_read_beside_the_sweep_file(tmp_path):
    """The brief's reproduction: g.yaml beside s.yaml (a slower H100, 2 TB/s) is read, both points run (the default
    objectives name energy_pj, so the energy check loads each value too), and the store keeps the value as
    written."""
    _gpu_copy(tmp_path / "g.yaml", "dram_bytes_per_s: 2.0e+12")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_sweep_data("vllm-h100", ["h100-sxm5", "g.yaml"])))
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--db", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 0, result.output
    rows = read_records(tmp_path / "s.sqlite").set_index(AXIS)
    assert sorted(rows.index) == ["g.yaml", "h100-sxm5"] and rows["feasible"].all()
    # decode reads the weights and KV cache from DRAM: the slower copy takes longer
    assert rows.loc["g.yaml", "makespan_s"] > rows.loc["h100-sxm5", "makespan_s"]


def test_a_relative_value_is_the_sweeps_file_a_path_in_the_system_file_stays_the_systems(tmp_path):
    """sub/mysys.yaml names ./myh100.yaml (sub/'s, 2 TB/s); the sweep's axis names ./myh100.yaml too, the one
    beside the sweep (1 TB/s). The base system reads sub/'s; the axis value keys as the sweep folder's file named
    by its absolute path, not as sub/'s; an absolute value and a library name stay as written."""
    (tmp_path / "sub").mkdir()
    _gpu_copy(tmp_path / "sub" / "myh100.yaml", "dram_bytes_per_s: 2.0e+12")
    (tmp_path / "sub" / "mysys.yaml").write_text("name: mysys\nbase: vllm-h100\n"
                                                 "devices:\n  gpu: {preset: ./myh100.yaml}\n")
    ours = _gpu_copy(tmp_path / "myh100.yaml", "dram_bytes_per_s: 1.0e+12")
    theirs = tmp_path / "sub" / "myh100.yaml"
    source = tmp_path / "s.yaml"
    data = _sweep_data("sub/mysys.yaml", ["./myh100.yaml", str(ours), str(theirs), "h100-sxm5"])
    source.write_text(yaml.safe_dump(data))
    spec = sweep_from_dict(data, str(source))
    base = load_base(spec)
    assert base.system.devices["gpu"].spec.dram_bytes_per_s == 2.0e12
    points = expand(spec)
    assert [p[AXIS] for p in points] == ["./myh100.yaml", str(ours), str(theirs), "h100-sxm5"]
    relative, absolute, system_own, preset = (key for key, _ in keyed(spec, base, points))
    assert relative == absolute
    assert len({relative, system_own, preset}) == 3


def test_a_missing_file_is_refused_at_load_naming_the_sweeps_folder(tmp_path):
    """A value naming no file beside the sweep is one line naming the axis value and the path looked for there."""
    shutil.copy(load_gpu("h100-sxm5").source, tmp_path / "g.yaml")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_sweep_data("vllm-h100", ["g.yaml", "gone.yaml"])))
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "s.yaml"), "--db", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 2
    assert f"axes.{AXIS}[1]: {tmp_path / 'gone.yaml'}: no such file" in result.output, result.output
    assert result.output.count("\n") == 1


def test_only_a_field_naming_a_file_takes_its_value_from_the_sweeps_folder(tmp_path) -> None:
    """A kernel's name holds a slash (`FlashAttention Triton (Tillet/Dao Triton impl)`): it stays a name; a
    device's preset or mapping and a link take a relative path from the sweep's folder."""
    from archsim.dse.serving_spec import system_changes

    (tmp_path / "s.yaml").write_text("name: s\n")  # a spec read from a file: its relative paths are beside it
    source = str(tmp_path / "s.yaml")
    kernel = "FlashAttention Triton (Tillet/Dao Triton impl)"
    changes = system_changes({"system.devices.gpu.attention_kernel": kernel, "system.devices.gpu.preset": "g.yaml",
                              "system.devices.npu.mapping": "./m.yaml", "system.links.tp": "l.yaml",
                              "system.devices.gpu.preset_note": "a/b.yaml"}, source)
    assert changes == {"devices.gpu.attention_kernel": kernel, "devices.gpu.preset": str(tmp_path / "g.yaml"),
                       "devices.npu.mapping": str(tmp_path / "m.yaml"), "links.tp": str(tmp_path / "l.yaml"),
                       "devices.gpu.preset_note": "a/b.yaml"}
