"""What the GPU benchmark scripts share: a callable's median time in milliseconds by `triton.testing.do_bench`
(its defaults: 25 ms of warm-up, 100 ms of repetitions, L2 flushed between runs), as `archsim measure` times."""

from __future__ import annotations

from collections.abc import Callable

import triton.testing


def median_ms(fn: Callable[[], object]) -> float:
    return triton.testing.do_bench(fn, return_mode="median")
