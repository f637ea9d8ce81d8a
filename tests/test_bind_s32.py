"""Bind audit (s32): a rank set directly whose size's parameter something else reads (a mask, a density, a
`requires:`) is refused, as the count would read the parameter's old value; a data-dependent mask's density that
divides by zero or is negative is refused, naming `masks.NAME.density`; sizes in messages are written exactly
(`seq_len=1000001`, never `1e+06`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.cascade.analysis import analyze, einsum_points
from archsim.cascade.bind import bind, number_text
from archsim.errors import SpecError

LIBRARY = Path(__file__).resolve().parents[1]
TOKENSELECT = ("tokenselect-decode", "--workload", "llama3-8b", "--set", "k=2048", "--set", "local=512", "--set",
               "sinks=128")
DUO = ("duoattention-decode", "--workload", "llama3-8b", "--set", "sinks=128", "--set", "recent=256", "--set",
       "retrieval_fraction=0.5")


def _error(fn, *args, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    return info.value


def test_tokenselect_at_a_length_set_by_its_parameter_counts_the_kept_keys(cli_json) -> None:
    # SNV's points: batch 16 x kv_heads 8 x R 4 x head_dim 128 x seq_len 65536 x density (k + sinks + local) /
    # seq_len = 16 * 8 * 4 * 128 * (2048 + 128 + 512): the kept keys, whatever the length
    points = cli_json("analyze", *TOKENSELECT, "--set", "seq_len=65536")["points"]
    assert points["SNV"] == 16 * 8 * 4 * 128 * (2048 + 128 + 512) == 176160768


@pytest.mark.parametrize(("args", "readers"), [
    # VRL's and VRU's candidate masks, KD's and SNV's selected and density
    (TOKENSELECT, "einsum VRL, einsum VRU, einsum KD, einsum SNV"),
    (DUO, "einsum QK, einsum GM, einsum SN, einsum SD, einsum SNV"),  # the duo mask and its density
])
def test_a_rank_set_whose_parameter_a_mask_reads_is_refused(cli, args, readers) -> None:
    """`--set M=65536` left seq_len at the workload's 8192: tokenselect's density (k + sinks + local) / seq_len
    counted 16x the kept keys (SNV 2818572288 against 176160768), duoattention's QK 2348810240 against
    2160066560."""
    output = cli("analyze", *args, "--set", "M=65536", expect=2).output
    assert output.startswith(f"error: --set: M: M is sized by seq_len (ranks.M: seq_len), which {readers} also read: "
                             "M=65536 would leave them reading seq_len=4096 (from "), output
    assert output.rstrip().endswith("(from workload llama3-8b); set seq_len instead"), output
    cli("analyze", *args, "--set", "M=4096", "--set", "seq_len=4096")  # the size the parameter gives: no conflict


def test_a_rank_set_is_refused_in_python_too() -> None:
    cascade = library.load_cascade_spec("tokenselect-decode")
    error = _error(bind, cascade, None, {"M": 64}, source="<test>")
    # requires[0] (k + sinks + local <= M) reads the rank, as bound: not a reader of seq_len
    assert (error.source, error.where) == ("<test>", "M")
    assert "which einsum VRL, einsum VRU, einsum KD, einsum SNV also" in error.message


def test_quest_page_rank_set_is_refused_naming_the_density() -> None:
    # T: page, and the slot mask's density page / seq_len reads page: T=8 beside page 4 halved no count but J
    cascade = library.load_cascade_spec("quest-decode")
    error = _error(bind, cascade, None, {"T": 8}, source="--set")
    assert error.where == "T" and "which ranks.J, einsum KS, einsum VS also read: T=8 would leave them reading " \
        "page=4" in error.message and error.message.endswith("; set page instead")


@pytest.mark.parametrize(("cascade", "sets", "ranks"), [
    ("attention-1pass", {"M0": 8}, {"M": 16, "M0": 8, "M1": 2}),  # tile_kv: read by M0 alone
    ("attention-1pass", {"M": 32}, {"M": 32, "P": 16}),  # keys beside queries: P is a length of its own
    ("attention-1pass", {"P": 2, "M": 8, "M0": 4}, {"P": 2, "M": 8, "M1": 2}),  # the GPU tile model's binding
    ("quest-decode", {"S": 2}, {"S": 2, "J": 16}),  # budget_pages: read by S alone
])
def test_a_rank_set_whose_parameters_nothing_else_reads_binds(cascade, sets, ranks) -> None:
    sizes = bind(library.load_cascade_spec(cascade), None, sets).rank_sizes
    assert {rank: sizes[rank] for rank in ranks} == ranks


@pytest.mark.parametrize("mapping", sorted(path.name for path in (LIBRARY / "mappings").glob("*.yaml")))
def test_every_library_mapping_set_still_binds(mapping) -> None:
    spec = library.load_mapping_spec(LIBRARY / "mappings" / mapping)
    cascade = library.load_cascade_spec(spec.cascade)
    # a length every library tile divides (M0 256, block 64)
    binding = bind(cascade, None, {"seq_len": 4096}, fixed=(mapping, spec.sets))
    assert all(binding.rank_sizes.get(name, binding.params.get(name)) == value for name, value in spec.sets.items())


def _custom_tokenselect(tmp_path: Path, density: str) -> Path:
    data = yaml.safe_load((LIBRARY / "einsum" / "tokenselect-decode.yaml").read_text())
    data["masks"]["selected"]["density"] = density
    path = tmp_path / "ts-custom.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_density_dividing_by_zero_is_refused(cli, tmp_path) -> None:
    """(k + sinks) / local - 1 at local=0 was NaN, and min(1.0, nan) counted every point (SNV 3072)."""
    path = _custom_tokenselect(tmp_path, "(k + sinks) / local - 1")
    output = cli("analyze", str(path), "--set", "local=0", expect=2).output
    assert "ts-custom.yaml: masks.selected.density: (k + sinks) / local - 1 divides by zero at (k + sinks) / local" \
        in output and "local=0 from --set" in output, output


def test_a_negative_density_is_refused(cli, tmp_path) -> None:
    """(6 + 2) / 40 - 1 = -0.8 counted -2458 points of SNV."""
    path = _custom_tokenselect(tmp_path, "(k + sinks) / local - 1")
    output = cli("analyze", str(path), "--set", "local=40", expect=2).output
    assert ("masks.selected.density: expected a finite share of points of at least 0, got -0.8 ((k + sinks) / local - "
            "1) with k=6, sinks=2, local=40 (local=40 from --set)") in output, output
    cli("analyze", str(path), "--set", "local=4")  # (6 + 2) / 4 - 1 = 1: every point, as before


def test_a_library_density_above_one_is_still_every_point() -> None:
    # duoattention's streaming heads keep sinks + recent = 80 keys of 48: a density of 0.5 + 0.5 * 80 / 48 > 1,
    # clamped to the space (every key kept), as kv_selection's DuoAttention memory reads it
    cascade = library.load_cascade_spec("duoattention-decode")
    binding = bind(cascade, None, {"sinks": 40, "recent": 40})
    scores = cascade.einsum("QK")
    assert einsum_points(binding, scores) == 2 * 4 * 48 * 8  # batch x heads x seq_len x head_dim
    assert analyze(binding).points["QK"] == 2 * 4 * 48 * 8


@pytest.mark.parametrize(("value", "text"), [(1000001, "1000001"), (1000001.0, "1000001"), (0.5, "0.5"),
                                             (1000000.5, "1000000.5"), (2**60, str(2**60)), (float("nan"), "nan")])
def test_number_text_writes_whole_values_exactly(value, text) -> None:
    assert number_text(value) == text


def test_messages_write_sizes_exactly(cli) -> None:
    """seq_len=1000001 was shown as seq_len=1e+06, and M0=1000000.5 as 1e+06."""
    output = cli("analyze", "attention-1pass", "-w", "bert-base", "--set", "M0=256", "--set", "seq_len=1000001",
                 expect=2).output
    assert "(seq_len=1000001 from --set, M0=256 from --set)" in output, output
    output = cli("analyze", "attention-1pass", "-w", "bert-base", "--set", "M0=1000000.5", expect=2).output
    assert "M0: expected a positive integer size, got 1000000.5" in output, output
