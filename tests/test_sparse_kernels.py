"""The block-sparse and vertical-slash Triton kernels against a float64 dense reference with the same mask, on the
CPU under the Triton interpreter (as tests/test_kernels.py; TRITON_INTERPRET=0 runs them compiled on a GPU).

The masks of the reference are built here by plain loops from the definitions in the kernels' docstrings (block
list: key block j visible to query block i when listed; vertical-slash: key m visible to query p of block i when m is
a vertical or lies in the 64-wide window [e - block, e), e = max(end_i - s, block), of a slash s < end_i), both
intersected with the causal mask m <= p; a row with no visible key is 0. Tolerances are test_kernels.py's softmax
ones: 1e-5 for fp32 inputs, 2e-3 for fp16 (fp16 output and probabilities rounded to fp16 before P·V).
"""

from __future__ import annotations

import pytest
from triton_cpu import DEVICE, DTYPES, INTERPRET, SOFTMAX_ATOL, torch

# isort: split
# the kernel modules after triton_cpu has switched the Triton interpreter on
from archsim.kernels import block_sparse, flash_fwd, vertical_slash

from archsim import library

SHAPES = ((256, 32, 64), (200, 16, 32))  # (seqlen, head_dim, block); 200 leaves a partial last block


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype=dtype, device=DEVICE) for _ in range(3)]


def _masked_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ/√d where keep & causal) v in float64, 0 for rows that keep no key."""
    seqlen = q.shape[-2]
    keep = keep & torch.ones(seqlen, seqlen, dtype=torch.bool).tril()
    scores = (q.double() @ k.double().transpose(-1, -2) / q.shape[-1] ** 0.5).cpu().masked_fill(~keep, float("-inf"))
    probs = torch.softmax(scores, -1).nan_to_num(0.0)  # an all -inf row gives NaN; it attends to nothing
    return probs @ v.double().cpu()


def _max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return (got.double().cpu() - want).abs().max().item()


def _block_mask(index: torch.Tensor, count: torch.Tensor, seqlen: int, block: int) -> torch.Tensor:
    batch, heads, num_blocks, _ = index.shape
    keep = torch.zeros(batch, heads, seqlen, seqlen, dtype=torch.bool)
    for b in range(batch):
        for h in range(heads):
            for i in range(num_blocks):
                for j in index[b, h, i, :count[b, h, i]].tolist():
                    keep[b, h, i * block:(i + 1) * block, j * block:(j + 1) * block] = True
    return keep


def _vertical_slash_mask(vertical: torch.Tensor, slash: torch.Tensor, seqlen: int, block: int) -> torch.Tensor:
    batch, heads, _ = vertical.shape
    keep = torch.zeros(batch, heads, seqlen, seqlen, dtype=torch.bool)
    for b in range(batch):
        for h in range(heads):
            keep[b, h][:, vertical[b, h].long().cpu()] = True
            for start in range(0, seqlen, block):
                end = start + block
                for s in slash[b, h].tolist():
                    if s < end:
                        e = max(end - s, block)
                        keep[b, h, start:end, e - block:e] = True
    return keep


def test_each_module_names_its_cascade() -> None:
    cascades = set(library.names("cascades"))
    for module in (block_sparse, vertical_slash):
        assert module.CASCADE in cascades and f"`{module.CASCADE}`" in module.__doc__, module.__name__


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seqlen, head_dim, block", SHAPES)
def test_block_sparse_matches_masked_reference(dtype, seqlen, head_dim, block) -> None:
    q, k, v = _inputs((2, 2, seqlen, head_dim), dtype, seed=11)
    index, count = block_sparse.random_block_list(2, 2, seqlen, topk=3, block=block, seed=3, device=DEVICE)
    count[0, 1, 1:3] = 0  # query blocks that list nothing: their rows are 0
    index[1, 0] = index[1, 0].flip(-1)  # a list out of order (the order of the online softmax does not matter)
    out = block_sparse.block_sparse_attention(q, k, v, index, count, block=block)
    want = _masked_reference(q, k, v, _block_mask(index.cpu(), count.cpu(), seqlen, block))
    assert out.dtype == dtype and out.shape == q.shape
    assert _max_error(out, want) <= SOFTMAX_ATOL[dtype]
    assert out[0, 1, block:3 * block].abs().max().item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_sparse_with_every_block_is_flash_attention(dtype) -> None:
    q, k, v = _inputs((1, 2, 192, 32), dtype, seed=12)
    index, count = block_sparse.random_block_list(1, 2, 192, topk=3, block=64, seed=0, device=DEVICE)
    assert count.tolist() == [[[1, 2, 3]] * 2]  # topk >= query block + 1: every causal block
    out = block_sparse.block_sparse_attention(q, k, v, index, count, block=64)
    want, _ = flash_fwd.flash_fwd(q, k, v, causal=True, block_m=64, block_n=64)
    assert _max_error(out, want.double().cpu()) <= SOFTMAX_ATOL[dtype]


def test_block_sparse_rejects_bad_lists() -> None:
    q, k, v = _inputs((1, 1, 128, 16), torch.float32, seed=13)
    count = torch.tensor([[[1, 2]]], dtype=torch.int32)
    for index, message in (([[[[1, 0], [0, 1]]]], "causal"), ([[[[0, 0], [1, 1]]]], "twice")):
        with pytest.raises(ValueError, match=message):
            block_sparse.block_sparse_attention(q, k, v, torch.tensor(index, dtype=torch.int32), count)
    with pytest.raises(ValueError, match="int32"):
        block_sparse.block_sparse_attention(q, k, v, torch.zeros(1, 1, 2, 2, dtype=torch.int64), count)


def test_vertical_slash_index_by_hand() -> None:
    # seqlen 256, blocks of 64, slashes {0, 1, 100}, verticals {5, 70, 200}. Windows [e - 64, e), e = max(end - s,
    # 64) for s < end: block 0 (end 64): s=0,1 -> [0,64); block 1 (end 128): s=100 -> [0,64), s=1 -> [63,127),
    # s=0 -> [64,128), one range [0,128); block 2 (end 192): [28,92) apart from [127,191) + [128,192) -> [127,192);
    # block 3: [92,156) and [191,256). Columns: verticals < end outside every range: block 2 gathers 5 (70 is in
    # [28,92)), block 3 gathers 5 and 70 (200 is in [191,256)).
    index = vertical_slash.vertical_slash_index(torch.tensor([[[200, 5, 70]]]), torch.tensor([[[1, 100, 0]]]), 256)
    ranges = [list(zip(s[:n], e[:n], strict=True)) for n, s, e in
              zip(index.range_count[0, 0].tolist(), index.range_start[0, 0].tolist(), index.range_end[0, 0].tolist(),
                  strict=True)]
    assert ranges == [[(0, 64)], [(0, 128)], [(28, 92), (127, 192)], [(92, 156), (191, 256)]]
    columns = [c[:n] for n, c in zip(index.column_count[0, 0].tolist(), index.column_index[0, 0].tolist(),
                                     strict=True)]
    assert columns == [[], [], [5], [5, 70]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seqlen, head_dim, block", SHAPES)
def test_vertical_slash_matches_masked_reference(dtype, seqlen, head_dim, block) -> None:
    q, k, v = _inputs((2, 2, seqlen, head_dim), dtype, seed=14)
    gen = torch.Generator().manual_seed(5)
    vertical = torch.randint(0, seqlen, (2, 2, 6), generator=gen)  # repeats allowed
    slash = torch.randint(0, seqlen, (2, 2, 4), generator=gen)
    # only the last query block sees a key: the slash s = seqlen - 1 misses every block ending at or before it and
    # covers [0, block) in the last one (e = max(end - s, block) = block); the vertical only row seqlen - 1
    vertical[1, 1], slash[1, 1] = seqlen - 1, seqlen - 1
    last_block_start = (seqlen - 1) // block * block
    out = vertical_slash.vertical_slash_attention(q, k, v, vertical.to(DEVICE), slash.to(DEVICE), block=block)
    keep = _vertical_slash_mask(vertical, slash, seqlen, block)
    assert out.dtype == dtype and out.shape == q.shape
    assert _max_error(out, _masked_reference(q, k, v, keep)) <= SOFTMAX_ATOL[dtype]
    assert out[1, 1, :last_block_start].abs().max().item() == 0.0
    # kernel granularity contains the token-level pattern "vertical[m] or slash[p - m]"
    p, m = torch.arange(seqlen)[:, None], torch.arange(seqlen)[None, :]
    exact = torch.isin(m, vertical[0, 0]) | torch.isin(p - m, slash[0, 0])
    assert bool((keep[0, 0] | ~exact | (m > p)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_vertical_slash_with_every_line_is_flash_attention(dtype) -> None:
    q, k, v = _inputs((1, 2, 192, 32), dtype, seed=15)
    want, _ = flash_fwd.flash_fwd(q, k, v, causal=True, block_m=64, block_n=64)
    every = torch.arange(192).expand(1, 2, 192).to(DEVICE)
    none = every[..., :0]
    for vertical, slash in ((none, every), (every, none)):
        out = vertical_slash.vertical_slash_attention(q, k, v, vertical, slash, block=64)
        assert _max_error(out, want.double().cpu()) <= SOFTMAX_ATOL[dtype]


def test_vertical_slash_pattern_and_bad_input() -> None:
    vertical, slash = vertical_slash.random_pattern(1, 2, 512, vertical_size=40, slash_size=120, seed=1)
    assert vertical.shape == (1, 2, 40) and slash.shape == (1, 2, 120)
    for index, forced in ((vertical, 30), (slash, 100)):  # MInference's forced columns and diagonals, no repeats
        assert index[0, 0, :forced].tolist() == list(range(forced))
        assert all(len(set(row.tolist())) == row.numel() for row in index[0])
    q, k, v = _inputs((1, 2, 128, 16), torch.float32, seed=16)
    with pytest.raises(ValueError, match=r"slash entries must lie in \[0, 128\)"):
        vertical_slash.vertical_slash_attention(q, k, v, vertical[..., :5] % 128, slash[..., :5] + 128)


def test_an_index_for_a_longer_sequence_reads_no_column_past_k_and_v() -> None:
    """An index built for 128 tokens has the block count of 100; its gathered column 110 lies past K and V of 100
    tokens. The kernel masks it (the causal mask would drop it anyway) rather than loading it: the inputs are the
    first 100 tokens of 128-token buffers whose last 28 are NaN, which a load past the end would carry into P·V."""
    q, k, v = (x.index_fill(2, torch.arange(100, 128, device=x.device), float("nan"))[:, :, :100]
               for x in _inputs((1, 1, 128, 16), torch.float32, seed=17))
    slash = torch.tensor([[[64]]], device=q.device)  # block 1's window is [0, 64): 110 is gathered
    longer = vertical_slash.vertical_slash_index(torch.tensor([[[5, 110]]], device=q.device), slash, 128)
    assert 110 in longer.column_index[0, 0, 1].tolist()
    out = vertical_slash.indexed_attention(q, k, v, longer)
    want = vertical_slash.vertical_slash_attention(q, k, v, torch.tensor([[[5]]], device=q.device), slash)
    assert _max_error(out, want.double().cpu()) == 0.0


def test_measure_times_them_at_the_minference_shapes(tmp_path) -> None:
    from click.testing import CliRunner

    from archsim.commands.benchmarks import SPARSE_KERNELS, benchmark_cases
    from archsim.commands.measure import measure

    # seqpar-sparse.md §3.1: LLaMA-3-8B (32 heads, d 128, bf16), vertical-slash (1000, 6096), block-sparse k_b = 100
    cases = benchmark_cases(SPARSE_KERNELS, max_seqlen=None, tiny=False)
    assert [(c.kernel, c.seqlen) for c in cases] == [(k, s) for k in SPARSE_KERNELS
                                                     for s in (16384, 32768, 65536, 131072)]
    assert {(c.batch, c.heads, c.head_dim, c.dtype, c.causal) for c in cases} == {(1, 32, 128, "bf16", True)}
    assert {(c.block_topk, c.vertical_size, c.slash_size) for c in cases} == {(100, None, None), (None, 1000, 6096)}
    if not INTERPRET:  # measure --interpret needs the kernel modules imported with the interpreter on (not so here)
        return
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(measure, ["--interpret", "--kernels", "block_sparse,vertical_slash",
                                          "--max-seqlen", "128", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(",latency," in line for line in lines[1:])  # no dense-FLOP throughput row
    assert "block_topk=2" in lines[1] and "vertical_size=128; slash_size=128" in lines[2]  # capped at 128 tokens
