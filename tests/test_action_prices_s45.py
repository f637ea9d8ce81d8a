"""A per-action energy price above 1000 pJ is refused on every device kind, as on a gpu: a PIM or NPU price typed
in fJ (3290 for 3.29 pJ/bit) had made the energy 1000x too large without a word (audit helper-549)."""

from __future__ import annotations

import pytest
import yaml

from archsim.errors import SpecError
from archsim.systems.system_spec import load_system


@pytest.mark.parametrize(("base", "device", "field"), [
    ("neupims", "npu", "op_energy_pj"), ("neupims", "pim", "bank_pim_pj_per_bit"),
    ("neupims", "pim", "offchip_pj_per_bit"), ("duplex", "lp", "internal_pj_per_bit"), ("duplex", "lp", "pj_per_flop"),
])
def test_a_price_in_another_unit_is_refused_on_every_kind(tmp_path, base, device, field) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": base, "devices": {device: {field: 3290}}}))
    with pytest.raises(SpecError) as error:
        load_system(str(path))
    assert (error.value.source, error.value.where) == (str(path), f"devices.{device}.{field}")
    assert error.value.message == "expected at most 1000 pJ (a device's are 0.1-20), got 3290: a value in fJ?"
