"""The AttAcc example for the README (pim.md §4.1): `attacc` (8 A100a at TP8 + 8 AttAcc PIM devices holding the KV
cache) against `dgx-base` (the 8 GPUs alone), decode only, every request at 2048 tokens of context, each system at
the largest batch its KV cache holds; one decode iteration gives the token throughput and the energy per token.

The printed numbers are a regression pin (the model's output when the example was written, not a paper's figure:
AttAcc reports its gains on its own grid, which the example does not reproduce); what the test holds
independently of them is that attacc beats dgx-base on both throughput and energy per token, as AttAcc's PIM, 9x
the GPUs' aggregate bandwidth and with room for a larger batch, should."""

from __future__ import annotations

import re

EXAMPLE = '''
from archsim.library import load_workload_spec
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.system_spec import load_system

context = 2048
for workload in ("llama-65b", "gpt3-175b"):
    rows = {}
    for name in ("dgx-base", "attacc"):
        model = system_model(load_system(name), load_workload_spec(workload))
        batch = int(model.kv_capacity_bytes // (model.kv_bytes_per_token * context))  # the most its KV cache holds
        cost = model.iteration(Batch((), (context,) * batch))  # one decode token for each request
        rows[name] = batch, batch / cost.time_s, cost.energy_j / batch
    (base_batch, base_tok_s, base_j), (batch, tok_s, j) = rows["dgx-base"], rows["attacc"]
    print(f"{workload}: batch {base_batch} -> {batch}, {base_tok_s:.0f} -> {tok_s:.0f} tokens/s "
          f"({tok_s / base_tok_s:.2f}x), {base_j:.3f} -> {j:.3f} J a token ({base_j / j:.2f}x less)")
'''

PRINTED = [  # the regression pin: the example's output when written
    "llama-65b: batch 102 -> 128, 2395 -> 4882 tokens/s (2.04x), 0.532 -> 0.237 J a token (2.25x less)",
    "gpt3-175b: batch 34 -> 71, 817 -> 2117 tokens/s (2.59x), 1.555 -> 0.629 J a token (2.47x less)",
]


def test_the_attacc_example_prints_its_ratios_and_attacc_beats_dgx_base(capsys) -> None:
    exec(compile(EXAMPLE, "attacc example", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines == PRINTED
    for line in lines:
        speedup, energy_saving = (float(x) for x in re.findall(r"\(([\d.]+)x", line))
        assert speedup > 1 and energy_saving > 1
