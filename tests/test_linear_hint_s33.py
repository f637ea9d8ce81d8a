"""The refusal of a linear-attention workload names where it does run: LASP-1/LASP-2 and Ring's prefill (LASP-2's
baseline, which `archsim parallel --scheme ring` times on it), and in decode, nowhere (its hint had sent a decode to
the LASP schemes, which refuse decode)."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main

ARGS = ["parallel", "--devices", "4", "--workload", "linear-llama3-1b", "--seq-len", "16K"]


def _run(*extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*ARGS, *extra])
    return result.exit_code, result.output


def test_a_prefill_refusal_names_ring_beside_the_lasp_schemes_and_ring_runs() -> None:
    code, output = _run("--scheme", "zigzag")
    assert code == 2 and "linear-llama3-1b.yaml: attention: " in output
    assert "lasp1 or lasp2 (and ring, LASP-2's baseline), hybrid under --scheme lasp2h, each in prefill" in output
    assert _run("--scheme", "ring")[0] == 0


def test_a_decode_refusal_sends_no_one_to_a_scheme_that_refuses_decode() -> None:
    code, output = _run("--scheme", "ring", "--direction", "decode")
    assert code == 2 and "no scheme times linear attention in decode" in output and "lasp" not in output
    assert "decode runs ring" in _run("--scheme", "lasp2", "--direction", "decode")[1]
