"""What a newcomer's audit of the Python API found: `poisson_requests(20, 100, ...)` with rate and count swapped ran
silently; a malformed `simulate_serving` argument, a GPU given by name or `params=None` to `predict` and a
`FlashAttention-2 (causal)` call on a non-causal case gave tracebacks or a wrong time; two units spreading one rank
differently were told numbers the user never wrote; Python callers were told about `--set`; a system dict without
`source` did not say what `source` is; the README's MInference `archsim sparse` example lacked a column the command
prints."""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.mapping.load import mapping_from_dict
from archsim.model.gpu import AttentionCase
from archsim.model.gpu_kernels import predict, predict_varlen
from archsim.point import bound, prepare, run_point
from archsim.systems import neupims
from archsim.systems.requests import Request, poisson_requests
from archsim.systems.serving import ServingConfig, simulate_serving
from archsim.systems.system_spec import load_system, system_from_dict

README = Path(__file__).resolve().parents[1] / "README.md"
FA2_PARAMS = load_calibration().family_params("fa2")
H100 = load_gpu("h100-sxm5")


# ------------------------------------------------------------------------------------------------ poisson_requests
def test_poisson_requests_takes_its_arguments_by_name_only() -> None:
    """Rate and count are both numbers: `poisson_requests(20, 100, ...)` read either way was a silent swap."""
    with pytest.raises(TypeError):
        poisson_requests(20, 100, "sharegpt", 0)
    requests = poisson_requests(rate_per_s=20, n=100, lengths="sharegpt", seed=0)
    assert len(requests) == 100


def test_the_readme_calls_poisson_requests_by_keyword() -> None:
    calls = re.findall(r"poisson_requests\(([^)]*)\)", README.read_text())
    assert calls and all("rate_per_s=" in c for c in calls if c.strip() not in ("", "True, ...")), calls
    assert "poisson_requests(True, ...)" not in README.read_text()


# ------------------------------------------------------------------------------------------------ simulate_serving
@pytest.fixture(scope="module")
def model():
    return neupims.system("neupims", "gpt3-7b")


@pytest.mark.parametrize(("requests", "config", "where", "said"), [
    ([(0, 0.0, 10, 10)], None, "requests[0]", "expected a Request"),
    ([Request(0, 0.0, 10, 10), {"id": 1}], None, "requests[1]", "expected a Request"),
    (Request(0, 0.0, 10, 10), None, "requests", "expected an iterable of Request"),
    ([Request(0, 0.0, 10, 10)], {"max_batch": 8}, "config", "expected a ServingConfig"),
    ([Request(0, 0.0, 10, 10)], {}, "config", "expected a ServingConfig"),
])
def test_simulate_serving_names_a_malformed_argument(model, requests, config, where: str, said: str) -> None:
    with pytest.raises(SpecError) as error:
        simulate_serving(model, requests, config)
    assert error.value.where == where and said in error.value.message, str(error.value)


def test_simulate_serving_still_takes_any_iterable(model) -> None:
    requests = [Request(1, 0.5, 10, 4), Request(0, 0.0, 10, 4)]
    assert simulate_serving(model, iter(requests), ServingConfig(max_batch=4)).output_tokens == 8


# ------------------------------------------------------------------------------------------------ GPU predict
CASE = AttentionCase("fwd", 1, 16, 16, 64, 1024, False, "fp16")


@pytest.mark.parametrize(("gpu", "params", "where"), [
    ("h100-sxm5", FA2_PARAMS, "gpu"),
    (None, FA2_PARAMS, "gpu"),
    (H100, None, "params"),
    (H100, [0.8], "params"),
])
def test_predict_names_a_gpu_or_params_of_the_wrong_type(gpu, params, where: str) -> None:
    for call in (lambda: predict("FlashAttention-2", CASE, gpu, params),
                 lambda: predict_varlen("FlashAttention-2", CASE, [1024], gpu, params)):
        with pytest.raises(SpecError) as error:
            call()
        assert error.value.where == where, str(error.value)


def test_the_causal_label_refuses_a_non_causal_case() -> None:
    """"FlashAttention-2 (causal)" is a measurement file's label for FA2 run with causal=True; on a non-causal case
    it returned FA2's non-causal time under the causal name."""
    result = predict("FlashAttention-2 (causal)", CASE, H100, FA2_PARAMS)
    assert not result.feasible and "causal" in result.reason, result.reason
    causal = dataclasses.replace(CASE, causal=True)
    assert predict("FlashAttention-2 (causal)", causal, H100, FA2_PARAMS).time_s == \
        predict("FlashAttention-2", causal, H100, FA2_PARAMS).time_s
    decode = AttentionCase("decode", 1, 16, 16, 64, 1024, False, "fp16")  # a decode row is read as non-causal
    assert predict("FlashAttention-2 (causal)", decode, H100, FA2_PARAMS).feasible


# ------------------------------------------------------------------------------------------------ mappings
def test_two_units_spreading_a_rank_differently_are_told_so() -> None:
    """FuseMax's mapping with the 2-D array spreading 16 queries and the 1-D array 32: the temporal loops are the
    group's, so one unit's factors multiplied to 8192 against P = 4096, numbers nowhere in the mapping."""
    data = yaml.safe_load(library.find("mappings", "fusemax").read_text())
    edited = copy.deepcopy(data)
    loops = edited["groups"][0]["loops"]
    loops[0]["ranks"]["P"], loops[1]["ranks"]["P"] = 1, None
    loops[2]["ranks"]["P"], loops[3]["ranks"]["P"] = 16, 32
    with pytest.raises(SpecError) as error:
        run_point(mapping_from_dict(edited), workload="bert-base", sets={"seq_len": 4096})
    assert str(error.value) == ("<python>: groups[0].loops: rank P is spread 16 on array2d but 32 on array1d: the "
                                "units of one group share its temporal loops, so each must spread a rank equally")


# ------------------------------------------------------------------------------------------------ Python wording
def test_python_sets_are_named_as_the_argument() -> None:
    with pytest.raises(SpecError) as error:
        prepare("fusemax", workload="bert-base", sets={"seq_len": "4096"})
    assert error.value.source == "sets", str(error.value)
    with pytest.raises(SpecError) as error:
        bound("attention-1pass", "bert-base", {"seq_len": "4096"})
    assert error.value.source == "sets", str(error.value)


def test_a_workload_missing_a_size_is_not_told_about_the_cli_from_python() -> None:
    bert = library.load_workload_spec("bert-base")
    partial = dataclasses.replace(bert, params={k: v for k, v in bert.params.items() if k != "word_bytes"})
    with pytest.raises(SpecError) as error:
        prepare("fusemax", workload=partial, sets={"seq_len": 4096})
    assert "word_bytes" in str(error.value) and "--set" not in str(error.value), str(error.value)


def test_the_cli_still_names_its_option(cli) -> None:
    result = cli("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "tile_kv=64", expect=2)
    assert "error: --set: tile_kv: changes nothing" in result.output, result.output


# ------------------------------------------------------------------------------------------------ system specs
def test_a_system_without_source_is_told_what_source_is() -> None:
    data = {k: v for k, v in load_system("neupims").data.items() if k != "source"}
    with pytest.raises(SpecError) as error:
        system_from_dict(copy.deepcopy(data))
    assert error.value.where == "source" and error.value.message.startswith("missing: expected a citation"), \
        str(error.value)


# ------------------------------------------------------------------------------------------------ README
MINFERENCE = "$ archsim sparse --method minference "


def readme_example(text: str, prompt: str) -> tuple[list[str], list[str]]:
    """The arguments of the README's example command starting with `prompt` and the output lines shown under it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(prompt))
    shown = []
    for line in lines[start + 1:]:
        if line.startswith(("$ ", "```")):
            break
        shown.append(line)
    return lines[start].split()[2:], shown


def test_the_readme_minference_example_is_what_the_command_prints(cli) -> None:
    args, shown = readme_example(README.read_text(), MINFERENCE)
    assert cli(*args).output.splitlines() == shown
