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
