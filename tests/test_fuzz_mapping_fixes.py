"""Mapping fixes found by fuzzing: FLAT's row blocks at every whole number of 256-token tiles, advice for a factor
rule that reads its own rank's size, `archsim check` resolving a mapping's names as `run` does, the footprint's
meaning under a spill, and the wording of the sweep executor line and of a GQA head split that does not divide.

Expected numbers are derived in each test from the shipped specs: `mappings/flat.yaml` (256 x 256 tiles, row blocks
from P * M * word_bytes / capacity(GlobalBuffer) rounded up, at most 1,024 rows a block), the FLAT preset's 32 MiB
global buffer (archsim/arch/presets/flat.yaml), BERT-base's 2-byte words and Llama-3-8B's 32 heads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.dask_run import choose_executor
from archsim.errors import SpecError
from archsim.point import prepare, run_point

MIB = 2**20
WORD_BYTES = 2  # BERT-base


def flat_arch(capacity_mib: int):
    return library.load_architecture_spec("flat").with_changes(
        **{"memories.GlobalBuffer.capacity_bytes": capacity_mib * MIB})


def capacity_blocks(n: int, capacity_bytes: int) -> int:
    """FLAT's block count from the buffer (docs/fusemax-artifact-model.md section 4): 1 while a head's n x n scores
    fit, else at least n / capacity-rows (rounded up: a block that fills the buffer at most) and at least n / 1024 (a
    block of at most 1,024 rows)."""
    count = -(-n * n * WORD_BYTES // capacity_bytes)
    return max(1, count, min(count - 1, 1) * n // 1024)


def row_blocks(point) -> int:
    (loop,) = [lp for lp in point.mapping.groups[0].loops if lp.rank == "P" and lp.level == "DRAM"]
    return loop.factor


@pytest.mark.parametrize(("seq_len", "blocks"), [
    (20480, 40),  # 25 blocks from the buffer (20480^2 * 2 // 32 MiB); the smallest divisor of 80 tiles >= 25: 40
    (19200, 25),  # 21 from the buffer; of 75 tiles: 25
    (25600, 50),  # 39; of 100 tiles: 50
    (24576, 48),  # 36; of 96 tiles: 48
    (40960, 160),  # 100; of 160 tiles: 160 (the 256-row floor)
    (49152, 192),  # 144; of 192 tiles: 192
])
def test_flat_runs_lengths_its_old_rule_refused(seq_len: int, blocks: int) -> None:
    """`min(P // 256, 25)` at 20480 tokens gave 25 blocks, which the 80 query tiles do not divide: exit 2, suggesting
    19200 and 25600, which failed the same way. The rule now takes the smallest divisor of the tiles at least the
    buffer's count."""
    point = prepare("flat", workload="bert-base", sets={"seq_len": seq_len})
    assert row_blocks(point) == blocks
    assert run_point("flat", workload="bert-base", sets={"seq_len": seq_len}).feasible


@pytest.mark.parametrize("capacity_mib", [12, 16, 32])
def test_flat_runs_every_whole_number_of_tiles(capacity_mib: int) -> None:
    """Every length of 1 to 256 whole tiles (256 to 65536 tokens) runs on FLAT with a 12, 16 or 32 MiB buffer (at 12
    MiB the old rule refused even 8192 and 16384), with the block count the rule states: the smallest divisor of the
    tiles at least the buffer's count, recomputed here from the spec's numbers."""
    arch = flat_arch(capacity_mib)
    for tiles in range(1, 257):
        n = 256 * tiles
        wanted = capacity_blocks(n, capacity_mib * MIB)
        expected = min([d for d in range(1, tiles + 1) if tiles % d == 0 and d >= wanted], default=tiles)
        assert row_blocks(prepare("flat", arch=arch, workload="bert-base", sets={"seq_len": n})) == expected, n


def test_flat_blocks_on_power_of_two_lengths_are_the_buffers_count() -> None:
    """On the FuseMax reproduction's lengths (powers of two from 1K) the divisor is the buffer's count itself: 1
    block to 4K (a head's 4096^2 x 2 B = 32 MiB fit), then n^2 x 2 / 32 MiB blocks, at least n / 1024: 8 at 8K
    (1,024 rows), 16 at 16K, 64 at 32K (512 rows), 256 at 64K (256 rows, the tiles themselves)."""
    for n, blocks in ((1024, 1), (2048, 1), (4096, 1), (8192, 8), (16384, 16), (32768, 64), (65536, 256)):
        point = prepare("flat", workload="bert-base", sets={"seq_len": n})
        assert row_blocks(point) == capacity_blocks(n, 32 * MIB) == blocks


def _old_flat(tmp_path: Path) -> str:
    """flat.yaml with its former rule, min(P // 256, ...): a rule of P's own size that need not divide the tiles."""
    data = yaml.safe_load(library.find("mappings", "flat").read_text())
    rule = data["groups"][0]["loops"][0]["ranks"]["P"]
    assert rule.startswith("divisor_at_least(P // fanout(array2d, 0), ")
    data["groups"][0]["loops"][0]["ranks"]["P"] = "min" + rule[len("divisor_at_least"):]
    data["cascade"] = str(library.find("cascades", "attention-3pass"))
    path = tmp_path / "flat-old.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def _old_rule_tiles(n: int) -> bool:
    """Whether the former rule tiles n tokens: whole 256-row tiles, and its block count divides them."""
    return n % 256 == 0 and (n // 256) % min(n // 256, capacity_blocks(n, 32 * MIB)) == 0


def test_a_rule_of_the_ranks_own_size_is_named_and_its_advice_tiles(tmp_path: Path) -> None:
    """The advice was the multiples of 25 x 256 (19200 and 25600), at which the rule gives 21 and 39 blocks and
    fails again. Now it says which rule fails and why, and gives the nearest lengths at which the rule, evaluated
    there, tiles: found here by the rule's closed form over every multiple of 256."""
    below = next(n for n in range(20480 - 256, 0, -256) if _old_rule_tiles(n))
    above = next(n for n in range(20480 + 256, 2**24, 256) if _old_rule_tiles(n))
    assert (below, above) == (16384, 21504)  # 64 tiles in 16 blocks; 84 tiles in 28 blocks
    with pytest.raises(SpecError) as error:
        run_point(_old_flat(tmp_path), workload="bert-base", sets={"seq_len": 20480})
    message = error.value.message
    assert message.startswith("rank P: size 20480 is not a multiple of the other factors (6400: "
                              "groups[0].loops[0].ranks.P = 25 x 256 spatial): the rule of groups[0].loops[0].ranks.P")
    assert "its 25 does not divide the 80 the other factors leave (20480 / 256)" in message
    assert message.endswith(f"the nearest sizes of P that tile are {below} and {above} (to model a padded sequence, "
                            "give one of them)")
    assert "19200" not in message and "25600" not in message


def test_a_length_off_the_tiles_is_advised_by_the_tiles_where_the_rule_divides_them(tmp_path: Path) -> None:
    """At 20000 tokens (not whole 256-key tiles) the multiples of 256 are the advice where the rule tiles them (the
    library's rule, at 19968 and 20224), and the rule's own nearest lengths where it does not (the former rule)."""
    with pytest.raises(SpecError, match=r"rank M: size 20000 is not a multiple of the other factors \(256\); the "
                                        r"nearest multiples are 19968 and 20224"):
        run_point("flat", workload="bert-base", sets={"seq_len": 20000})
    assert not _old_rule_tiles(19968) and not _old_rule_tiles(20224)
    with pytest.raises(SpecError, match=r"nearest sizes of M that tile are 16384 and 21504"):
        run_point(_old_flat(tmp_path), workload="bert-base", sets={"seq_len": 20000})


def _fusemax_changed(tmp_path: Path, old: str, new: str) -> str:
    text = library.find("mappings", "fusemax").read_text()
    assert text.count(old) == 1
    path = tmp_path / "changed.yaml"
    path.write_text(text.replace(old, new))
    return str(path)


@pytest.mark.parametrize(("old", "new", "says"), [
    ("array1d: [RM", "array3d: [RM", "groups[0].binding.RM: unknown unit 'array3d' (units of fusemax: array2d, "
                                     "array1d)"),
    ("{spatial: array2d, ranks: {P: M0", "{spatial: array9d, ranks: {P: M0",
     "groups[0].loops[2].spatial: unknown unit 'array9d' (units of fusemax: array2d, array1d)"),
    ("keep: {GlobalBuffer:", "keep: {GlobalBuf:", "groups[0].keep.GlobalBuf: unknown level (levels: DRAM, "
                                                  "GlobalBuffer, RF, RF1D)"),
])
def test_check_resolves_a_mappings_names_as_run_does(cli, tmp_path: Path, old: str, new: str, says: str) -> None:
    """`archsim check` said `ok` for these three (fuzz files bm1, bm5, bm6), which `run` refuses: check now resolves
    the names against the cascade and architecture the mapping names, and says what run says."""
    path = _fusemax_changed(tmp_path, old, new)
    checked = cli("check", path, expect=2).output
    ran = cli("run", "--mapping", path, "--workload", "bert-base", "--set", "seq_len=1024", expect=2).output
    assert checked == ran == f"error: {path}: {says}\n"


def test_check_passes_every_library_mapping_and_the_named_files_errors(cli, tmp_path: Path) -> None:
    """A valid mapping is not refused (every library mapping, whose factor expressions read capacity(GlobalBuffer),
    P, M and word_bytes); a cascade the mapping names that does not exist is named at its `cascade:` field."""
    paths = sorted(str(p) for p in library.find("mappings", "fusemax").parent.glob("*.yaml"))
    out = cli("check", *paths).output
    assert out.count("ok  ") == len(paths) >= 13
    path = _fusemax_changed(tmp_path, "cascade: attention-1pass\n", "cascade: attention-9pass\n")
    assert cli("check", path, expect=2).output.startswith(f"error: {path}: cascade: 'attention-9pass': not a "
                                                          "cascade in the library")


def test_check_refuses_an_unknown_name_in_a_factor_expression(cli, tmp_path: Path) -> None:
    """A factor expression's level is resolved too (capacity(GlobalBuf)), as `run` resolves it."""
    text = library.find("mappings", "flat").read_text().replace("capacity(GlobalBuffer)", "capacity(GlobalBuf)")
    text = text.replace("cascade: attention-3pass", f"cascade: {library.find('cascades', 'attention-3pass')}")
    path = tmp_path / "flat-buf.yaml"
    path.write_text(text)
    says = "groups[0].loops[0].ranks.P: unknown level 'GlobalBuf' (levels: DRAM, GlobalBuffer, RF, RF1D)"
    assert cli("check", str(path), expect=2).output == f"error: {path}: {says}\n"
    assert says in cli("run", "-m", str(path), "-w", "bert-base", "--set", "seq_len=4096", expect=2).output


def test_the_footprint_is_what_the_mapping_keeps_before_the_spill() -> None:
    """FLAT at 4K keeps a whole head's scores, 4096 x 4096 x 2 B = 32 MiB, plus two 256 x 256 x 2 B tiles handed
    between the arrays: 33,816,576 B, 262,144 B over the 32 MiB buffer. The point is feasible because QK spills;
    `footprint_bytes` reports the bytes kept before the spill (archsim/model/analytical.py says so), and the bytes
    on chip are the capacity."""
    result = run_point("flat", workload="bert-base", sets={"seq_len": 4096})
    capacity = library.load_architecture_spec("flat").memory("GlobalBuffer").capacity_bytes
    assert result.feasible and capacity == 32 * MIB
    assert result.footprint_bytes["GlobalBuffer"] == 4096 * 4096 * 2 + 2 * 256 * 256 * 2 == capacity + 262144


@pytest.mark.parametrize(("point_s", "points", "cores", "says"), [
    (0.000606, 8224, 2, "~4.984 s of work (8224 points x 0.606 ms, timed here) is under 5 s"),  # 8224 x 0.606 ms
    (0.0006, 8224, 2, "~4.9 s of work (8224 points x 0.6 ms, timed here) is under 5 s"),  # 4.934 s
    (0.000609, 8224, 4, "~5.01 s of work (8224 points x 0.61 ms, timed here) reaches 5 s"),  # 5.008 s
    (0.0056, 120, 2, "~0.7 s of work (120 points x 5.6 ms, timed here) is under 5 s"),  # the README's demo line
])
def test_the_executor_line_shows_the_comparison_it_made(point_s: float, points: int, cores: int, says: str) -> None:
    """`~5.0 s of work (8224 points x 0.6 ms) is under 5 s`: the work (4.98 s) was rounded across the threshold.
    Now as few decimals as keep the work, and points x the time shown, on the side the choice took."""
    assert choose_executor(point_s, points, cores, have_dask=True)[1] == says


def test_kv_heads_that_do_not_divide_heads_are_the_workloads_not_a_padded_sequence() -> None:
    """Llama-3-8B has 32 heads; kv_heads=3 left G=3 not dividing H=32, and the advice was to model a padded
    sequence with 30 or 33 heads. The nearest divisors of 32 around 3 are 2 and 4."""
    with pytest.raises(SpecError) as error:
        run_point("fusemax-gqa", workload="llama3-8b", sets={"kv_heads": 3})
    assert error.value.where == "partition.H"
    assert error.value.message.endswith("a workload's kv_heads must divide its heads (the model's own split, nothing "
                                        "to pad): the divisors of 32 nearest 3 are 2 and 4")
    assert "padded" not in error.value.message


def test_a_rule_without_a_residual_is_advised_by_the_sizes_it_tiles(tmp_path: Path) -> None:
    """FLAT's row blocks with no residual P loop: blocks x 256 must be P itself, so only lengths whose block count is
    all their tiles run. At 4096 tokens (1 block) the nearest are 256 (1 tile) and 4352 (17 tiles, a prime: 4352^2 x
    2 / 32 MiB = 1.13, over the buffer, so 4352 // 1024 = 4 blocks wanted, the smallest divisor of 17 at least 4 is
    17). No "does not
    divide" is said: 1 divides the 16 tiles; the missing residual is what fails."""
    data = yaml.safe_load(library.find("mappings", "flat").read_text())
    data["groups"][0]["loops"][1]["ranks"].pop("P")
    data["cascade"] = str(library.find("cascades", "attention-3pass"))
    path = tmp_path / "flat-no-residual.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(SpecError) as error:
        run_point(str(path), workload="bert-base", sets={"seq_len": 4096})
    assert error.value.message.startswith("rank P: factors on unit array2d multiply to 256, expected the rank size "
                                          "4096; the rule of groups[0].loops[0].ranks.P")
    assert error.value.message.endswith("the nearest sizes of P that tile are 256 and 4352 (to model a padded "
                                        "sequence, give one of them)")
    assert run_point(str(path), workload="bert-base", sets={"seq_len": 4352}).feasible


@pytest.mark.parametrize(("seq_len", "smaller_mib", "larger_mib"), [(5120, 24, 28), (4096, 16, 20), (6144, 32, 48)])
def test_flat_with_a_larger_buffer_moves_no_more(seq_len: int, smaller_mib: int, larger_mib: int) -> None:
    """A head 1-2x the buffer (5120^2 x 2 B = 50 MiB against 28 MiB) took the floor of the ratio, one block: the
    whole head kept in place, 24 MB of it spilling, 5x the DRAM traffic of the 24 MiB buffer's 1,024-row blocks
    (helper-135's audit). Rounded up, the block fills the buffer at most, and a larger buffer moves no more."""
    def traffic(capacity_mib: int) -> float:
        return run_point("flat", workload="bert-base", sets={"seq_len": seq_len},
                         arch=flat_arch(capacity_mib)).dram_traffic_bytes

    assert traffic(larger_mib) <= traffic(smaller_mib)
    larger = prepare("flat", workload="bert-base", sets={"seq_len": seq_len}, arch=flat_arch(larger_mib))
    assert row_blocks(larger) >= capacity_blocks(seq_len, larger_mib * MIB) > 1
