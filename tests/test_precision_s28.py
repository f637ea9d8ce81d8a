"""A workload's word sizes where the FFN is quantised apart (`ffn_word_bytes`): the point path binds the FFN at
them as the systems layer does, the expert exchange combines at the activations' width, and the npu and logic-pim
devices refuse widths they have no rate for."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from cli_errors import one_line_error

from archsim import library
from archsim.errors import SpecError
from archsim.point import bound
from archsim.systems.collectives import all_to_all_s
from archsim.systems.models import system_model
from archsim.systems.step import ACTIVATIONS_IN
from archsim.systems.system_checks import _word_problem
from archsim.systems.system_messages import expert_exchange_s
from archsim.systems.system_spec import load_system
from archsim.systems.system_types import EP_LINK

GPT = library.load_workload_spec("gpt3-7b")
MIXTRAL = library.load_workload_spec("mixtral-8x7b")
GROK = library.load_workload_spec("grok-1-314b")


def _with(workload, **params):
    return replace(workload, params={**workload.params, **params})


def _file(tmp_path, workload, **params) -> str:
    path = tmp_path / f"{workload.name}.yaml"
    path.write_text(yaml.safe_dump({"name": workload.name, "description": "test", "source": "test",
                                    "block": workload.block, "params": {**workload.params, **params}}))
    return str(path)


def test_ffn_cascades_bind_ffn_word_bytes():
    fp8 = _with(GPT, ffn_word_bytes=1)
    assert bound("ffn", fp8, {"seq_len": 1024})[0].word_bytes == 1
    assert bound("moe-experts", _with(MIXTRAL, ffn_word_bytes=1), {"tokens": 64})[0].word_bytes == 1
    assert bound("residual-add", fp8, {"seq_len": 1024})[0].word_bytes == 2  # not an FFN: the workload's word_bytes
    assert bound("ffn", GPT, {"seq_len": 1024})[0].word_bytes == 2


def test_ffn_word_bytes_set_is_read():
    """A --set (or a sweep's workload.ffn_word_bytes axis) of the FFN's width binds it, rather than being refused as
    changing nothing; on another cascade it still is."""
    fp8 = _with(GPT, ffn_word_bytes=1)
    assert bound("ffn", fp8, {"seq_len": 1024, "ffn_word_bytes": 2})[0].word_bytes == 2
    assert bound("ffn", GPT, {"seq_len": 1024, "ffn_word_bytes": 1})[0].word_bytes == 1
    with pytest.raises(SpecError, match="changes nothing"):
        bound("residual-add", fp8, {"seq_len": 1024, "ffn_word_bytes": 2})


def test_fp8_ffn_refused_on_a_2_byte_arch(cli, tmp_path):
    path = _file(tmp_path, GPT, ffn_word_bytes=1)
    result = cli("run", "-m", "linear-ffn-fusemax", "-w", path, "--set", "seq_len=1024", "--json", expect=2)
    one_line_error(result, "fusemax holds and computes 2-byte words", "1-byte elements")


def test_analyze_shows_the_ffn_at_its_width(cli, tmp_path):
    fp8 = cli("analyze", "moe-experts", "-w", _file(tmp_path, MIXTRAL, ffn_word_bytes=1), "--set", "tokens=64")
    bf16 = cli("analyze", "moe-experts", "-w", _file(tmp_path, MIXTRAL), "--set", "tokens=64")
    row = next(line for line in fp8.output.splitlines() if line.split()[:1] == ["W1"])
    assert row in bf16.output.replace("9.395e+08", "4.698e+08")  # 8 x 4096 x 14336 words of 1 byte, not 2


def test_expert_exchange_combines_at_the_activations_width():
    """Grok-1 on duplex-gpu (tp 8, ep 2), 64 decode tokens: an fp8 FFN dispatches fp8 tokens and combines bf16."""
    system = load_system("duplex-gpu")
    fp16, fp8 = system_model(system, GROK), system_model(system, _with(GROK, ffn_word_bytes=1))
    moe = next(op for op in fp16.ops("decode", 64, 1) if op.name == "moe")
    message = moe.bytes_by_role[ACTIVATIONS_IN] * GROK.params["top_k"] / fp16.parallelism.tp
    link, ep = fp16.system.links[EP_LINK], fp16.parallelism.ep
    assert ep > 1
    assert expert_exchange_s(fp16, 64) == pytest.approx(2 * all_to_all_s(message, ep, link), rel=1e-12)
    assert expert_exchange_s(fp8, 64) == pytest.approx(all_to_all_s(message / 2, ep, link)
                                                       + all_to_all_s(message, ep, link), rel=1e-12)


@pytest.mark.parametrize(("system", "field", "words"), [("npu-only", "word_bytes", 3), ("neupims", "word_bytes", 8),
                                                        ("npu-only", "ffn_word_bytes", 3)])
def test_npu_refuses_other_word_sizes(system, field, words):
    with pytest.raises(SpecError, match=rf"params\.{field}: npu .*expected 1, 2 or 4 bytes, got {words}"):
        system_model(load_system(system), _with(GPT, **{field: words}))


def test_logic_pim_refuses_other_word_sizes():
    system = load_system("duplex")
    assert any(d.kind == "logic-pim" for d in system.devices.values())
    with pytest.raises(SpecError, match=r"params\.word_bytes: .* does not compute these words"):
        system_model(system, _with(MIXTRAL, word_bytes=3))  # its GPU (xpu) is named first: it runs earlier ops
    (pim,) = (d for d in system.devices.values() if d.kind == "logic-pim")
    assert _word_problem(pim, 3).startswith("its arrays compute 8-, 16- or 32-bit words: expected 1, 2 or 4 bytes")
    assert _word_problem(pim, 4) is None


def test_simulate_refuses_3_byte_words(cli, tmp_path):
    path = _file(tmp_path, GPT, word_bytes=3)
    result = cli("simulate", "-s", "npu-only", "-w", path, "--rate", "10", "--requests", "20", expect=2)
    one_line_error(result, f"{path}: params.word_bytes: npu devices.npu of ", "expected 1, 2 or 4 bytes, got 3")


def test_supported_word_sizes_still_run():
    system_model(load_system("npu-only"), _with(GPT, ffn_word_bytes=1))


def test_a_word_size_override_does_not_rebind_an_ffn_the_workload_quantises_apart(cli):
    """With `ffn_word_bytes` given, the FFN's width is that, as the systems layer binds it; a `--set word_bytes`
    on the FFN cascade is refused naming ffn_word_bytes (it had rebound the fp8 FFN at 2 or 4 bytes)."""
    result = cli("analyze", "ffn-swiglu", "-w", "llama3-405b-fp8", "--set", "seq_len=64", "--set", "word_bytes=4",
                 expect=2)
    one_line_error(result, "--set: word_bytes: ffn-swiglu is bound at ffn_word_bytes", "set ffn_word_bytes")
    assert bound("ffn", _with(GPT, ffn_word_bytes=1), {"seq_len": 64, "ffn_word_bytes": 2})[0].word_bytes == 2
