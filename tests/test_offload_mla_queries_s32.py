"""An MLA decode's query to the memory pool is Q and its rope part QR (the attention op's activations in), not Q
alone (audit helper-339: DeepSeek-V3 on a Lamina system of DOP (32, 8), q 4096 + 2048 bytes a request a device);
the QKV projection's time splits by the same bytes. A GQA model's query is Q as before."""

from __future__ import annotations

import pytest

from archsim import library
from archsim.systems.models import system_model
from archsim.systems.step import ACTIVATIONS_IN
from archsim.systems.system_spec import load_system, with_fields


def _model(workload: str, tp: int, pool: int):
    system = with_fields(load_system("lamina"), {"devices.compute.count": tp, "devices.memory.count": pool,
                                                 "parallelism.tp": tp, "parallelism.attention_pool": pool})
    return system_model(system, library.load_workload_spec(workload))


@pytest.mark.parametrize(("workload", "tp", "pool", "queries"), [("deepseek-v3-mla", 32, 8, ["Q", "QR"]),
                                                               ("llama3-70b", 2, 4, ["Q"])])
def test_the_query_sent_to_the_pool_is_the_attention_ops_activations_in(workload, tp, pool, queries) -> None:
    model = _model(workload, tp, pool)
    one = model.pool.attention("decode", 1)
    assert [n for n, role in one.tensor_roles.items() if role == ACTIVATIONS_IN] == queries
    requests = 11
    layer = model.layer((1446,) * requests)
    q_bytes = pool * requests * sum(one.tensor_bytes[n] for n in queries)
    link = model.message_link
    assert layer.q_wire_s == pytest.approx(link.wire_s(q_bytes), rel=1e-12)
    out_bytes = pool * requests * one.tensor_bytes["AV"]
    assert layer.wire_bytes == pytest.approx(q_bytes + model.layer_kv_bytes(requests) + out_bytes, rel=1e-12)
    ops, _ = model.dense_costs(requests)
    outputs = {t.name: t.bytes for t in next(op for op in ops if op.name == "qkv").tensors if t.kind == "output"}
    share = sum(outputs[n] for n in queries) / sum(outputs.values())
    assert layer.q_s / (layer.q_s + layer.kv_s) == pytest.approx(share, rel=1e-12)
    if workload == "deepseek-v3-mla":  # QR is half of Q: the query is 1.5x Q alone
        assert one.tensor_bytes["QR"] * 2 == one.tensor_bytes["Q"]
