"""A derived system spec (`base:`) that gives a device another preset without a price leaves the device unpriced,
as `with_fields` and a sweep do: the base's price was written for its own preset (audit 635: `base: lamina` with
A100 compute GPUs billed them at the H100's $11.06/h)."""

from __future__ import annotations

import pytest

from archsim.systems.system_spec import load_system


def _derived(tmp_path, device: str) -> str:
    path = tmp_path / "derived.yaml"
    path.write_text(f"base: lamina\nname: lamina-derived\ndevices:\n  compute:\n{device}")
    return str(path)


def test_another_preset_without_a_price_is_unpriced(tmp_path) -> None:
    system = load_system(_derived(tmp_path, "    preset: a100-80gb-sxm4\n"))
    assert system.devices["compute"].price_per_hour is None
    assert system.devices["memory"].price_per_hour == load_system("lamina").devices["memory"].price_per_hour


@pytest.mark.parametrize(("device", "price"), [("    preset: a100-80gb-sxm4\n    price_per_hour: 4.0\n", 4.0),
                                               ("    preset: h100-sxm5\n", 11.06),
                                               ("    count: 2\n", 11.06)])
def test_a_price_given_or_the_same_preset_keeps_one(tmp_path, device: str, price: float) -> None:
    assert load_system(_derived(tmp_path, device)).devices["compute"].price_per_hour == price


def test_the_reproductions_system_names_the_papers_models() -> None:
    """`lamina_reproduce.lamina_system` (and `bw_min`, `saturation_batch`, ... through it) at another model: a
    SpecError naming the three (it was a bare KeyError)."""
    from archsim.errors import SpecError
    from archsim.systems import lamina_reproduce

    with pytest.raises(SpecError, match="llama-33b, llama-65b, llama3-70b"):
        lamina_reproduce.bw_min("llama3-8b")
