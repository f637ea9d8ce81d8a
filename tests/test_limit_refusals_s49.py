"""A resource-limit refusal is a `LimitError` (archsim/errors.py), and a model that catches a SpecError to try
something else does not swallow one: the outcome it decides advises raising the limit, so a sweep's store
(`limits.advises_limit`) recomputes it under other limits instead of reusing it.

The cases: FuseMax's GQA mapping tiles 256 keys, so a 300-token prompt's attention runs padded to 512 on an
architecture device (`architecture_device._padded_point`); under ARCHSIM_MAX_SIZE=300 the padded point is beyond
the size limit, and raising it lets the prompt run. FuseMax's FLAT config tries several candidate mappings
(`fusemax.attention_result`); under a size limit below the sequence length each is refused by the limit.
"""

from __future__ import annotations

import pytest
import yaml

from archsim import library
from archsim.errors import LimitError, SpecError
from archsim.limits import advises_limit
from archsim.systems import fusemax
from archsim.systems.devices import device_models
from archsim.systems.step import Step, layer_op
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import OP_KINDS
from archsim.workload import check_size

PROMPT_TOKENS = 300  # not a multiple of FuseMax's M0 = 256: runs padded to 512


@pytest.fixture
def system_path(tmp_path) -> str:
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump({
        "name": "test", "source": "a test",
        "devices": {"npu": {"kind": "npu", "count": 4}, "hbm": {"kind": "bank-pim", "count": 4, "row_buffers": 2},
                    "fx": {"kind": "architecture", "count": 1, "preset": "fusemax", "mapping": "fusemax-gqa"}},
        "parallelism": {"tp": 4, "pp": 1},
        "placement": [{"op": "attention", "phase": "prefill", "device": "fx"},
                      {"op": list(OP_KINDS), "device": "npu"}],
        "schedule": {"kind": "blocked"}}))
    return str(path)


def _prompt_attention():
    llama = library.load_workload_spec("llama3-8b")
    return layer_op(llama, Step("prefill", 1, PROMPT_TOKENS), "llama", "attention")


def test_a_size_beyond_the_limit_is_a_limit_error_with_the_same_message(monkeypatch) -> None:
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "100")
    with pytest.raises(LimitError) as error:
        check_size("seq_len", 101, "w.yaml", "params.seq_len")
    assert str(error.value) == ("w.yaml: params.seq_len: 101 is beyond the limit of 100 on sizes (raise it with the "
                                "environment variable ARCHSIM_MAX_SIZE)")
    with pytest.raises(SpecError) as error:
        check_size("seq_len", 0.5, "w.yaml", "params.seq_len")  # not a limit: no LimitError
    assert not isinstance(error.value, LimitError)


def test_a_padded_prompt_refused_by_a_limit_is_refused_with_the_limits_advice(system_path, monkeypatch) -> None:
    """The unpadded 300 does not tile; the padded 512 is beyond ARCHSIM_MAX_SIZE=300: the limit decides the op, so
    the refusal is a LimitError and its reason (what a sweep's record stores) advises raising the limit."""
    op = _prompt_attention()
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(PROMPT_TOKENS))
    fx = device_models(load_system(system_path))["fx"]
    with pytest.raises(LimitError) as error:
        fx.cost([op])
    assert error.value.where == "devices.fx.mapping"
    assert advises_limit({"reason": error.value.reason})
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "512")  # raised, the padded prompt runs
    assert device_models(load_system(system_path))["fx"].cost([op]).time_s > 0


def test_an_op_padding_does_not_help_is_no_limit_refusal(system_path, monkeypatch) -> None:
    """Where no limit decides, the refusal stays as it was: a SpecError without advice (a qkv op, never padded, on
    the attention mapping is refused whatever the limits)."""
    llama = library.load_workload_spec("llama3-8b")
    qkv = layer_op(llama, Step("prefill", 1, PROMPT_TOKENS), "llama", "qkv")
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", str(PROMPT_TOKENS))
    with pytest.raises(SpecError, match="maps attention-1pass-causal-gqa") as error:
        device_models(load_system(system_path))["fx"].cost([qkv])
    assert not isinstance(error.value, LimitError) and not advises_limit({"reason": error.value.reason})


def test_a_fusemax_candidate_refused_by_a_limit_refuses_the_point_with_its_advice(monkeypatch) -> None:
    monkeypatch.setenv("ARCHSIM_MAX_SIZE", "1000")
    with pytest.raises(LimitError) as error:
        fusemax.attention_result("flat", "BERT", 1024)
    assert advises_limit({"reason": error.value.reason})
