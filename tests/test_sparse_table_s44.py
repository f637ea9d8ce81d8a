"""`archsim sparse`'s decode table shows one layer's attention to 0.1 us: at 4K tokens of Llama-3-8B on an H100,
Quest's 20.5 us against dense's 13.9 us had both read 0.02 ms (audit helper-516)."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main


def test_the_attention_row_tells_which_side_is_faster() -> None:
    result = CliRunner().invoke(main, ["sparse", "--method", "quest", "--gpu", "h100-sxm5", "-w", "llama3-8b",
                                       "--context", "4096", "--budget", "512"])
    assert result.exit_code == 0, result.output
    attention = next(line for line in result.output.splitlines() if " attention " in line).split()
    decode = next(line for line in result.output.splitlines() if " decode " in line).split()
    assert attention[6:8] == ["0.0205", "0.0139"], attention
    assert decode[6:8] == ["6.80", "6.61"], decode
