"""archsim parallel's limits name the variable that raises them (audit helper-478): --devices above 4096 said only
"expected at most 4096", and crossed lists of 400,000 points ran for hours with no output."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main


def _parallel(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["parallel", "-w", "llama3-8b", *args], env=env)


def test_more_devices_than_the_limit_name_its_variable_which_raises_it() -> None:
    refused = _parallel("--scheme", "ring", "--devices", "8192", "--seq-len", "8M")
    assert refused.exit_code == 2
    assert refused.output.strip() == ("error: --devices: expected at most 4096 (raise ARCHSIM_MAX_DEVICES for "
                                      "more), got 8192")
    assert _parallel("--scheme", "ring", "--devices", "8192", "--seq-len", "8M",
                     env={"ARCHSIM_MAX_DEVICES": "8192"}).exit_code == 0


def test_crossed_lists_beyond_the_point_limit_are_refused_before_any_work() -> None:
    devices = ",".join(str(p) for p in range(2, 202, 2))  # 100 values
    lengths = ",".join(str(1024 * k) for k in range(1, 51))  # 50 values
    refused = _parallel("--scheme", "ring,zigzag,stripe", "--devices", devices, "--seq-len", lengths)
    assert refused.exit_code == 2
    assert "make 15,000 points, over the limit of 10,000" in refused.output
    assert "ARCHSIM_MAX_PARALLEL_POINTS" in refused.output and refused.output.count("\n") == 1
    small = _parallel("--scheme", "ring", "--devices", "2,4", "--seq-len", "8K",
                      env={"ARCHSIM_MAX_PARALLEL_POINTS": "1"})
    assert small.exit_code == 2 and "make 2 points, over the limit of 1" in small.output
