"""Bad input an audit found taken as good: a size or requirement dividing by zero bound to a finite wrong size, a
mask dividing by a literal 0 (all NaN), vertical-slash parameters the reference disagrees with, a memory pool's
untimed row with no reason, an unchecked seed, lengths or case, and an empty link name reported as a str."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim.cascade.bind import bind
from archsim.cascade.load import cascade_from_dict
from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.gpu.params import load_calibration
from archsim.library import load_cascade_spec
from archsim.model.gpu_kernels import predict, predict_varlen
from archsim.systems.requests import poisson_requests
from archsim.systems.system_spec import load_system, with_fields

# A small cascade with a rank GL sized as megatron-sp-attention's KV heads a device, of `parts` (a plain param).
GL = "1 + (kv_heads // parts - 1) * (1 // (1 + kv_heads % parts))"


def _cascade(gl: str = GL, requires: list[str] | None = None, mask: str = "m <= p", parts: int = 0) -> dict:
    return {"name": "zero-divisor", "params": {"batch": 1, "heads": 4, "kv_heads": 2, "seq_len": 8, "head_dim": 4,
                                              "parts": parts, "word_bytes": 2},
            "ranks": {"B": "batch", "H": "heads", "G": "kv_heads", "GL": gl, "P": "seq_len", "M": "seq_len",
                      "E": "head_dim"},
            "requires": requires or [], "inputs": {"Q": ["B", "H", "P", "E"], "K": ["B", "H", "M", "E"], "S": ["GL"]},
            "masks": {"causal": mask},
            "einsums": "QK[b,h,p,m] = sum(e: Q[b,h,p,e] * K[b,h,m,e]) where causal\nSS[gl] = S[gl]",
            "outputs": ["QK", "SS"]}


# ---------------------------------------------------------------------------------------------- 1. sizes by zero
def test_a_rank_dividing_by_a_zero_param_is_refused_naming_the_rank_and_expression() -> None:
    """`1 // (1 + kv_heads % 0)` was 1 // inf = 0: GL bound to 1, a finite wrong size."""
    cascade = cascade_from_dict(_cascade())
    with pytest.raises(SpecError) as error:
        bind(cascade)
    assert error.value.where == "ranks.GL", str(error.value)
    assert "GL = 1 + (kv_heads // parts - 1) * (1 // (1 + kv_heads % parts)) divides by zero at kv_heads // parts" \
        in error.value.message
    assert bind(cascade, overrides={"parts": 2}).rank_sizes["GL"] == 1  # the same expression, sound


def test_a_requirement_dividing_by_zero_is_refused_naming_it() -> None:
    """`1 // (1 + kv_heads % parts) == 0` held with parts 0 (1 // inf is 0)."""
    cascade = cascade_from_dict(_cascade(gl="kv_heads + parts", requires=["1 // (1 + kv_heads % parts) == 0"]))
    with pytest.raises(SpecError) as error:
        bind(cascade)
    assert error.value.where == "requires[0]", str(error.value)
    assert "divides by zero at kv_heads % parts" in error.value.message


@pytest.mark.parametrize("gl", ["kv_heads % 0", "kv_heads // 0 + 1", "1 + kv_heads / 0"])
def test_a_rank_dividing_by_a_literal_zero_is_refused_at_load(gl: str) -> None:
    with pytest.raises(SpecError) as error:
        cascade_from_dict(_cascade(gl=gl, parts=1))
    assert error.value.where == "ranks.GL" and "divides by zero" in error.value.message, str(error.value)


def test_a_requirement_dividing_by_a_literal_zero_is_refused_at_load() -> None:
    with pytest.raises(SpecError) as error:
        cascade_from_dict(_cascade(gl="kv_heads + parts", requires=["kv_heads % 0 == 0"], parts=1))
    assert error.value.where == "requires[0]" and "divides by zero" in error.value.message, str(error.value)


# ---------------------------------------------------------------------------------------------- 2. masks by zero
@pytest.mark.parametrize("mask", ["m <= p and m % 0 == 0", "m <= p and m // 0 == 0", "m / -0 <= p"])
def test_a_mask_dividing_by_a_literal_zero_is_refused_at_load(mask: str) -> None:
    """`k % 0 == 0` passed `archsim check` and `execute` gave all NaN."""
    with pytest.raises(SpecError) as error:
        cascade_from_dict(_cascade(gl="kv_heads + parts", mask=mask, parts=1))
    assert error.value.where == "masks.causal" and "divides by zero" in error.value.message, str(error.value)


def test_archsim_check_refuses_a_mask_dividing_by_zero(cli, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_cascade(gl="kv_heads + parts", mask="m <= p and m % 0 == 0", parts=1)))
    out = cli("check", str(path), expect=2).output
    assert "masks.causal" in out and "divides by zero" in out, out


# ---------------------------------------------------------------------------------------------- 3. vertical-slash
@pytest.mark.parametrize("name", ["minference-vertical-slash", "minference-vertical-slash-kernel"])
@pytest.mark.parametrize(("sets", "where"), [
    ({"k_v": 0}, "k_v"), ({"k_s": 0}, "k_s"), ({"k_s": 1}, "k_s"), ({"last_q": 0}, "last_q"),
    ({"sink_columns": 10, "k_v": 2}, "sink_columns"),
])
def test_vertical_slash_refuses_what_its_reference_disagrees_with(name: str, sets: dict, where: str) -> None:
    cascade = load_cascade_spec(name)
    bind(cascade)  # the defaults pass
    with pytest.raises(SpecError) as error:
        bind(cascade, overrides=sets, source="--set")
    assert error.value.where in sets and error.value.where in (where, "k_v"), str(error.value)


def test_execute_check_of_k_v_0_exits_2(cli) -> None:
    """It ran and failed its reference check (rc 1)."""
    out = cli("execute", "minference-vertical-slash-kernel", "--set", "k_v=0", "--check", expect=2).output
    assert "k_v" in out and "requires[0]" in out, out


# ---------------------------------------------------------------------------------------------- 4. pool reason
def test_a_memory_pool_holding_no_request_says_why(cli_json) -> None:
    rows = cli_json("sparse", "--method", "quest", "--gpu", "h100-sxm5", "-w", "llama3-70b", "--context", "512K",
                    "--budget", "2048", "--system", "lamina-tpu-v6e")["system_points"]
    (row,) = rows
    assert row["requests"] == 0 and row["dense_requests"] == 0 and row["time_s"] is None
    assert row["reason"] is not None
    assert "one request's KV cache at 524288 tokens (Quest" in row["reason"] and "pool KV room" in row["reason"]


# ---------------------------------------------------------------------------------------------- 5. Python arguments
@pytest.mark.parametrize("seed", [None, -1, 1.5, True, "0"])
def test_poisson_requests_refuses_a_seed_that_is_no_whole_number(seed) -> None:
    """None drew different requests each call; -1 and 1.5 were taken, while the CLI refuses --seed < 0."""
    with pytest.raises(SpecError) as error:
        poisson_requests(rate_per_s=1.0, n=3, lengths="sharegpt", seed=seed)
    assert error.value.where == "seed", str(error.value)


def test_poisson_requests_refuses_lengths_of_the_wrong_type() -> None:
    """lengths=5 was an AttributeError."""
    with pytest.raises(SpecError) as error:
        poisson_requests(rate_per_s=1.0, n=3, lengths=5, seed=0)
    assert error.value.where == "lengths" and "sharegpt" in error.value.message, str(error.value)


@pytest.mark.parametrize("case", [None, {"direction": "fwd", "batch": 1}])
def test_predict_names_a_case_that_is_no_attention_case(case) -> None:
    gpu, params = load_gpu("h100-sxm5"), load_calibration().family_params("fa2")
    for call in (lambda: predict("FlashAttention-2", case, gpu, params),
                 lambda: predict_varlen("FlashAttention-2", case, [1024], gpu, params)):
        with pytest.raises(SpecError) as error:
            call()
        assert error.value.where == "case" and "AttentionCase" in error.value.message, str(error.value)


# ---------------------------------------------------------------------------------------------- 6. empty link
def test_an_empty_link_name_is_called_one() -> None:
    with pytest.raises(SpecError) as error:
        with_fields(load_system("lamina"), {"links.attention_pool": ""})
    assert error.value.where == "links.attention_pool", str(error.value)
    assert error.value.message.endswith("got an empty name"), str(error.value)


def test_a_linked_axis_template_dividing_by_zero_is_refused_naming_the_field():
    """A linked sweep axis renders its templates with `eval_size`, whose division by zero is NaN: the rendered field
    is refused naming it, not passed on as NaN."""
    from archsim.dse.spec import linked_fields
    from archsim.errors import SpecError

    with pytest.raises(SpecError) as error:
        linked_fields("linked.pe_dim", {"arch.pe": "1024 / (pe_dim - 64)"}, 64, "s.yaml")
    assert error.value.where == "axes.linked.pe_dim.set.arch.pe"
    assert "divides by zero" in error.value.message
    assert linked_fields("linked.pe_dim", {"arch.pe": "pe_dim * 2"}, 64, "s.yaml") == {"arch.pe": 128}


def test_the_table_says_a_pool_rows_reason_without_the_batch_wording():
    """A memory pool holds requests, not a batch: its reason is printed alone, not followed by the PIM rows' "the
    batch's KV cache exceeds the system's KV room"."""
    from click.testing import CliRunner

    from archsim.cli import main

    result = CliRunner().invoke(main, ["sparse", "--method", "quest", "--gpu", "h100-sxm5", "-w", "llama3-70b",
                                       "--context", "512K", "--budget", "2048", "--system", "lamina-tpu-v6e"])
    assert result.exit_code == 0, result.output
    oom = [line for line in result.output.splitlines() if line.startswith("OOM:")]
    assert oom and "pool KV room" in oom[0] and "the batch's KV cache" not in oom[0]
