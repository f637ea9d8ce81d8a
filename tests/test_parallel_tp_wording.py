"""`archsim parallel --devices` counts sequence-parallel ranks, each of --tp devices: the help and the title say so
(a held-out check read `--devices 128 --tp 8` as 128 GPUs when it models 1024)."""

from click.testing import CliRunner

from archsim.cli import main


def test_devices_help_says_ranks_of_tp_devices():
    result = CliRunner().invoke(main, ["parallel", "--help"])
    assert result.exit_code == 0
    assert "Ranks of the sequence-parallel group, each of --tp devices" in " ".join(result.output.split())


def test_title_says_tp_is_per_rank():
    result = CliRunner().invoke(main, ["parallel", "--scheme", "zigzag", "--devices", "2", "--tp", "8", "--workload",
                                       "llama3-405b-fp8", "--seq-len", "128K", "--scope", "layer"])
    assert result.exit_code == 0, result.output
    assert "h100-sxm5 x tp 8 per rank," in result.output.splitlines()[0]
