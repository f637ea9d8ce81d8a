"""`archsim calibrate` gives the same digits whichever BLAS kernel the CPU selects.

The fit's normal equations and its damped k x k solve had gone through OpenBLAS and LAPACK, whose summation order
depends on the kernel OpenBLAS picks for the CPU: on an AVX-512 machine OPENBLAS_CORETYPE=Haswell printed v1's es as
30.5708 where the packaged file (and the default kernel) has 30.5709. The fit now sums with math.fsum (correctly
rounded, so independent of order) and solves in Python floats. Likewise numpy's AVX-512 loop for exp differs in the
last bit from its AVX2 and baseline ones (np.log has not been seen to differ on this data): the fit takes its exps,
and as a precaution its logs, with math.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archsim.gpu.calibrate import solve_damped

ROOT = Path(__file__).resolve().parents[1]
# Full-precision fit of the packaged reference file (json writes a float as its shortest round-trip repr)
FIT_SCRIPT = """
import json
from archsim.gpu.calibrate import calibrate
c = calibrate("archsim/gpu/reference/attention_measured.csv")
print(json.dumps({"params": c.params, "fitted": c.fitted, "fit": c.fit}, sort_keys=True))
"""


def _fit_under(**variables: str) -> str:
    env = {**os.environ, **variables}
    done = subprocess.run([sys.executable, "-c", FIT_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_fit_is_bit_for_bit_the_same_under_two_openblas_kernels() -> None:
    """Haswell (AVX2) and Prescott (SSE3) kernels sum dot products in different orders; both run on any x86-64 CPU
    with AVX2 (elsewhere OpenBLAS ignores the names and both runs use one kernel). Before the fix the two fits
    differed in the last bits of their parameters."""
    assert _fit_under(OPENBLAS_CORETYPE="Haswell") == _fit_under(OPENBLAS_CORETYPE="Prescott")


def test_the_fit_is_bit_for_bit_the_same_without_numpys_avx512_loops() -> None:
    """numpy 2.4 names its AVX-512 targets X86_V4, AVX512_ICL and AVX512_SPR; disabling them makes an AVX-512 CPU run
    the loops an AVX2 CPU would (on a CPU without them the variable changes nothing). Before the fit took math's exp,
    this moved the last bits of its parameters."""
    assert _fit_under() == _fit_under(NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR")


def test_the_damped_solve_pivots_and_damps_the_diagonal() -> None:
    """By hand: normal [[0, 1], [1, 1]] undamped (damping 0, the 1e-9 floor times 0) with gradient [-1, -2] solves
    (normal) delta = [1, 2] to delta = [1, 1], which needs a row swap (a zero first pivot). Damping 1 on normal
    [[2, 0], [0, 4]] with gradient [-6, -8]: (2 + 2 + 1e-9) delta_0 = 6 and (4 + 4 + 1e-9) delta_1 = 8."""
    assert solve_damped([[0.0, 1.0], [1.0, 1.0]], [-1.0, -2.0], 0.0) == [1.0, 1.0]
    assert solve_damped([[2.0, 0.0], [0.0, 4.0]], [-6.0, -8.0], 1.0) == pytest.approx([6 / (4 + 1e-9),
                                                                                      8 / (8 + 1e-9)], rel=1e-15)
