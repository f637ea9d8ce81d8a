"""PIM HBM of NeuPIMs (Heo et al., ASPLOS'24): the Newton-style command latency of the two attention
GEMVs on one channel, and the channel policies (round-robin, greedy min-load, sub-batch partition). The spec,
`PIMSpec`, is `archsim.arch.pim`.

Source of every number: ../shared/reference/pim.md §1.2 (artifact `neupims.json` and
`HBM2_8Gb_x128_dualpim.ini`), §1.3 (command interface) and §1.4 (Algorithms 1-3, artifact constants); tRRD from the
same ini as ../shared/reference/neupims-artifact.md §5 lists it.

Command model (`gemv_parts_cycles`), per channel and per request, derived from the HBM2 timing:
- A *tile* is one all-bank row pass: each of up to 32 banks opens one 1 KB row (512 FP16 elements) and multiplies
  it by the vector held in the channel's global buffer, 16 MACs per bank per COMP command.
- `G_ACT` opens 4 banks at a time, one bank group (G_ACT k: banks 4k..4k+3), and counts as one activation: at most 4
  fall in a tFAW window, and consecutive ones, of different bank groups, are tRRD_S apart (4 cycles; the ini's
  tRRD_L 6 binds two activations of one group, never two G_ACTs of a tile). COMP starts tRCD after the
  last `G_ACT`; COMP commands touch every bank group, so they are spaced by tCCD_L; `READRES` is a read (CL)
  plus the burst of the results over the 128-bit DDR bus; the row closes with a precharge (tRP), no earlier than
  tRAS after the first activation.
- `GWRITE` loads a vector chunk (up to one row) into the global buffer: the artifact's 100 cycles (§1.4).
- Refresh steals tRFC every tREFI: every latency is stretched by tREFI / (tREFI - tRFC).
- Layout: K^T·q puts one key per bank and a 512-element slice of the key's embedding (all heads of this device)
  in the row, so a request costs ceil(L/32)·ceil(E/512) tiles and ceil(E/512) GWRITEs; logits·V puts one output
  dimension (a column of V) per bank and 512 tokens in the row, so ceil(dh/32)·ceil(L/512) tiles and
  ceil(L/512) GWRITEs per head. A partial tile opens only the banks it needs and issues only the columns it needs.
Word size (`at_word_bytes`): the layout and commands above are in FP16 words, `PIMSpec.element_bytes`; an op of
another word size is timed at its own words by bytes: a 1 KB row holds 1024 / w words and a COMP reads the same
32-byte column per bank (16 FP16 MACs), so it covers 32 / w words (FP32: 8 MACs, FP8: 32), and READRES returns
w-byte results. Assumed: the bank's MAC units keep pace with the column at any word size (one COMP per tCCD_L).
External bandwidth (`external_bytes_per_s`): 32 channels x 128 bit x DDR x 1 GHz = 1.024 TB/s, less refresh
(x 3640/3900) like the PIM commands, as the NPU streams weights and KV.
Algorithm 1 (`algorithm1_cycles`, the artifact's estimate: 184 cycles a tile, 100 a GWRITE) is kept as the load
metric of the greedy policy and as a cross-check of the command model. `PIMSpec.gemv_timing = "algorithm1"` times the
GEMVs by it instead (`gemv_parts_cycles`): a modelling alternative for attributing differences from the paper, not
the default.
Newton's command count (`newton_commands`, the npu+pim branch's separate COMP and READRES commands,
../shared/reference/neupims-artifact.md §4.2): K^T.q takes per 512-element slice of the embedding one GWRITE and
per tile one G_ACT and, per head in the slice, head_dim / 16 COMPs and a READRES; logits.V per head and 512-token
chunk one GWRITE and per tile a G_ACT, ceil(chunk / 16) COMPs and a READRES. With `PIMSpec.command_issue =
"one-per-cycle"` (the artifact's naive baseline, a named compatibility option) the host issues one command per
cycle for the whole device, so a GEMV phase takes at least the batch's command count in cycles.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from archsim.arch.pim import PIMSpec
from archsim.arch.spec import ceil_div
from archsim.errors import SpecError


@functools.lru_cache(maxsize=16)
def at_word_bytes(pim: PIMSpec, word_bytes: int, source: str = "<python>", where: str = "word_bytes") -> PIMSpec:
    """`pim` timing words of `word_bytes` bytes (module docstring): the same row and COMP column bytes, so
    row_bytes / word_bytes words a row and macs_per_bank x element_bytes / word_bytes MACs a COMP; a SpecError
    blaming `source` and `where` when the words do not divide the column."""
    if word_bytes == pim.element_bytes:
        return pim
    problem = word_problem(pim, word_bytes)
    if problem:
        raise SpecError(source, where, problem)
    column_bytes = pim.macs_per_bank * pim.element_bytes
    return replace(pim, element_bytes=word_bytes, macs_per_bank=column_bytes // word_bytes)


def word_problem(pim: PIMSpec, word_bytes: int) -> str | None:
    """Why a bank-PIM's COMP does not compute `word_bytes`-byte words, or None when it does: whole words fill its
    column (macs_per_bank x element_bytes bytes). The one rule of a bank-PIM's widths (`at_word_bytes` and the
    system check of a workload's widths read it)."""
    column_bytes = pim.macs_per_bank * pim.element_bytes
    if isinstance(word_bytes, int) and word_bytes > 0 and column_bytes % word_bytes == 0:
        return None
    return (f"a bank-PIM COMP reads {column_bytes}-byte columns: expected ops of a word size dividing it, got "
            f"{word_bytes!r}-byte words")


def external_peak_bytes_per_s(pim: PIMSpec) -> float:
    """Off-chip peak bandwidth: channels x 128 bit x DDR x clock (1.02 TB/s, §1.2)."""
    return pim.channels * pim.bus_bytes_per_cycle * pim.clock_hz


def external_bytes_per_s(pim: PIMSpec) -> float:
    """Off-chip bandwidth the NPU streams at: the peak less refresh (tRFC of every tREFI), as PIM commands lose."""
    return external_peak_bytes_per_s(pim) / pim.refresh_factor


def heads_in_slice(start: int, chunk: int, head_dim: int) -> int:
    """Heads whose `head_dim` words overlap the embedding slice [start, start + chunk) of K^T.q's layout (the heads'
    keys one after another in the row): one partial logit each to READRES. ceil(chunk / head_dim) where the slice
    starts on a head; one more where it starts inside one and its end crosses one more boundary (head_dim 100, a
    512-word slice at 4096: heads 40..46, 7, not ceil(512 / 100) = 6)."""
    return (start + chunk - 1) // head_dim - start // head_dim + 1


def tile_cycles(pim: PIMSpec, banks, columns, result_bytes):
    """One all-bank row pass: G_ACTs tRRD_S apart under tFAW, tRCD, COMPs at tCCD_L, READRES, precharge (no
    refresh). Arguments may be numpy arrays (elementwise); zero banks cost nothing."""
    banks, columns = np.asarray(banks), np.asarray(columns)
    gacts = ceil_div(banks, pim.banks_per_activation)
    per_window = pim.activations_per_tFAW
    window = max(pim.tFAW_cycles, per_window * pim.tRRD_S_cycles)  # G_ACT k + per_window issues `window` after k
    last_act = (ceil_div(gacts, per_window) - 1) * window + ((gacts - 1) % per_window) * pim.tRRD_S_cycles
    comp_end = last_act + pim.tRCD_cycles + columns * pim.tCCD_L_cycles
    read_end = comp_end + pim.tCL_cycles + np.ceil(np.asarray(result_bytes) / pim.bus_bytes_per_cycle)
    total = np.maximum(read_end, pim.tRAS_cycles) + pim.tRP_cycles
    return np.where(banks > 0, total, 0)


def logits_cycles(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """K^T·q of one request (all `heads` of this device) on its channel, refresh included."""
    seq = np.asarray(seq_tokens)
    embed = heads * head_dim
    banks, row = pim.banks_per_channel, pim.row_elements
    cycles = np.zeros(seq.shape)
    for start in range(0, embed, row):
        chunk = min(row, embed - start)
        columns = ceil_div(chunk, pim.macs_per_bank)
        result = heads_in_slice(start, chunk, head_dim) * pim.element_bytes  # a partial logit per head per bank
        full = tile_cycles(pim, banks, columns, banks * result)
        rest = seq % banks
        cycles = cycles + pim.gwrite_cycles + (seq // banks) * full + tile_cycles(pim, rest, columns, rest * result)
    return cycles * pim.refresh_factor


def attend_cycles(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """logits·V of one request (all `heads` of this device) on its channel, refresh included."""
    seq = np.asarray(seq_tokens)
    banks, row = pim.banks_per_channel, pim.row_elements
    per_head = ceil_div(seq, row) * pim.gwrite_cycles
    for start in range(0, head_dim, banks):
        used = min(banks, head_dim - start)
        full = tile_cycles(pim, used, row // pim.macs_per_bank, used * pim.element_bytes)
        rest = seq % row
        per_head = per_head + (seq // row) * full + tile_cycles(
            pim, np.where(rest > 0, used, 0), ceil_div(rest, pim.macs_per_bank), used * pim.element_bytes)
    return heads * per_head * pim.refresh_factor


def gemv_parts_cycles(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """(logits, attend) cycles of one request's MHA on its channel, one after the other: the command model, or
    Algorithm 1 when `pim.gemv_timing == "algorithm1"`."""
    if pim.gemv_timing == "algorithm1":
        return algorithm1_parts_cycles(pim, seq_tokens, heads, head_dim)
    return logits_cycles(pim, seq_tokens, heads, head_dim), attend_cycles(pim, seq_tokens, heads, head_dim)


def algorithm1_parts_cycles(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """NeuPIMs Algorithm 1 (§1.4) with whole tiles, (K^T·q, logits·V): GWRITEs and 184-cycle tiles."""
    seq = np.asarray(seq_tokens)
    embed, banks, page = heads * head_dim, pim.banks_per_channel, pim.row_elements
    e_pages = ceil_div(embed, page)
    logits = pim.gwrite_cycles * e_pages + pim.algorithm1_tile_cycles * ceil_div(seq, banks) * e_pages
    seq_pages = ceil_div(seq, page)
    attend = (pim.gwrite_cycles * seq_pages * heads
              + pim.algorithm1_tile_cycles * ceil_div(head_dim, banks) * seq_pages * heads)
    return logits, attend


def algorithm1_cycles(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """NeuPIMs Algorithm 1 (§1.4): the greedy policy's load estimate of one request's MHA."""
    logits, attend = algorithm1_parts_cycles(pim, seq_tokens, heads, head_dim)
    return logits + attend


def newton_commands(pim: PIMSpec, seq_tokens, heads: int, head_dim: int):
    """(K^T.q, logits.V) Newton commands of one request (all `heads` of this device; module docstring): for E = 1024
    and dk = 128, 2 + 2 ceil(s/32) (1 + 4 (8 + 1)) and, per 512-token chunk, 8 (1 + 4 (ceil(chunk/16) + 2))
    (neupims-artifact.md §4.2, `NeuPIMSLogitSoftmax.cc:231-252`, `NeuPIMSAttend.cc:204-225`)."""
    seq = np.asarray(seq_tokens)
    embed, banks, row = heads * head_dim, pim.banks_per_channel, pim.row_elements
    logits = np.zeros(seq.shape)
    for start in range(0, embed, row):
        touched = heads_in_slice(start, min(row, embed - start), head_dim)
        logits = logits + 1 + ceil_div(seq, banks) * (1 + touched * (ceil_div(head_dim, pim.macs_per_bank) + 1))
    tiles = ceil_div(head_dim, banks)
    full, rest = seq // row, seq % row
    per_head = full * (1 + tiles * (row // pim.macs_per_bank + 2)) + np.where(
        rest > 0, 1 + tiles * (ceil_div(rest, pim.macs_per_bank) + 2), 0)
    return logits, heads * per_head


def round_robin(n_requests: int, channels: int) -> np.ndarray:
    """Channel of each request in arrival order (the naive NPU+PIM baseline, `rr`)."""
    return np.arange(n_requests) % channels


def greedy_channels(loads: list[float], channels: int) -> list[int]:
    """Algorithm 2 (`clb`): the channel of each request, longest request first, each onto the channel with the
    least load so far (in Python: a serving step places a few dozen requests, where numpy's per-call overhead
    outweighs the loop)."""
    # With positive loads the first `channels` requests find every channel empty and, ties going to the lower
    # channel, take channels 0, 1, ... in turn; only the rest need the heap, which starts from those loads (0.0 +
    # load is load exactly). A zero or NaN load takes the heap from the start. Positive loads sort longest first,
    # ties in arrival order, as the stable argsort of -loads orders the others.
    if min(loads, default=1.0) > 0 and math.isfinite(sum(loads)):
        order, head = sorted(range(len(loads)), key=loads.__getitem__, reverse=True), channels
    else:
        order, head = np.argsort(-np.asarray(loads, dtype=float), kind="stable").tolist(), 0
    assignment = [0] * len(loads)
    first = order[:head]
    for ch, i in enumerate(first):
        assignment[i] = ch
    rest = order[head:]
    if rest:
        heap = [(loads[i], ch) for ch, i in enumerate(first)]
        heap += [(0.0, ch) for ch in range(len(heap), channels)]
        heapq.heapify(heap)
        for i in rest:
            load, ch = heap[0]
            assignment[i] = ch
            heapq.heapreplace(heap, (load + loads[i], ch))
    return assignment


def channel_loads(loads: Sequence[float], assignment: np.ndarray, channels: int) -> np.ndarray:
    """Sum of the request loads pinned to each channel."""
    return np.bincount(assignment, weights=np.asarray(loads, dtype=float), minlength=channels)


def sub_batch_partition(assignment: np.ndarray, channels: int, order: np.ndarray | None = None) -> np.ndarray:
    """Algorithm 3: each channel's requests split in half, odd remainders alternating between the sub-batches;
    a channel's first half (in arrival order, or in `order`, a permutation of the requests) goes to the first.
    Returns the sub-batch (0 or 1) of each request. (One pass in Python: a batch holds at most a few hundred
    requests, where numpy's per-call overhead outweighs the loop.) When channels 0 .. n - 1 hold one request each
    (n requests: round-robin or the greedy policy on a batch of at most `channels`), every channel is odd and the
    k-th goes to k % 2: a request's sub-batch is its channel % 2, whatever the order."""
    channel = np.asarray(assignment, dtype=int)
    channel_of = channel.tolist()
    if channel_of and max(channel_of) == len(channel_of) - 1 and len(set(channel_of)) == len(channel_of):
        return channel % 2
    counts = [0] * max(channels, max(channel_of, default=-1) + 1)
    for ch in channel_of:
        counts[ch] += 1
    odd_sub, odd_seen = [0] * len(counts), 0  # an odd channel's last request: the k-th such goes to k % 2
    for ch, n in enumerate(counts):
        if n % 2:
            odd_sub[ch], odd_seen = odd_seen % 2, odd_seen + 1
    seen = [0] * len(counts)
    sub = [0] * len(channel_of)
    for i in range(len(channel_of)) if order is None else np.asarray(order).tolist():
        ch = channel_of[i]
        rank, n = seen[ch], counts[ch]
        seen[ch] = rank + 1
        sub[i] = odd_sub[ch] if n % 2 and rank == n - 1 else int(n // 2 <= rank < n - n % 2)
    return np.array(sub, dtype=int)
