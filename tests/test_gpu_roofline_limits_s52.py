"""gpu-roofline at sizes where the rows limit stops the prefill kernels and memory the decode ones (auditor 691, X6):
the refusal names both, so raising ARCHSIM_MAX_GPU_ROWS is not offered as the only way out; counts beyond a limit
are shown exactly (1.07e+09 had read as the limit 1073741824 itself)."""

from __future__ import annotations

from click.testing import CliRunner

from archsim.cli import main
from archsim.model.gpu import AttentionCase


def test_a_roofline_stopped_by_the_limit_and_by_memory_names_both(tmp_path) -> None:
    result = CliRunner().invoke(main, ["gpu-roofline", "--seq-len", "4M", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "ARCHSIM_MAX_GPU_ROWS" in result.stderr  # the prefill kernels' reason
    assert "beyond h100-sxm5's 85.9 GB (80 GiB) of DRAM" in result.stderr  # the decode kernels': raising cannot help
    assert result.stderr.count("beyond the limit of 1073741824") == 1  # each reason once, after the kernels it stops


def test_a_count_just_past_the_limit_is_shown_exactly() -> None:
    case = AttentionCase("fwd", 128, 1, 1, 64, 8388616, True, "fp16")  # 2^30 + 1024 query rows
    field, problem = case.limit_problem()
    assert field == "seqlen"
    assert "= 1073742848 query rows, beyond the limit of 1073741824" in problem
