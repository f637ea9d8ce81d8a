"""What fuzzing the Python API found: a bool size accepted or refused depending on what ran before (the cache
key held True == 1), batch columns of bools and strings read as numbers, `causal="no"` timed as causal, a block
that contradicts the workload's counted silently, `with_fields` dropping --tp/--pp options, request generators
dividing by zero or taking True as a rate."""

from __future__ import annotations

import pytest

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu
from archsim.library import load_workload_spec
from archsim.model.batch import evaluate_columns
from archsim.point import prepare, run_point
from archsim.systems.requests import LengthDistribution, gaussian_requests, poisson_requests
from archsim.systems.seqpar import parallel_time
from archsim.systems.seqpar_spec import ParallelSpec
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_spec import load_system, with_fields
from archsim.systems.topology import load_topology


def test_a_bool_size_is_refused_whatever_ran_before() -> None:
    run_point("fusemax", workload="bert-base", sets={"batch": 1, "seq_len": 4096})
    with pytest.raises(SpecError, match="batch: expected a number, got True"):
        run_point("fusemax", workload="bert-base", sets={"batch": True, "seq_len": 4096})


@pytest.mark.parametrize("values", [[True, 1e11], ["1e11"], [[1e11, 2e11], [3e11]]])
def test_a_batch_column_takes_numbers_only(values) -> None:
    point = prepare("fusemax", workload="bert-base", sets={"seq_len": 4096})
    with pytest.raises(SpecError) as error:
        evaluate_columns(point.binding, point.analysis, point.arch, point.mapping,
                         {"memories.DRAM.bandwidth_bytes_per_s": values})
    assert error.value.where == "memories.DRAM.bandwidth_bytes_per_s"


@pytest.mark.parametrize(("field", "value"), [("causal", "no"), ("causal", None), ("ulysses", True),
                                              ("ulysses", -1)])
def test_a_parallel_spec_checks_its_flags(field: str, value) -> None:
    spec = ParallelSpec("ring", 2, load_workload_spec("llama3-8b"), 32768, load_gpu("h100-sxm5"),
                        load_topology("hgx-h100"), **{field: value})
    with pytest.raises(SpecError) as error:
        parallel_time(spec)
    assert error.value.where == field


def test_layer_ops_refuses_another_block_than_the_workloads() -> None:
    """Llama3-70B's layer as a GPT block counted a GELU FFN (9.68e10 FLOPs against 1.27e11)."""
    with pytest.raises(SpecError, match="llama3-70b is a llama block; got 'gpt'"):
        layer_ops(load_workload_spec("llama3-70b"), Step("decode", 64, 8192), "gpt")


def test_with_fields_keeps_the_options() -> None:
    system = load_system("neupims").with_options(tp=8)
    assert dict(with_fields(system, {"schedule.min_batch": 2}).options) == {"tp": 8}


@pytest.mark.parametrize(("make", "where"), [
    (lambda: LengthDistribution("x", 10.0, 10.0, 100, 100, sigma=0), "sigma"),
    (lambda: LengthDistribution("x", 10.0, 10.0, 100, 100, sigma=-1), "sigma"),
    (lambda: poisson_requests(rate_per_s=True, n=5, lengths="alpaca", seed=0), "rate_per_s"),
    (lambda: poisson_requests(rate_per_s=5, n=True, lengths="alpaca", seed=0), "n"),
    (lambda: poisson_requests(rate_per_s=5, n=3.0, lengths="alpaca", seed=0), "n"),
    (lambda: gaussian_requests(-1, 100, 100, 0.1, 0), "n"),
])
def test_request_generators_check_their_arguments(make, where: str) -> None:
    """sigma 0 divided by zero deep inside; -1 made every request the maximum; True ran as a rate of 1."""
    with pytest.raises(SpecError) as error:
        make()
    assert error.value.where == where
