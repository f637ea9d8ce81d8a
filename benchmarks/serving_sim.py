"""Speed of the serving simulator on the NeuPIMs model (prints figures; not a timed test - these machines are
shared and noisy).

Simulates 1,000 ShareGPT-like requests (pim.md §1.5: 80 / 296 tokens on average) of GPT3-7B on NeuPIMs and its
baselines at a moderate and a saturating Poisson rate, and prints the wall time, iterations simulated per second
and the simulated serving metrics. Target (issue 6): 1,000 requests of GPT3-7B on NeuPIMs in under 30 s on one core.
Run: .venv/bin/python benchmarks/serving_sim.py
"""

from __future__ import annotations

import time

from archsim.systems import neupims
from archsim.systems.requests import poisson_requests
from archsim.systems.serving import ServingConfig, simulate_serving


def main() -> None:
    config = ServingConfig(max_batch=256)
    for mode in ("neupims", "npu+pim", "npu-only"):
        model = neupims.system(mode, "gpt3-7b")
        for rate_per_s in (20.0, 1000.0):
            requests = poisson_requests(rate_per_s, 1000, "sharegpt", seed=0)
            start = time.perf_counter()
            result = simulate_serving(model, requests, config)
            wall_s = time.perf_counter() - start
            print(f"{mode:<8} 1,000 ShareGPT requests at {rate_per_s:g}/s: {wall_s:.2f} s wall, "
                  f"{result.iterations:,} iterations ({result.iterations / wall_s:,.0f} /s); simulated "
                  f"{result.throughput_tok_s:,.0f} tok/s, TTFT p50/p99 {result.ttft_p50_s * 1e3:.1f}/"
                  f"{result.ttft_p99_s * 1e3:.1f} ms, TBT p50/p99 {result.tbt_p50_s * 1e3:.2f}/"
                  f"{result.tbt_p99_s * 1e3:.2f} ms, {result.preemptions} preemptions, "
                  + ", ".join(f"{u} {v:.0%}" for u, v in result.utilization.items()))


if __name__ == "__main__":
    main()
