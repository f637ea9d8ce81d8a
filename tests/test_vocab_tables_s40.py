"""A workload whose LM head is its input embedding (`params.vocab_tables: 1`) holds one vocab x hidden table, not
two: Llama-3.2-1B, OPT and GPT-3 tie them (s40: their weights had been counted one table high)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.kv_selection import weight_bytes
from archsim.systems.step import WEIGHTS, lm_head_op
from archsim.workload import workload_from_dict


def _with_tables(name: str, tables: int | None):
    workload = library.load_workload_spec(name)
    params = {k: v for k, v in workload.params.items() if k != "vocab_tables"}
    return replace(workload, params=params if tables is None else {**params, "vocab_tables": tables})


@pytest.mark.parametrize("name", ["llama3-1b", "opt-66b", "gpt3-7b"])
def test_a_tied_model_holds_one_vocab_table(name: str) -> None:
    table = lm_head_op(library.load_workload_spec(name), 1).bytes_by_role[WEIGHTS]
    assert library.load_workload_spec(name).params["vocab_tables"] == 1
    assert weight_bytes(_with_tables(name, None)) - weight_bytes(_with_tables(name, 1)) == table


def test_llama3_1b_counts_the_parameters_of_its_tied_model() -> None:
    """16 layers of (4 x 2048^2 attention + 3 x 2048 x 8192 FFN + 2 x 2048 norms), the final norm and one 128256 x
    2048 table: 1.34 B (the 1.60 B it had been counted one table high)."""
    layer = 4 * 2048**2 + 3 * 2048 * 8192 + 2 * 2048
    expected = 16 * layer + 2048 + 128256 * 2048
    counted = weight_bytes(library.load_workload_spec("llama3-1b")) / 2
    assert counted == pytest.approx(expected, rel=2e-3)  # the cascades may count a norm's weights otherwise


@pytest.mark.parametrize("tables", [0, 3, 1.5])
def test_vocab_tables_other_than_one_or_two_is_refused(tables: float) -> None:
    data = {"name": "t", "params": {"hidden": 64, "vocab": 100, "vocab_tables": tables}}
    with pytest.raises(SpecError, match="vocab_tables"):
        workload_from_dict(data, "t.yaml")
