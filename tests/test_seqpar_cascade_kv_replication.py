"""Head-sharded sequence-parallel cascades with more devices than KV heads (Ulysses' KV-head replication for GQA).

`archsim parallel --scheme megatron-sp --devices 16 -w llama3-8b` times one KV head per device, repeated, where 16
devices share 8 KV heads; the cascades `ulysses-attention`, `megatron-sp-attention`, `usp-attention` (and their
`-noncausal` forms) sized their per-device KV heads as kv_heads / devices, so the same case was refused as
"ranks.GL: expected a positive integer size, got 0.5". Expectations: (a) with devices | kv_heads or kv_heads |
devices, each executes equal to its dense reference for P = 1..8 devices and kv_heads 1, 2, 4 (device d holds KV
head d * kv_heads // devices, repeated over devices / kv_heads devices); (b) where neither divides the other the
refusal names kv_heads and devices and says which relation is expected; (c) the CLI case of the report runs and
checks ok.
"""

from __future__ import annotations

import math

import pytest
from test_seqpar_cascades import DEVICES, HEAD_SHARDED, TOLERANCE, USP, _bind, _max_error, _received

from archsim.errors import SpecError

KV_HEADS = (1, 2, 4)


@pytest.mark.parametrize("name", HEAD_SHARDED)
@pytest.mark.parametrize("devices", DEVICES)
def test_head_sharded_cascades_replicate_kv_heads_past_the_devices(name: str, devices: int) -> None:
    """kv_heads 1, 2, 4 on P = 1..8 wherever one divides the other; heads 2 * lcm(P, kv_heads), so each device
    holds two query heads at least."""
    shapes = [kv for kv in KV_HEADS if kv % devices == 0 or devices % kv == 0]
    assert shapes
    for kv_heads in shapes:
        heads = 2 * math.lcm(devices, kv_heads)
        binding = _bind(name, devices=devices, seq_len=4 * devices, heads=heads, kv_heads=kv_heads)
        if devices > kv_heads:  # one KV head a device, repeated
            assert binding.rank_sizes["GL"] == 1, binding.rank_sizes
        assert _max_error(binding) < TOLERANCE, (heads, kv_heads)


@pytest.mark.parametrize("name", USP)
@pytest.mark.parametrize(("ulysses", "ring"), [(u, r) for u in DEVICES for r in DEVICES if u * r <= 8])
def test_usp_replicates_kv_heads_past_the_ulysses_degree(name: str, ulysses: int, ring: int) -> None:
    for kv_heads in (kv for kv in KV_HEADS if kv % ulysses == 0 or ulysses % kv == 0):
        heads = 2 * math.lcm(ulysses, kv_heads)
        binding = _bind(name, ulysses=ulysses, ring=ring, seq_len=4 * ulysses * ring, heads=heads,
                        kv_heads=kv_heads)
        assert _max_error(binding) < TOLERANCE, (heads, kv_heads)


def _bind_degree(name: str, degree: str, devices: int, **params: float):
    """`name` bound with `devices` head-sharding devices: its `devices`, or USP's `ulysses` on one ring group."""
    extra = {"ring": 1} if degree == "ulysses" else {}
    return _bind(name, seq_len=8 * devices, **{degree: devices}, **extra, **params)


DEGREES = [*((name, "devices") for name in HEAD_SHARDED), *((name, "ulysses") for name in USP)]


@pytest.mark.parametrize(("name", "degree"), DEGREES)
@pytest.mark.parametrize(("heads", "kv_heads", "devices"), [(6, 3, 2), (12, 6, 4), (20, 10, 4), (12, 4, 6)])
def test_kv_heads_neither_dividing_nor_divided_by_the_devices_are_refused_by_name(
        name: str, degree: str, heads: int, kv_heads: int, devices: int) -> None:
    with pytest.raises(SpecError) as error:
        _bind_degree(name, degree, devices, heads=heads, kv_heads=kv_heads)
    message = str(error.value)
    assert f"kv_heads={kv_heads}" in message and f"{degree}={devices}" in message, message
    assert "requires[0]" in message and "positive integer size" not in message and "partition" not in message, message


@pytest.mark.parametrize(("name", "degree"), DEGREES)
def test_llama3_8b_kv_heads_on_16_devices_bind_one_kv_head_each(name: str, degree: str) -> None:
    """The case `archsim parallel --scheme megatron-sp --devices 16 -w llama3-8b` times: 32 heads, 8 KV heads."""
    binding = _bind_degree(name, degree, 16, heads=32, kv_heads=8)
    assert (binding.rank_sizes["HL"], binding.rank_sizes["GL"], binding.rank_sizes["R"]) == (2, 1, 2)


@pytest.mark.parametrize("name", ["ulysses-attention", "ulysses-attention-noncausal"])
def test_ulysses_sends_each_device_its_one_kv_head(name: str) -> None:
    """8 devices over 2 KV heads: each device receives the (N/P)-token chunk of its one KV head's K and V from each
    of the P-1 others (not 2 H_kv / P of seqpar-sparse.md's closed form, which assumes P | H_kv), and its H/P query
    heads' chunks as before."""
    batch, heads, kv_heads, seq_len, head_dim, devices = 2, 16, 2, 32, 4, 8
    binding = _bind(name, batch=batch, heads=heads, kv_heads=kv_heads, seq_len=seq_len, head_dim=head_dim,
                    devices=devices)
    chunk = batch * (seq_len // devices) * head_dim  # one head's tokens on one device
    assert _received(binding, "KH", "t", "d") == _received(binding, "VH", "t", "d") == devices * (devices - 1) * chunk
    assert _received(binding, "QH", "t", "d") == devices * (devices - 1) * (heads // devices) * chunk


@pytest.mark.parametrize("name", HEAD_SHARDED)
def test_the_reported_case_executes_and_checks(cli, name: str) -> None:
    sets = ["devices=4", "seq_len=32", "heads=8", "kv_heads=2", *(["hidden=16"] if "megatron" in name else [])]
    out = cli("execute", name, *(arg for value in sets for arg in ("--set", value)), "--check").output
    assert out.endswith("ok\n"), out


def test_size_expressions_take_a_remainder():
    """`%` in a size expression (the guards above read `kv_heads % devices`): evaluated as Python's, and a
    remainder by 0 is NaN like a division by 0, which later operations keep (`1 // inf` would be 0) and the range
    checks refuse."""
    from archsim.cascade import syntax as S
    from archsim.cascade.bind import eval_size

    expr = S.BinOp("%", S.Name("a"), S.Name("b"))
    assert eval_size(expr, {"a": 10, "b": 4}) == 2
    assert eval_size(expr, {"a": 8, "b": 4}) == 0
    assert math.isnan(eval_size(expr, {"a": 8, "b": 0}))
