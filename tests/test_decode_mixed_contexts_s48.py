"""A GPU decode call over requests of different context lengths (audit s48): the serving GPU device had timed a
batch's decode attention as every request at the batch's mean context, so a 32,000-token request took 19.2 us a
layer alone and 16.6 us beside 127 requests of 16 tokens (vllm-h100, Llama-3-8B), and 1 x 131,072 + 255 x 100
tokens cost what 256 x 614 did (Llama-3-70B). FlashAttention-2's decode (`flash_attn_with_kvcache`, a length per
sequence) sizes its splits by the longest sequence and each CTA walks its own sequence's share, so the long
request's few CTAs set the time. archsim's decode kernel, which takes one length for the batch, runs it padded to
the longest; eager PyTorch a ragged batch at the mean (its passes' bytes linear in the keys).
"""

from __future__ import annotations

import numpy as np
import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_workload_spec
from archsim.model.gpu import AttentionCase, TiledLaunch
from archsim.model.gpu_flash_plans import (
    _split_counts,
    _split_heuristic,
    balanced_chunks,
    split_decode_launches,
    uniform_splits,
)
from archsim.model.gpu_kernels import family_of, predict, predict_varlen, varlen_plans
from archsim.systems.models import system_model
from archsim.systems.system_model import device_of
from archsim.systems.system_spec import load_system

DECODE_KERNELS = ("FlashAttention-2", "Flash-Decoding", "Flash-Decoding (16-row tiles)", "FlashAttention v2.0.9",
                  "PyTorch eager attention", "archsim Flash-Decoding split-KV GQA (Triton)")


def _decode(batch: int, seqlen: int, heads: int = 8, kv_heads: int = 2) -> AttentionCase:
    return AttentionCase("decode", batch, heads, kv_heads, 128, seqlen, False, "fp16")


def _params(kernel: str):
    return load_calibration().family_params(family_of(kernel))


def _device_s(system: str, workload: str, contexts: list[int]) -> float:
    """The serving GPU device's time of one layer's decode attention over requests of `contexts`."""
    model = system_model(load_system(system), load_workload_spec(workload))
    ops = model.decode_ops(contexts)
    return device_of(model, ops[0]).cost(ops).time_s


def test_short_requests_beside_a_long_one_do_not_make_it_faster() -> None:
    alone = _device_s("vllm-h100", "llama3-8b", [32_000])
    mixed = _device_s("vllm-h100", "llama3-8b", [32_000] + [16] * 127)
    assert mixed >= alone


def test_a_skewed_batch_is_not_its_mean() -> None:
    """1 x 131,072 + 255 x 100 tokens (Llama-3-70B, vllm-h100): at least the long request alone, and not the time
    of 256 requests at the mean, 614 tokens, which it had matched (57.9 and 58.1 us): more, as the long request's
    CTAs walk its keys in a grid the short ones fill."""
    skewed = _device_s("vllm-h100", "llama3-70b", [131_072] + [100] * 255)
    alone = _device_s("vllm-h100", "llama3-70b", [131_072])
    mean = _device_s("vllm-h100", "llama3-70b", [614] * 256)
    assert skewed >= alone
    assert skewed > mean


@pytest.mark.parametrize("kernel", DECODE_KERNELS)
def test_equal_lengths_are_the_uniform_call_bit_for_bit(kernel: str) -> None:
    gpu = load_gpu("h100-sxm5")
    for batch, seqlen in ((1, 1000), (7, 2791), (64, 4096), (256, 613)):
        case = _decode(batch, seqlen, 8, 8) if "archsim" in kernel or "eager" in kernel else _decode(batch, seqlen)
        uniform = predict(kernel, case, gpu, _params(kernel))
        varlen = predict_varlen(kernel, case, [seqlen] * batch, gpu, _params(kernel))
        assert varlen.feasible and uniform.feasible
        assert varlen.time_s == uniform.time_s
        assert varlen.total("dram_bytes") == uniform.total("dram_bytes")
        assert varlen.flops == uniform.flops


def test_the_device_prices_an_equal_batch_as_the_uniform_call() -> None:
    """vllm-h100, Llama-3-8B at TP 4: 8 query and 2 KV heads a GPU, FlashAttention-2's split-KV decode."""
    gpu = load_gpu("h100-sxm5")
    for batch, seqlen in ((1, 32_000), (11, 2791), (128, 613)):
        expected = predict("FlashAttention-2", _decode(batch, seqlen), gpu, _params("FlashAttention-2")).time_s
        assert _device_s("vllm-h100", "llama3-8b", [seqlen] * batch) == expected


def test_split_kv_ctas_walk_their_own_sequences_share() -> None:
    """Hand count: two sequences of 1,024 and 130 keys, 2 KV heads (a group of 4 packed as rows), 128-key blocks,
    4 splits sized by the longest (8 blocks, 2 a split): the first sequence's CTAs walk 2, 2, 2, 2 blocks, the
    second's 2, 0, 0, 0 (its later splits exit at once); the grid is (split, batch x KV head). DRAM reads each
    sequence's own K and V: 2 x 2 x (1,024 + 130) x 128 x 2 B."""
    gpu = load_gpu("h100-sxm5")
    case = _decode(2, 1024)
    main = split_decode_launches(case, gpu, 64, 128, 4, 1, "sync", uniform_splits(lambda grid, blocks: 4), False,
                                 False, seqlens=(1024, 130))[0]
    assert isinstance(main, TiledLaunch)
    assert main.segments[0].counts.tolist() == [2, 2, 2, 2] * 2 + [2, 0, 0, 0] * 2
    own_kv = 2 * 2 * (1024 + 130) * 128 * 2
    partials = 4 * 2 * 8 * (128 + 1) * 4
    q_o = 2 * 2 * 8 * 128 * 2
    assert main.dram_bytes == own_kv + q_o + partials


def test_v209_ctas_walk_their_own_keys() -> None:
    """FlashAttention v2.0.9: a CTA per (sequence, query head), the sequences fastest, each walking its own key
    tiles; adding a short sequence to a long one costs no less than the long one alone."""
    gpu, kernel = load_gpu("h100-sxm5"), "FlashAttention v2.0.9"
    seqlens = [8192, 300, 1000]
    result = predict_varlen(kernel, _decode(3, 8192), seqlens, gpu, _params(kernel))
    plan = varlen_plans(kernel, _decode(3, 8192), seqlens, gpu)[0]
    counts = plan.launches[0].segments[0].counts
    per_sequence = counts[:3]
    assert len(counts) == 3 * 8 and (counts.reshape(8, 3) == per_sequence).all()
    assert per_sequence[0] > per_sequence[2] > per_sequence[1] > 0
    alone = predict(kernel, _decode(1, 8192), gpu, _params(kernel))
    assert result.time_s >= alone.time_s
    assert result.flops == sum(_decode(1, n).flops() for n in seqlens)


def test_archsims_decode_kernel_pads_to_the_longest() -> None:
    """archsim's decode kernel takes one K and V tensor of one length for the batch: the time is the padded call's,
    its memory check counts the padding, its FLOPs stay the requests' own."""
    gpu, kernel = load_gpu("h100-sxm5"), "archsim Flash-Decoding split-KV GQA (Triton)"
    case = _decode(4, 4096, 8, 8)
    seqlens = [4096, 100, 200, 300]
    result = predict_varlen(kernel, case, seqlens, gpu, _params(kernel))
    assert result.time_s == predict(kernel, case, gpu, _params(kernel)).time_s
    plan = varlen_plans(kernel, case, seqlens, gpu)[0]
    own = sum(_decode(1, n, 8, 8).operand_bytes() for n in seqlens)
    assert own + plan.held_bytes >= case.operand_bytes()
    assert result.flops == sum(_decode(1, n, 8, 8).flops() for n in seqlens)


def test_eager_runs_a_ragged_batch_at_its_mean() -> None:
    """Eager PyTorch's decode passes move bytes in proportion to the keys: a ragged batch costs its requests at
    their mean context rounded up (4,096 + 100 + 200 + 301 = 4,697 keys: 1,175 each), one call's launches."""
    gpu, kernel = load_gpu("h100-sxm5"), "PyTorch eager attention"
    seqlens = [4096, 100, 200, 301]
    result = predict_varlen(kernel, _decode(4, 4096, 8, 8), seqlens, gpu, _params(kernel))
    assert result.time_s == predict(kernel, _decode(4, 1175, 8, 8), gpu, _params(kernel)).time_s
    assert result.flops == sum(_decode(1, n, 8, 8).flops() for n in seqlens)


@pytest.mark.parametrize("seqlens", [[4096, 100], [4096, 100, 200, 0], [1000, 100, 200, 300], [4096.0, 1, 2, 3]])
def test_decode_lengths_must_be_the_batch_and_its_longest(seqlens) -> None:
    with pytest.raises(SpecError) as error:
        varlen_plans("FlashAttention-2", _decode(4, 4096), seqlens, load_gpu("h100-sxm5"))
    assert error.value.where == "seqlens"


def test_the_longest_sets_the_splits() -> None:
    """FA2's num_splits heuristic reads the key blocks of the longest sequence (num_n_blocks from max seqlen_k), and
    each CTA walks its own sequence's blocks of its split. 1 x 131,072 + 255 x 100 tokens, 2 KV heads a GPU: a grid
    of 512 (sequence, KV head) CTAs fills the 264 slots, one split, so the long request's two CTAs walk its 1,024
    blocks alone; with one split FA2's grid is (m_block, batch, head), so every request's CTA of the first KV head
    launches before the second's. Two requests of 131,072 and 100: splits by 1,024 blocks."""
    gpu, kernel = load_gpu("h100-sxm5"), "FlashAttention-2"
    slots = 2 * gpu.sm_count
    plan = varlen_plans(kernel, _decode(256, 131_072), [131_072] + [100] * 255, gpu)[0]
    counts = plan.launches[0].segments[0].counts
    assert plan.launches[0].name == "decode split-KV (1 splits)"
    assert counts[0] == counts[256] == 1024 and set(np.delete(counts, [0, 256]).tolist()) == {1}
    plan = varlen_plans(kernel, _decode(2, 131_072), [131_072, 100], gpu)[0]
    assert plan.launches[0].name == f"decode split-KV ({_split_heuristic(4, slots, 1024)} splits)"


def test_remembered_schedules_and_the_floor_change_nothing() -> None:
    """An uneven grid's schedule is remembered by what it reads, and not worked out where Graham's bound puts it
    under the launch's DRAM or L2 time: the same times with the memos emptied, and the launch's time is the longest
    of its full schedule and its other bounds."""
    from archsim.model import gpu as model

    gpu, kernel = load_gpu("h100-sxm5"), "FlashAttention-2"
    calls = [(_decode(3, 131_072), [131_072, 5000, 77]),
             (_decode(64, 4189), [4000 + 3 * i for i in range(64)])]
    first = [predict_varlen(kernel, case, seqlens, gpu, _params(kernel)).time_s for case, seqlens in calls]
    model._WALKED.clear()
    model._remembered_makespan_s.cache_clear()
    assert [predict_varlen(kernel, case, seqlens, gpu, _params(kernel)).time_s for case, seqlens in calls] == first
    bound_of = []
    for case, seqlens in calls:
        launch = varlen_plans(kernel, case, seqlens, gpu)[0].launches[0]
        params, k = _params(kernel), model.ctas_per_sm(launch, gpu)
        model._WALKED.clear()
        full = model.schedule_s(launch, gpu, params, k)
        bounds = (full, launch.dram_bytes / (gpu.dram_bytes_per_s * model.dram_efficiency(gpu)),
                  launch.l2_bytes / gpu.l2_bytes_per_s)
        timed = model.tiled_launch_time(launch, gpu, params)
        assert timed.time_s == max(bounds) + params["launch_s"]
        bound_of.append(timed.bound)
    assert bound_of == ["schedule", "dram"]  # the second's schedule is bounded under its DRAM time, not worked out


def test_flashinfers_plan_cuts_a_long_request_into_more_chunks() -> None:
    """FlashInfer's split plan by hand: 3 sequences of 8, 2 and 1 key blocks, 2 CTAs a sequence's split, 20 slots:
    the least chunk c with 2 x (ceil(8/c) + ceil(2/c) + ceil(1/c)) <= 20 is 2 (c = 1: 22 CTAs), so the sequences
    take 4, 1 and 1 chunks, every CTA walking at most 2 blocks, launched a KV head at a time; with 4 slots no chunk
    fits (even 8 blocks: 6 CTAs), so each sequence is one CTA a head, uncut."""
    blocks = np.array([8, 2, 1])
    splits, chunk, heads_outer = balanced_chunks(20, 1)(2, blocks)
    assert chunk == 2 and splits.tolist() == [4, 1, 1] and heads_outer  # FlashInfer's grid: (chunk, KV head)
    assert _split_counts(blocks, 2, splits, chunk, heads_outer).tolist() == [2, 2, 2, 2, 2, 1] * 2
    splits, chunk, _ = balanced_chunks(4, 1)(2, blocks)
    assert chunk == 8 and splits.tolist() == [1, 1, 1]
    splits, chunk, _ = balanced_chunks(1000, 3)(2, blocks)  # never a chunk under the least (FlashInfer's 128 tokens)
    assert chunk == 3 and splits.tolist() == [3, 1, 1]


def test_the_small_tile_decode_balances_a_skewed_batch_where_fa2_does_not() -> None:
    """A Lamina pool GPU's shapes (LLaMA3-70B over 4 H20s: 16 query, 2 KV heads), 1 x 65,536 + 63 x 2,048 tokens:
    FA2's heuristic sees 128 (sequence, KV head) CTAs filling 80 % of its 156 slots and takes one split, so the long
    request's two CTAs walk its 512 key blocks alone; FlashInfer's plan ("Flash-Decoding (16-row tiles)") cuts it
    into chunks the size of the short ones (the CTA fits 3 to an SM: 234 slots; 16-block chunks make 2 x (32 + 63)
    = 190 CTAs, 15-block ones 322), and the call is faster."""
    gpu = load_gpu("h20")
    case = _decode(64, 65_536, 16, 2)
    seqlens = [65_536] + [2048] * 63
    fa2 = varlen_plans("FlashAttention-2", case, seqlens, gpu)[0].launches[0]
    small = varlen_plans("Flash-Decoding (16-row tiles)", case, seqlens, gpu)[0].launches[0]
    assert fa2.name == "decode split-KV (1 splits)" and fa2.segments[0].counts.max() == 512
    counts = small.segments[0].counts
    assert counts.max() == 16 and counts.sum() == 2 * (512 + 63 * 16)  # every block walked once, 16 at most a CTA
    timed = {kernel: predict_varlen(kernel, case, seqlens, gpu, _params(kernel)).time_s
             for kernel in ("FlashAttention-2", "Flash-Decoding (16-row tiles)")}
    assert timed["Flash-Decoding (16-row tiles)"] < timed["FlashAttention-2"]


def test_a_skewed_batch_is_sized_by_the_keys_it_reads() -> None:
    """The size limit bounds the keys a call reads (batch x KV heads x keys): a batch of 4,200 requests, one of
    131,072 tokens and the rest 100, reads 2 x 551,072 keys of 2 KV heads, well within it, though padded to the
    longest it would be 1.1e9 (beyond it: archsim's padded kernel is refused so)."""
    gpu = load_gpu("h100-sxm5")
    case = _decode(4200, 131_072)
    seqlens = [131_072] + [100] * 4199
    found = varlen_plans("FlashAttention-2", case, seqlens, gpu)
    assert not isinstance(found, str) and found[0].launches[0].ctas >= 2 * 4200
    with pytest.raises(SpecError, match="beyond the limit"):
        varlen_plans("archsim Flash-Decoding split-KV GQA (Triton)", _decode(4200, 131_072, 8, 8), seqlens, gpu)
