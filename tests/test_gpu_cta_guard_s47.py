"""A GPU grid whose CTAs do unequal work (a causal one) is list-scheduled CTA by CTA, a float64 duration each: with
ARCHSIM_MAX_GPU_ROWS raised to 2^53, `archsim parallel --scheme ring` at 2^32 tokens had its one-device reference
schedule ~2^30 CTAs, grow past 5 GB and end 'error: out of memory (a bug ...)'. The CTAs one schedule walks have
their own guard, ARCHSIM_MAX_GPU_CTAS (2^27 by default, twice the most any kernel's uneven grid has within the
default rows limit, so nothing within the default limits is refused); a grid of equal CTAs is timed in closed form,
whatever its size."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.model.gpu import MAX_QUERY_ROWS, MAX_WALKED_CTAS, AttentionCase, TiledLaunch, _uniform_counts
from archsim.model.gpu_kernels import KERNELS, plans, predict

H100 = load_gpu("h100-sxm5")


def _predict(case: AttentionCase, kernel: str = "FlashAttention-2"):
    return predict(kernel, case, H100, load_calibration().family_params(KERNELS[kernel][0]))


def test_an_uneven_grid_beyond_the_limit_is_refused_naming_the_variable(monkeypatch) -> None:
    causal = AttentionCase("fwd", 1, 8, 8, 128, 4096, True, "fp16")  # 8 heads x 32 query blocks of 128 rows
    assert _predict(causal).time_s > 0
    monkeypatch.setenv("ARCHSIM_MAX_GPU_CTAS", "255")
    with pytest.raises(SpecError) as caught:
        _predict(causal)
    assert "256 CTAs" in caught.value.message and "ARCHSIM_MAX_GPU_CTAS" in caught.value.message
    monkeypatch.setenv("ARCHSIM_MAX_GPU_CTAS", "256")
    assert _predict(causal).time_s > 0


def test_an_even_grid_is_timed_in_closed_form_beyond_it(monkeypatch) -> None:
    monkeypatch.setenv("ARCHSIM_MAX_GPU_CTAS", "1")
    assert _predict(AttentionCase("fwd", 1, 8, 8, 128, 4096, False, "fp16")).time_s > 0


@pytest.mark.parametrize(("kernel", "gpu", "head_dim"), [("FlashAttention-2", "mi300x", 256),
                                                         ("FlashAttention-2", "mi300x", 224)])
def test_no_grid_within_the_default_rows_limit_reaches_the_default(kernel, gpu, head_dim) -> None:
    """The most CTAs an uneven grid has within 2^30 query rows: FA2's backward at 32 x 32 blocks (MI300X's fallback
    tile; FA2's own launcher tiles, on Ada too since s47, have 64-row query blocks, so a 33-token head's two key
    blocks do equal work), a head of 33 tokens in 2 blocks of unequal work, 2^30 // 33 heads (its plans only: no
    schedule is timed)."""
    case = AttentionCase("bwd", MAX_QUERY_ROWS // 33, 1, 1, head_dim, 33, True, "fp16")
    assert not case.limit_problem()[1]
    walked = [launch.ctas for plan in plans(kernel, case, load_gpu(gpu)) for launch in plan.launches
              if isinstance(launch, TiledLaunch) and _uniform_counts(launch) is None]
    assert walked and 2**26 - 2**21 < max(walked) <= MAX_WALKED_CTAS // 2


def _memory_capped(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def test_the_audits_ring_gives_a_note_not_an_out_of_memory_within_3_gb() -> None:
    """The audit's ring at the longest context a device holds (2^32 tokens is beyond its memory): the one-device
    reference's 266,750,976 causal CTAs are refused, which its note says; the point stands."""
    env = {**os.environ, "ARCHSIM_MAX_SIZE": str(2**53), "ARCHSIM_MAX_GPU_ROWS": str(2**53)}
    done = subprocess.run([sys.executable, "-m", "archsim", "parallel", "--scheme", "ring", "--devices", "4096",
                           "--workload", "linear-llama3-1b", "--seq-len", "2134007808", "--topology", "dgx-a100",
                           "--json"], env=env, capture_output=True, text=True, timeout=300, check=False,
                          preexec_fn=lambda: _memory_capped(3 * 2**30))
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    [point] = json.loads(done.stdout)["points"]
    assert point["feasible"] and point["efficiency"] is None
    assert point["note"] == ("no one-device reference, so no efficiency: 266750976 CTAs of unequal work (a causal "
                             "grid's, say), timed one by one, beyond the limit of 134217728 on one schedule (raise "
                             "it with the environment variable ARCHSIM_MAX_GPU_CTAS)")
