"""Speed of the serving simulator (prints figures; not a timed test - these machines are shared and noisy).

Simulates 1,000 ShareGPT-like requests (pim.md §1.5: 80 / 296 tokens on average) of GPT3-7B at a few Poisson
rates and prints the wall time, iterations simulated per second and the simulated serving metrics.
Target (issue): 1,000 requests of GPT3-7B on NeuPIMs in under 30 s on one core. The NeuPIMs model is separate work;
this uses the stand-in below, whose cost per iteration is a few arithmetic operations, so the figures measure the
simulator itself (a heavier system model adds its own time per iteration, times the iterations printed).
Run: .venv/bin/python benchmarks/serving_sim.py
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from archsim.systems.iteration import Batch, IterationCost
from archsim.systems.requests import poisson_requests
from archsim.systems.serving import ServingConfig, simulate_serving

# GPT3-7B (pim.md §1.5): 32 layers, d = 4096, FP16; ~12 L d^2 parameters in the blocks.
LAYERS, D_MODEL, BYTES_PER_VALUE = 32, 4096, 2
PARAMS = 12 * LAYERS * D_MODEL**2


@dataclass(frozen=True)
class LinearNpuPim:
    """A stand-in NPU + PIM system, linear in the batch's tokens (pim.md §5 defaults): weights stream once per
    iteration at 1.02 TB/s and the linear layers run at 262 TFLOP/s (8 x 128 x 128 MACs at 1 GHz) on the NPU, which
    takes whichever is longer; attention reads each decode's KV in the PIM at 8x the external bandwidth, after the
    NPU (no overlap). Energy: 3.59 pJ/bit off-chip for weights, 0.55 pJ/bit in-bank for KV. Capacity: 32 GB less
    the weights."""

    name: str = "linear-npu-pim-gpt3-7b"
    kv_bytes_per_token: float = 2 * LAYERS * D_MODEL * BYTES_PER_VALUE
    kv_capacity_bytes: float = 32e9 - PARAMS * BYTES_PER_VALUE
    external_bw_bytes_per_s: float = 1.02e12
    pim_bw_bytes_per_s: float = 8 * 1.02e12
    npu_flop_per_s: float = 8 * 128 * 128 * 2 * 1e9

    def iteration(self, batch: Batch) -> IterationCost:
        tokens = sum(batch.prefill_tokens) + len(batch.decode_context_tokens)
        weights_bytes = PARAMS * BYTES_PER_VALUE
        npu_s = max(weights_bytes / self.external_bw_bytes_per_s, 2 * PARAMS * tokens / self.npu_flop_per_s)
        kv_bytes = sum(batch.decode_context_tokens) * self.kv_bytes_per_token
        pim_s = kv_bytes / self.pim_bw_bytes_per_s
        energy_j = (weights_bytes * 3.59 + kv_bytes * 0.55) * 8e-12
        return IterationCost(npu_s + pim_s, energy_j, {"npu": npu_s, "pim": pim_s})


def main() -> None:
    model = LinearNpuPim()
    config = ServingConfig(max_batch=256)
    for rate_per_s in (10.0, 40.0, 1000.0):
        requests = poisson_requests(rate_per_s, 1000, "sharegpt", seed=0)
        start = time.perf_counter()
        result = simulate_serving(model, requests, config)
        wall_s = time.perf_counter() - start
        print(f"1,000 ShareGPT requests at {rate_per_s:g}/s: {wall_s:.2f} s wall, {result.iterations:,} iterations "
              f"({result.iterations / wall_s:,.0f} /s); simulated {result.throughput_tok_s:,.0f} tok/s, "
              f"TTFT p50/p99 {result.ttft_p50_s * 1e3:.0f}/{result.ttft_p99_s * 1e3:.0f} ms, "
              f"TBT p50/p99 {result.tbt_p50_s * 1e3:.1f}/{result.tbt_p99_s * 1e3:.1f} ms, "
              f"{result.preemptions} preemptions, peak {result.peak_pages}/{result.capacity_pages} pages, "
              f"npu {result.utilization['npu']:.0%} pim {result.utilization['pim']:.0%}, "
              f"{result.energy_per_token_j * 1e3:.1f} mJ/token")


if __name__ == "__main__":
    main()
