"""`Batch` (the work of one serving iteration, `archsim.systems.iteration`) refuses what is not a batch: prompt lengths
and decode contexts whole numbers of tokens >= 1, held KV tokens a whole number >= 0, each a SpecError naming the
field; before, a 0-token or 2.5-token prompt was costed (silent numbers), a negative held KV was ignored, and a
negative prompt length failed deep in the workload builder under the name `batch`."""

from __future__ import annotations

import numpy as np
import pytest

from archsim.errors import SpecError
from archsim.systems import neupims
from archsim.systems.iteration import Batch
from archsim.systems.neupims_reproduce import sample_contexts
from archsim.systems.system_spec import load_system


@pytest.mark.parametrize(("args", "field", "says"), [
    (([0], []), "prefill_tokens[0]", ">= 1"),
    (([-3], []), "prefill_tokens[0]", ">= 1"),
    (([100, 2.5], []), "prefill_tokens[1]", "whole number"),
    (([True], []), "prefill_tokens[0]", "bool"),
    ((["12"], []), "prefill_tokens[0]", "str"),
    (([], [-1]), "decode_context_tokens[0]", ">= 1"),
    (([], [5, 0]), "decode_context_tokens[1]", ">= 1"),
    (([], [float("nan")]), "decode_context_tokens[0]", "whole number"),
    (([], [float("inf")]), "decode_context_tokens[0]", "whole number"),
    (([], np.array([3.0, 7.5])), "decode_context_tokens[1]", "whole number"),
    (([], np.array([3, 0])), "decode_context_tokens[1]", ">= 1"),
    (([], [100], -5), "held_kv_tokens", ">= 0"),
    (([], [100], 2.5), "held_kv_tokens", "whole number"),
    (([], [100], None), "held_kv_tokens", "nothing"),
    ((5, []), "prefill_tokens", "sequence"),
    (((n for n in (1, 2)), []), "prefill_tokens", "sequence"),
])
def test_a_batch_that_is_not_one_is_refused_naming_its_field(args, field, says):
    with pytest.raises(SpecError) as refused:
        Batch(*args)
    assert refused.value.source == "<python>" and refused.value.where == field
    assert says in refused.value.message and "expected" in refused.value.message


@pytest.mark.parametrize("args", [
    ((1, 4096), (1, 2, 3), 0),
    ([np.int64(7)], [np.int32(9)], np.int64(12)),
    ((), sample_contexts((0, 0, 64, 0), 64, "sharegpt")),  # the NeuPIMs reproduction's draws: a float array, whole
    ((128.0,), (), 10.0),
    ((), ()),
])
def test_batches_the_simulators_build_are_accepted_as_given(args):
    batch = Batch(*args)
    assert batch.prefill_tokens is args[0] and batch.decode_context_tokens is args[1]  # kept as given


def test_a_model_is_never_handed_a_bad_batch():
    """The CLI's model (`simulate --system neupims --workload gpt3-7b`): a 0-token prompt had cost 0.108 ms, a
    2.5-token one 3.68 ms; a -3-token prompt failed in the workload builder as `batch`."""
    model = neupims.system(load_system("neupims"), "gpt3-7b")
    for prompts, field in (((0,), "prefill_tokens[0]"), ((2.5,), "prefill_tokens[0]"), ((-3,), "prefill_tokens[0]")):
        with pytest.raises(SpecError) as refused:
            model.iteration(Batch(prompts, ()))
        assert refused.value.where == field
    assert model.iteration(Batch((100,), (200,))).time_s > 0
