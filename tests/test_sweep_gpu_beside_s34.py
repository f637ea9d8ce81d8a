"""A sweep's `gpus.presets` file is read beside the sweep's file, as its mapping, workload and system are (audit
helper-409: a derived GPU preset `fast.yaml` beside the sweep was read from the working folder, so the same sweep
run from its parent folder, which held another `fast.yaml` at 900 W, priced its GPU points 3x higher, silently)."""

from __future__ import annotations

from archsim.dse.points import load_base
from archsim.dse.spec import gpu_preset, load_sweep_spec

SWEEP = """name: gpubeside
mapping: fusemax
workload: bert-base
axes:
  workload.seq_len: [4096]
sampling: {kind: grid}
gpus:
  presets: [fast.yaml]
  kernel: FlashAttention-2
objectives: [latency_s, energy_pj]
"""


def _preset(power_w: int) -> str:
    return f"base: h100-sxm5\nname: fast\npower_w: {power_w}\n"


def test_a_gpu_file_is_read_beside_the_sweep_not_from_the_working_folder(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "sw"
    folder.mkdir()
    (folder / "sweep.yaml").write_text(SWEEP)
    (folder / "fast.yaml").write_text(_preset(300))
    (tmp_path / "fast.yaml").write_text(_preset(900))  # a decoy in the working folder
    monkeypatch.chdir(tmp_path)
    spec = load_sweep_spec("sw/sweep.yaml")
    assert gpu_preset(spec, "fast.yaml").power_w == 300
    assert load_base(spec).gpus["fast.yaml"].power_w == 300
    assert spec.gpus.presets == ("fast.yaml",)  # the points' target stays as written
