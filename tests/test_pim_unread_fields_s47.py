"""A bank-PIM field no system reads is refused, as the other unread fields are (`system_spec.UNREAD_FIELDS`):
tCCD_S and tRTP space only the command-level channel's ordinary reads (archsim.model.dram); a system's PIM GEMVs
take tRRD_S between G_ACTs and tCCD_L between COMPs (archsim.systems.pim), so a spec setting them changed no result
(fixer 591's note)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("field", ["tRTP_cycles", "tCCD_S_cycles"])
def test_a_field_only_the_channel_model_reads_is_refused(tmp_path, field: str) -> None:
    spec = tmp_path / "np.yaml"
    spec.write_text(f"name: np\nbase: neupims\ndevices: {{pim: {{{field}: 4}}}}\n")
    done = subprocess.run([sys.executable, "-m", "archsim", "check", str(spec)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and f"devices.pim.{field}: not read by a system" in done.stderr


def test_a_field_the_gemvs_read_is_kept(tmp_path) -> None:
    spec = tmp_path / "np.yaml"
    spec.write_text("name: np\nbase: neupims\ndevices: {pim: {tRRD_S_cycles: 5}}\n")
    done = subprocess.run([sys.executable, "-m", "archsim", "check", str(spec)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
