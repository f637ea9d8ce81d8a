"""A rank sized `a / b` of two params (`HL: heads / devices`, the heads a head-sharded cascade puts on a device) where
b does not divide a is refused naming the divisor, not the rank's fractional size.

Expectations: `archsim execute ulysses-attention --set devices=3` (the default heads 4) and the same with
`--workload llama3-8b` (heads 32) exit 2 with one line "--set: devices: expected a divisor of heads (4), got 3:
ulysses-attention splits heads over devices (ranks.HL: heads / devices)", with where each value came from,
and no "pass --workload" (a workload's heads need not divide either); a default divisor (devices 2 under heads 5)
says how to set it; a rank that divides still binds.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cascade.bind import bind
from archsim.cli import main
from archsim.errors import SpecError


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(("workload", "heads", "origin"), [
    ((), 4, "heads=4 is ulysses-attention's small default"),
    (("--workload", "llama3-8b"), 32, "heads=32 from workload llama3-8b"),
])
def test_devices_not_dividing_heads_names_the_divisor(workload: tuple[str, ...], heads: int, origin: str) -> None:
    code, output = cli("execute", "ulysses-attention", *workload, "--set", "devices=3", "--check")
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and "Traceback" not in output, output
    assert output.startswith(f"error: --set: devices: expected a divisor of heads ({heads}), got 3: "
                             "ulysses-attention splits heads over devices (ranks.HL: heads / devices) ("), output
    assert "devices=3 from --set" in output and origin in output and ".yaml" not in output, output
    assert "positive integer size" not in output and "--workload" not in output, output


def test_a_default_divisor_says_how_to_set_it() -> None:
    code, output = cli("execute", "ulysses-attention", "--set", "heads=5", "--check")
    assert code == 2, output
    assert "devices: expected a divisor of heads (5), got 2" in output, output
    assert "heads=5 from --set" in output and "devices=2 is ulysses-attention's default: pass --set devices=N" in output


@pytest.mark.parametrize(("name", "divisor"), [("megatron-sp-attention", "devices"), ("usp-attention", "ulysses")])
def test_bind_blames_the_divisors_source(name: str, divisor: str) -> None:
    cascade = library.load_cascade_spec(name)
    with pytest.raises(SpecError) as caught:
        bind(cascade, {"heads": 8, "kv_heads": 1, divisor: 3})
    assert (caught.value.source, caught.value.where) == ("<params>", divisor)
    assert caught.value.message.startswith(f"expected a divisor of heads (8), got 3: {name} splits heads over "
                                           f"{divisor} (ranks.HL: heads / {divisor}) ("), caught.value.message


def test_a_dividing_split_binds() -> None:
    binding = bind(library.load_cascade_spec("ulysses-attention"), {"heads": 6, "kv_heads": 3, "devices": 3,
                                                                    "seq_len": 12})
    assert binding.rank_sizes["HL"] == 2
