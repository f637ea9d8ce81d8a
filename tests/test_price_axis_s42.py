"""A device's `price_per_hour` belongs to the preset its system file names: an axis (or `with_fields`) that sets
another preset leaves the price unknown, never the old device's (audit helper-506: an H200 pool was priced at the
H20's $4.63/h in a sweep of pools)."""

from __future__ import annotations

import math

import yaml

from archsim.systems.system_spec import load_system, with_fields


def test_another_preset_leaves_the_device_unpriced() -> None:
    lamina = load_system("lamina")
    assert lamina.devices["memory"].price_per_hour == 4.63
    assert with_fields(lamina, {"devices.memory.preset": "h200-sxm"}).devices["memory"].price_per_hour is None
    assert with_fields(lamina, {"devices.memory.preset": "h20"}).devices["memory"].price_per_hour == 4.63
    priced = with_fields(lamina, {"devices.memory.preset": "h200-sxm", "devices.memory.price_per_hour": 9.0})
    assert priced.devices["memory"].price_per_hour == 9.0
    other_field = with_fields(lamina, {"devices.compute.attention_kernel": "FlashAttention-2"})
    assert other_field.devices["memory"].price_per_hour == 4.63


def _sweep(tmp_path, objectives: list[str], axes: dict) -> str:
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump({
        "name": "pools", "description": "d", "system": "lamina", "workload": "llama3-8b",
        "serving": {"requests": 4, "lengths": "azure-conv", "seed": 0, "max_batch": 16, "rate_per_s": 30},
        "axes": axes, "sampling": {"kind": "grid"}, "objectives": objectives}))
    return str(path)


def test_a_sweep_of_presets_refuses_a_cost_objective_without_their_prices(tmp_path, invoke) -> None:
    spec = _sweep(tmp_path, ["throughput_tok_s", "cost_per_token_usd"],
                  {"system.devices.memory.preset": ["h20", "h200-sxm"]})
    code, out = invoke("sweep", spec, "--db", str(tmp_path / "s.sqlite"), "--local")
    assert code == 2 and "axes.system.devices.memory.preset[1]: cost_per_token_usd (objectives[1])" in out, out


def test_a_sweep_of_presets_stores_an_unknown_cost(tmp_path, invoke) -> None:
    spec = _sweep(tmp_path, ["throughput_tok_s", "latency_s"], {"system.devices.memory.preset": ["h20", "h200-sxm"]})
    db = tmp_path / "s.sqlite"
    assert invoke("sweep", spec, "--db", str(db), "--local")[0] == 0
    from archsim.dse.store import read_store

    rows = read_store(db)[0].set_index("system.devices.memory.preset")
    assert rows.loc["h20", "cost_per_token_usd"] > 0 and math.isnan(rows.loc["h200-sxm", "cost_per_token_usd"])
