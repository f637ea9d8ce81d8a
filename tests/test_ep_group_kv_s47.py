"""Expert parallelism's KV cache: one page pool per EP group, so that no group holds more KV than its memory.

The case (a memory-accounting audit): Mixtral-8x7B on `vllm-h100` with one GPU per group, tp 1, ep 2, memory
utilization 0.5838, three requests at t = 0 of 100 prompt and 6,000 output tokens. By hand:

- one group's room: 0.5838 x 85.90e9 B held, less 512 MiB of activations, less 48.31e9 B of weights = 1.304e9 B;
  a token's KV is 2 (K, V) x 8 KV heads x 128 x 2 B x 32 layers = 131,072 B, so 9,947 tokens: 621 pages of 16
  (9,947 / 16 = 621.7). The whole cache is 2 x 621 = 1,242 pages (one pool per group; the two rooms together
  floored as one were 1,243).
- each request holds at most 100 + 6,000 - 1 = 6,099 tokens = 382 pages; `ep_groups` deals the batch by position,
  so requests 0 and 2 are group 0's: 2 x 382 = 764 pages > 621. Before the fix one shared pool of 1,243 pages held
  all three (1,146 pages) with no preemption, group 0 ending with 12,198 tokens, 23 % over its room.
- with the fix, all three are admitted at t = 0 (7 pages each, within the 621 less the watermark int(0.01 x 621) =
  6). Requests 0 and 2 grow in lockstep; a step reserving for k + 1 tokens needs ceil((k + 1) / 16) pages each, so
  group 0 fits while 2 x ceil((k + 1) / 16) <= 621, i.e. k + 1 <= 4,960 (310 pages each). At k + 1 = 4,961 request
  0 takes its 311th page (621 in use), request 2 cannot: it is the latest admitted, so it is preempted (once),
  having emitted 4,960 - 99 = 4,861 tokens. The peak is then the step before: 3 x 310 = 930 pages. Request 2 waits
  (its 4,961-token recompute needs 311 pages beside request 0's 311 + the watermark) until requests 0 and 1 finish
  together, then runs alone: all 18,000 tokens are served.
"""

from __future__ import annotations

import pytest

from archsim.library import load_workload_spec
from archsim.systems.models import system_model
from archsim.systems.requests import Request
from archsim.systems.serving import ServingConfig, simulate_serving, unservable
from archsim.systems.system_spec import load_system, with_fields

PAGE = 16
KV_TOKEN_BYTES = 2 * 8 * 128 * 2 * 32  # K and V, 8 KV heads of 128, fp16, 32 layers


@pytest.fixture(scope="module")
def model():
    system = with_fields(load_system("vllm-h100"), {"devices.gpu.count": 1, "links.ep": "nvlink4-h100",
                                                    "devices.gpu.memory_utilization": 0.5838})
    return system_model(system.with_options(tp=1, pp=1, ep=2), load_workload_spec("mixtral-8x7b"))


def test_the_case_as_derived(model):
    room = model.memory_bytes_per_device - model.weight_bytes_per_device
    assert model.kv_bytes_per_token == KV_TOKEN_BYTES
    assert room / KV_TOKEN_BYTES == pytest.approx(9947, abs=1)  # one group's room, in tokens
    assert model.kv_capacity_bytes == pytest.approx(2 * room)  # both groups' rooms
    assert model.kv_groups == 2


def test_no_ep_group_holds_more_kv_than_its_room(model):
    result = simulate_serving(model, [Request(i, 0.0, 100, 6000) for i in range(3)], ServingConfig())
    assert result.capacity_pages == 2 * 621
    assert result.rejected_ids == ()
    assert result.output_tokens == 18000
    assert result.preemptions == 1
    assert [r.preemptions for r in result.requests] == [0, 0, 1]
    assert result.peak_pages == 3 * 310


def test_a_request_beyond_one_group_is_refused(model):
    """621 pages of 16 is 9,936 tokens: a request of 9,937 tokens of KV (1 prompt + 9,937 output - 1) fits the
    two groups' 1,242 pages but no group's 621, so it is rejected on arrival, and `unservable` says so."""
    fits, beyond = Request(0, 0.0, 1, 9936), Request(1, 0.0, 1, 9937)
    result = simulate_serving(model, [fits, beyond], ServingConfig())
    assert result.rejected_ids == (1,)
    assert unservable(model, [beyond]) is not None
    assert unservable(model, [fits]) is None
