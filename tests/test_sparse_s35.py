"""Session 35's sparse fixes: DuoAttention's (and RazorAttention's) retrieval fraction is whole KV heads, so the
heads a run keeps are printed beside the fraction asked, and a fraction that rounds to none or to all of them
(silently another method) is refused; and `archsim run`'s advice when a grouped-query mapping is given a
multi-head cascade names what is missing.

Llama-3-8B has 32 layers x 8 KV heads = 256 KV heads (workloads/llama3-8b.yaml): a fraction r keeps round(256 r)
of them whole."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.dse.sparse_spec import load_sparse_targets, sparse_record
from archsim.errors import SpecError
from archsim.systems import kv_selection

DUO = ["sparse", "--method", "duoattention", "--gpu", "h100-sxm5", "-w", "llama3-8b", "--context", "128K"]
LLAMA3_KV_HEADS = 32 * 8


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(("fraction", "rounds_to"), [
    ("0.0019", "0 of"),  # 0.0019 x 256 = 0.49 -> 0: no retrieval head, as 0
    ("0.999", "256 of"),  # 0.999 x 256 = 255.7 -> 256: every head, dense, as 1
])
def test_a_fraction_that_rounds_to_no_head_or_every_head_exits_2_naming_the_option(fraction, rounds_to) -> None:
    code, output = invoke(*DUO, "--retrieval-fraction", fraction, "--json")
    assert code == 2, output
    assert "--retrieval-fraction" in output and rounds_to in output and "256 KV heads" in output


@pytest.mark.parametrize("fraction", [0.0019, 0.999])
def test_the_model_refuses_them_too(fraction) -> None:
    """The refusal is the model's (`kv_selection.retrieval_heads`), so a sweep or a Python caller gets it too."""
    with pytest.raises(SpecError) as info:
        kv_selection.retrieval_heads_per_layer(library.load_workload_spec("llama3-8b"), fraction)
    assert info.value.where == "retrieval_fraction"


@pytest.mark.parametrize(("fraction", "heads"), [("0", 0), ("1", 256), ("0.002", 1), ("0.998", 255)])
def test_the_ends_and_the_first_whole_head_still_run(fraction, heads) -> None:
    """0 and 1 are the method's ends as asked; 0.002 x 256 = 0.512 -> 1 head, 0.998 x 256 = 255.5 -> 255 (Python
    rounds half to even)."""
    code, output = invoke(*DUO, "--retrieval-fraction", fraction, "--json")
    assert code == 0, output
    assert {p["retrieval_heads"] for p in json.loads(output)["points"]} == {heads}


def test_the_json_shows_the_heads_kept_beside_the_fraction_asked() -> None:
    """0.3 x 256 = 76.8 -> 77 heads, 77 / 256 = 0.30078125 of them; DuoAttention's prefill point and
    RazorAttention's points (0.16 x 256 = 40.96 -> 41) too."""
    code, output = invoke(*DUO, "--retrieval-fraction", "0.3", "--prefill", "--json")
    assert code == 0, output
    points = json.loads(output)["points"]
    assert {p["phase"] for p in points} == {"attention", "decode", "prefill"}
    for p in points:
        assert (p["retrieval_fraction"], p["retrieval_heads"], p["retrieval_fraction_used"]) == (0.3, 77, 77 / 256)
    code, output = invoke("sparse", "--method", "razorattention", "--gpu", "h100-sxm5", "-w", "llama3-8b",
                          "--context", "128K", "--retrieval-fraction", "0.16", "--json")
    assert code == 0, output
    assert {(p["retrieval_heads"], p["retrieval_fraction_used"]) for p in json.loads(output)["points"]} == {
        (41, 41 / 256)}


def test_the_text_names_the_heads_kept() -> None:
    code, output = invoke(*DUO, "--retrieval-fraction", "0.3", "--prefill")
    assert code == 0, output
    lines = output.splitlines()
    column = lines[0].split().index("heads")
    assert [line.split()[column] for line in lines[1:3]] == ["77", "77"]  # the attention and decode rows
    # 77 / 256 = 0.30078125, printed to 4 digits, in the prefill table's heading
    assert "77 KV heads kept whole as retrieval heads (0.3008 of the model's; 0.3 asked)" in lines[4]


def test_the_system_rows_show_them_too() -> None:
    """Lamina's memory pool row for Llama-3-70B (80 layers x 8 KV heads = 640): 0.5 -> 320 heads."""
    code, output = invoke("sparse", "--method", "duoattention", "--gpu", "h100-sxm5", "-w", "llama3-70b",
                          "--context", "32K", "--retrieval-fraction", "0.5", "--system", "lamina", "--json")
    assert code == 0, output
    (row,) = json.loads(output)["system_points"]
    assert (row["retrieval_heads"], row["retrieval_fraction_used"]) == (320, 0.5)
    code, output = invoke("sparse", "--method", "duoattention", "--gpu", "h100-sxm5", "-w", "llama3-70b",
                          "--context", "32K", "--retrieval-fraction", "0.5", "--system", "lamina")
    assert "320 KV heads kept whole as retrieval heads (0.5 of the model's; 0.5 asked)" in output


def test_a_sweeps_record_carries_the_heads_and_names_its_field_when_refused() -> None:
    """A `sparse:` sweep's record has the heads among its extras; a fraction that rounds to no head is the sweep's
    `sparse.retrieval_fraction` (recorded infeasible by the sweep, not a silent dense-free run)."""
    block = {"method": "duoattention", "gpu": "h100-sxm5", "workload": "llama3-8b", "context": 131072}
    targets = load_sparse_targets(block, {"sparse.retrieval_fraction": [0.3, 0.0019]}, "<test>")
    record = sparse_record(targets, {"sparse.retrieval_fraction": 0.3}, "<test>")
    assert (record.extras["retrieval_heads"], record.extras["retrieval_fraction_used"]) == (77, 77 / 256)
    with pytest.raises(SpecError) as info:
        sparse_record(targets, {"sparse.retrieval_fraction": 0.0019}, "<test>")
    assert (info.value.source, info.value.where) == ("<test>", "sparse.retrieval_fraction")


def test_a_grouped_query_mapping_given_a_multi_head_cascade_asks_for_the_cascades_grouped_version() -> None:
    """fusemax-gqa is already grouped-query (its cascade attention-1pass-causal-gqa has kv_heads): what is missing is
    a grouped-query quest-decode, which the library has not; not "use ... its mapping (e.g. --mapping
    fusemax-gqa)", the mapping given."""
    code, output = invoke("run", "-m", "fusemax-gqa", "--cascade", "quest-decode", "-w", "llama3-8b", "--set",
                          "seq_len=4096")
    assert code == 2, output
    assert "--mapping fusemax-gqa)" not in output
    assert "mapping fusemax-gqa is grouped-query" in output
    assert "no grouped-query version of quest-decode" in output


def test_a_grouped_query_mapping_names_the_librarys_grouped_version_where_there_is_one() -> None:
    """attention-1pass has attention-1pass-gqa in the library: the advice names it."""
    code, output = invoke("run", "-m", "fusemax-gqa", "--cascade", "attention-1pass", "-w", "llama3-8b", "--set",
                          "seq_len=4096")
    assert code == 2, output
    assert "--cascade attention-1pass-gqa" in output and "--mapping fusemax-gqa)" not in output


def test_a_multi_head_mapping_still_suggests_a_grouped_query_mapping() -> None:
    code, output = invoke("run", "-m", "fusemax", "-w", "llama3-8b", "--set", "seq_len=4096")
    assert code == 2, output
    assert "use a grouped-query cascade and its mapping (e.g. --mapping fusemax-gqa)" in output
