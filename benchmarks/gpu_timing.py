"""What the GPU benchmark scripts share: a callable's median time in milliseconds by `triton.testing.do_bench`
(its defaults: 25 ms of warm-up, 100 ms of repetitions, L2 flushed between runs), as `archsim measure` times."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import triton.testing


def median_ms(fn: Callable[[], object]) -> float:
    return triton.testing.do_bench(fn, return_mode="median")


def require_cuda(script: str) -> None:
    """Exit with one line (status 2) where torch sees no CUDA GPU: these scripts time kernels on one."""
    if not torch.cuda.is_available():
        print(f"error: {Path(script).name}: needs a CUDA GPU, and torch sees none (run it on the device machine)",
              file=sys.stderr)
        sys.exit(2)
