"""Time FlashAttention-2's causal forward on one long prompt, 8K to 1M tokens, with the SM clock and board power
sampled beside it, to see how its rate behaves at the lengths MInference's dense baseline runs and whether what
changes is the clock (the power cap) or the kernel's work per clock; or, with `mlp` as the third argument, the
layer's SwiGLU MLP (three GEMMs) over the same lengths, to see whether the GEMMs hold the clock attention does.

LLaMA-3-8B's attention shapes (32 query heads, 8 KV heads of 128, bf16), batch 1, PyTorch's flash backend (GQA by
`enable_gqa`), as `benchmarks/llama_layer_prefill.py` times it. Each length runs back to back for at least `WINDOW_S`
seconds (one call where a call is longer), timed by CUDA events around the window, each call synchronised before the
next (so the host's gap between calls is in the time: about 1-2 % of an 8K call); `nvidia-smi` samples the clock and
the power every 100 ms, and each length's samples are those inside its window. Prints per length: calls, ms per call,
TFLOP/s (FlashAttention's count, 4 N^2 d heads / 2), the mean SM clock and power in the window, and TFLOP/s per GHz;
writes the raw samples to `clocks.csv` in the directory given (default: the current one). A second argument lists the
lengths in the order to run them (default `LENGTHS`, ascending), a 0 among them idles `IDLE_S` seconds, to tell a
clock that follows the length from one that follows the time spent at the cap.

    python benchmarks/long_prefill_clocks.py [OUT_DIR [N,N,... [attention|mlp]]]   # on a CUDA GPU
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_timing import require_cuda
from torch.nn.attention import SDPBackend, sdpa_kernel

HEADS, KV_HEADS, HEAD_DIM, HIDDEN, FFN = 32, 8, 128, 4096, 14336
LENGTHS = (8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)
WINDOW_S = 3.0
IDLE_S = 10.0
QUERY = "timestamp,clocks.sm,power.draw,temperature.gpu"


def attention(n: int) -> Callable[[], torch.Tensor]:
    """One causal FlashAttention-2 forward over n tokens of every head."""
    q = torch.randn(1, HEADS, n, HEAD_DIM, dtype=torch.bfloat16, device="cuda")
    k, v = (torch.randn(1, KV_HEADS, n, HEAD_DIM, dtype=torch.bfloat16, device="cuda") for _ in range(2))

    def call() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    return call


def mlp(n: int) -> Callable[[], torch.Tensor]:
    """LLaMA-3-8B's SwiGLU MLP over n tokens (random weights), as `benchmarks/llama_layer_prefill.py` runs it."""
    x = torch.randn(n, HIDDEN, dtype=torch.bfloat16, device="cuda")
    gate, up = (torch.randn(HIDDEN, FFN, dtype=torch.bfloat16, device="cuda") * 0.01 for _ in range(2))
    down = torch.randn(FFN, HIDDEN, dtype=torch.bfloat16, device="cuda") * 0.01
    return lambda: (F.silu(x @ gate) * (x @ up)) @ down


# part -> (its call over n tokens, its FLOPs: FlashAttention's count for attention, 3 GEMMs for the MLP)
PARTS = {"attention": (attention, lambda n: 4.0 * HEADS * n * n * HEAD_DIM / 2),
         "mlp": (mlp, lambda n: 2.0 * n * HIDDEN * FFN * 3)}


def run_length(n: int, part: str) -> tuple[int, float, datetime.datetime, datetime.datetime]:
    """(calls, ms per call, window start, window end) of back-to-back calls of `part` over n tokens."""
    build, flops = PARTS[part]
    call = build(n)
    if flops(n) < 2e15:  # a warm-up call where it is short
        call()
    torch.cuda.synchronize()
    start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin = datetime.datetime.now()
    start_event.record()
    calls, wall = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        torch.cuda.synchronize()
        if time.perf_counter() - wall >= WINDOW_S:
            break
    end_event.record()
    torch.cuda.synchronize()
    end = datetime.datetime.now()
    return calls, start_event.elapsed_time(end_event) / calls, begin, end


def samples(path: Path) -> list[tuple[datetime.datetime, float, float]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        try:
            stamp = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f")
            rows.append((stamp, float(parts[1]), float(parts[2])))
        except (ValueError, IndexError):
            continue
    return rows


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")
    lengths = [int(n) for n in sys.argv[2].split(",")] if len(sys.argv) > 2 else LENGTHS
    part = sys.argv[3] if len(sys.argv) > 3 else "attention"
    clocks = out / "clocks.csv"
    require_cuda(__file__)
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    with clocks.open("w") as sink:
        sampler = subprocess.Popen(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits",
                                    "-lms", "100"], stdout=sink)
        try:
            windows = []
            for n in lengths:
                if n == 0:
                    time.sleep(IDLE_S)
                    continue
                windows.append((n, *run_length(n, part)))
                torch.cuda.empty_cache()
        finally:
            sampler.terminate()
            sampler.wait()
    rows = samples(clocks)
    print(f"{'N':>8} {'calls':>5} {'ms/call':>11} {'TFLOP/s':>8} {'SM MHz':>7} {'W':>6} {'TFLOP/s/GHz':>11}")
    for n, calls, ms, begin, end in windows:
        inside = [(mhz, watts) for stamp, mhz, watts in rows if begin <= stamp <= end]
        mhz = sum(m for m, _ in inside) / len(inside) if inside else float("nan")
        watts = sum(w for _, w in inside) / len(inside) if inside else float("nan")
        rate = PARTS[part][1](n) / (ms * 1e-3) / 1e12
        print(f"{n:>8} {calls:>5} {ms:>11.3f} {rate:>8.1f} {mhz:>7.0f} {watts:>6.0f} {rate / mhz * 1e3:>11.1f}",
              flush=True)


if __name__ == "__main__":
    main()
