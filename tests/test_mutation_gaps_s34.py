"""Values and refusals no earlier test pinned (a mutation audit changed each and every test still passed): the bank
PIM's bus bytes of a grouped-query model, its bus words and logits timing where head_dim does not divide the row
(the heads a row slice touches, `pim.heads_in_slice`), a vertical-slash pattern of the wrong rank, a non-int kernel
block, capacities of 80.25 GiB and 0.5 GB, and `divisor_at_least`'s values.
"""

from __future__ import annotations

import pytest
from test_linear_wide_array_s33 import _factor  # the factor concrete_factors gives an expression in a mapping

from archsim.outputs import capacity_text
from archsim.systems import pim as pim_model
from archsim.systems import pim_device
from archsim.systems.neupims import system
from archsim.systems.system_model import decode_groups

GIB = 2**30


def test_a_gqa_decode_moves_every_query_heads_vectors_over_the_bus() -> None:
    """NeuPIMs' preset (TP4) with Llama-3-70B (64 query heads, 8 KV heads, head_dim 128, FP16): 16 query heads and 2
    KV heads a device, so 8 passes of 2 KV heads = 16 heads' vectors a request. At context 600 a request moves
    q (16 x 128 words in), one partial logit per head per key (16 x 600 out: 128-word heads fill the 512-word row),
    the probabilities (16 x 600 in) and per head 128 outputs per 512-token row of V (16 x 128 x ceil(600/512) = 2
    rows out): 2048 + 9600 + 9600 + 4096 = 25,344 words = 50,688 B; four requests 202,752 B."""
    model = system("neupims", "llama3-70b")
    contexts = [600] * 4
    ops = model.decode_ops(contexts)
    pim = decode_groups(model, contexts, ops)[0][0]
    heads, head_dim, seq, words_per_row = 16, 128, 600, 512
    words = heads * head_dim + heads * seq + heads * seq + heads * head_dim * -(-seq // words_per_row)
    assert words == 25_344
    assert pim.bus_bytes(ops) == 4 * words * 2 == 202_752


def _pim(word_bytes: int = 2):
    """NeuPIMs' PIM spec timing words of `word_bytes` (FP16: 512 words a row, 16 MACs a COMP; FP32: 256 and 8)."""
    spec = system("neupims", "gpt3-7b").devices["pim"].spec
    return pim_model.at_word_bytes(spec, word_bytes)


@pytest.mark.parametrize(("start", "chunk", "head_dim", "heads"), [
    (0, 512, 128, 4), (512, 512, 128, 4), (0, 512, 100, 6), (3072, 128, 100, 2),
    (4096, 512, 100, 7),  # 4096..4607 covers heads 40 (from word 4000) to 46 (4600..4699): 7, ceil(512/100) 6
    (256, 256, 100, 4),  # 256..511: heads 2..5
    (0, 50, 100, 1), (150, 50, 100, 1), (199, 2, 100, 2),
])
def test_a_row_slice_touches_the_heads_it_overlaps(start: int, chunk: int, head_dim: int, heads: int) -> None:
    assert pim_model.heads_in_slice(start, chunk, head_dim) == heads


def test_bus_words_round_a_part_head_up_where_head_dim_does_not_divide_the_row() -> None:
    """32 heads of head_dim 100 (OpenLLaMA-3B's), FP16 (512-word rows), context 600: the 3200-word query in six
    512-word slices touching 6 heads each (offsets 0, 12, .., 60 into a head: 60 + 512 <= 600) and a 128-word one
    touching 2 (heads 30, 31), so 38 partial logits per key; then 32 heads x (600 probabilities + 100 outputs x 2
    rows of V): 3200 + 600 x 38 + 32 x 800 = 51,600 words (rounding each slice's heads down would give 31)."""
    assert pim_device.bus_words(_pim(), 600, 32, 100) == 3200 + 600 * 38 + 32 * 800 == 51_600


def test_timing_and_energy_count_the_heads_a_misaligned_slice_touches() -> None:
    """6 heads of head_dim 100 at FP32 words (256-word rows, 8 MACs a COMP, 4-byte results): slices 0..255 (heads
    0-2), 256..511 (heads 2-5: 4, where ceil(256/100) = 3) and 512..599 (head 5), 8 partial logits per key.
    Bus words at context 600: 600 + 600 x 8 + 6 x (600 + 100 x ceil(600/256) = 3) = 10,800.
    Newton commands of K^T.q: per slice a GWRITE and per 32-key tile (19 at 600) a G_ACT and per head 13 COMPs and a
    READRES: 3 + 19 x (3 + 14 x 8) = 2188.
    Logits cycles at 32 keys (one full tile a slice): 32 banks open as 8 G_ACTs tRRD_S 4 apart, two tFAW windows:
    the last at 30 + 3 x 4 = 42, COMPs from 42 + tRCD 14 at tCCD_L 2, then CL 14 and 32 banks x heads x 4 B over the
    32 B a cycle of a 128-bit DDR bus, tRP 14: slice 1 (32 COMPs, 3 heads) 42 + 14 + 64 + 14 + 12 + 14 = 160, slice 2
    (4 heads) 164, slice 3 (11 COMPs, 1 head) 42 + 14 + 22 + 14 + 4 + 14 = 110; with three 100-cycle GWRITEs 734,
    stretched by refresh 3900 / 3640."""
    pim = _pim(4)
    assert (pim.row_elements, pim.macs_per_bank) == (256, 8)
    assert pim_device.bus_words(pim, 600, 6, 100) == 10_800
    assert pim_model.newton_commands(pim, 600, 6, 100)[0] == 2188
    assert pim_model.logits_cycles(pim, 32, 6, 100) == pytest.approx(734 * 3900 / 3640, rel=1e-12)


def _kernels():
    """The Triton launch helpers and vertical-slash module, imported after triton_cpu has switched the interpreter on
    (tests/triton_cpu.py; the test is skipped without torch and triton)."""
    import triton_cpu
    from archsim.kernels import launch, vertical_slash
    return triton_cpu.torch, launch, vertical_slash


@pytest.mark.parametrize("shape", [(1, 2), (1, 2, 4, 1)])
def test_a_slash_not_of_three_dimensions_is_refused_naming_it(shape: tuple[int, ...]) -> None:
    torch, _, vertical_slash = _kernels()
    vertical, slash = torch.zeros(1, 2, 4, dtype=torch.int32), torch.zeros(shape, dtype=torch.int32)
    with pytest.raises(ValueError, match=rf"^slash must be an int32/int64 \[batch, heads, k\] = \[1, 2, k\] tensor, "
                                         rf"got torch.int32 \({', '.join(map(str, shape))}\)$"):
        vertical_slash.vertical_slash_index(vertical, slash, 32)


def test_a_block_that_is_no_int_is_refused_by_name() -> None:
    _, launch, _ = _kernels()
    with pytest.raises(ValueError, match=r"^block_m must be a power of two >= 16 .*got 32.0$"):
        launch.check_block("block_m", 32.0)


def test_capacities_show_hundredths_of_a_gib_and_tenths_of_a_gb() -> None:
    # 80.25 GiB = 86,167,781,376 B: a whole hundredth of a GiB; 0.5e9 B is no whole MiB (476.8), 512 MiB is one
    assert capacity_text(80.25 * GIB) == "86.2 GB (80.25 GiB)"
    assert capacity_text(0.5e9) == "0.5 GB"
    assert capacity_text(512 * 2**20) == "0.5 GB (512 MiB)"


def test_divisor_at_least_values() -> None:
    """The smallest divisor of n at least k, against the definition by trial division; n itself when k > n (768 =
    2^8 x 3, its divisors from 100 up 128, 192, 256, 384, 768; 97 is prime)."""
    for n, k, expected in ((768, 300, 384), (768, 385, 768), (768, 256, 256), (768, 1000, 768), (97, 2, 97),
                           (12, 5, 6), (12, 4.5, 6), (360, 7, 8), (1, 1, 1)):
        assert _factor(f"divisor_at_least({n}, {k})") == expected, (n, k)
    for n in range(1, 41):
        for k in range(1, 45):
            expected = min([d for d in range(1, n + 1) if n % d == 0 and d >= k], default=n)
            assert _factor(f"divisor_at_least({n}, {k})") == expected, (n, k)
