"""A rank holds one device of every kind: a second GPU kind of another count than the weight holder's was read as one
a rank, so a lone auxiliary GPU was charged 4 ranks' static power and price (audit helper-549)."""

from __future__ import annotations

import pytest
import yaml

from archsim.errors import SpecError
from archsim.systems.system_spec import load_system

AUX = {"kind": "gpu", "preset": "h100-sxm5", "energy_model": "per-action", "hbm_pj_per_bit": 3.59,
       "pj_per_flop": 0.32, "sram_pj_per_byte": 3.68, "static_w": 100, "price_per_hour": 1}
RULES = [{"op": ["attn_residual"], "device": "aux"},
         {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                 "ffn_residual"], "device": "gpu"}]


def _system(tmp_path, count: int):
    path = tmp_path / "aux.yaml"
    path.write_text(yaml.safe_dump({"name": "aux", "base": "duplex-gpu", "devices": {"aux": {**AUX, "count": count}},
                                    "placement": RULES}))
    return path


def test_a_second_gpu_of_another_count_is_refused(tmp_path) -> None:
    path = _system(tmp_path, 1)
    with pytest.raises(SpecError) as error:
        load_system(str(path))
    assert (error.value.source, error.value.where) == (str(path), "devices.aux.count")
    assert error.value.message.startswith("expected 8, devices.gpu.count: each rank holds one device of every kind")


def test_a_second_gpu_of_the_holders_count_loads(tmp_path) -> None:
    assert load_system(str(_system(tmp_path, 8))).devices["aux"].count == 8
