"""Multi-device attention cascades (issue 18; ../shared/reference/seqpar-sparse.md §1-2): each cascade with an
explicit device rank computes its textbook single-device reference, and its transfer Einsums move the volumes of
the closed forms.

Expectations: (a) every cascade equals its dense reference (archsim.cascade.references, unchanged by the
sharding) on seeded float64 inputs within 1e-9, for P = 1..8 devices (seq_len = 4P, so every P divides it, the
zigzag's 2P chunks included; and seq_len 16 for the P dividing it), with query scores spread (Q x 3) so the
online-softmax rescales matter; (b) one broken merge or transfer per family misses the reference by > 1e-3;
(c) the points of the transfer Einsums whose source device differs from the destination equal seqpar-sparse.md
§1's closed forms (elements; bytes = elements x word_bytes): ring (P-1)*2*(N/P)*H_kv*d received per device,
Ulysses (N/P)*(H+2H_kv)*d*(P-1)/P per device for the Q/K/V all-to-all, LASP-2 (P-1) states B*H*d_k*d_v per device;
(d) each `-noncausal` form (what `archsim parallel --no-causal` times) is its causal sibling's Einsums with the causal
masks dropped, checked against the non-causal reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from archsim import library
from archsim.cascade import syntax as S
from archsim.cascade.analysis import analyze
from archsim.cascade.bind import Binding, bind
from archsim.cascade.interpret import execute, random_inputs
from archsim.cascade.ir import Var
from archsim.cascade.load import cascade_from_dict
from archsim.cascade.mask_count import count_true
from archsim.cascade.references import REFERENCES
from archsim.errors import SpecError
from archsim.spec_files import read_yaml

TOLERANCE = 1e-9  # float64 interpreter against float64 numpy references
DEVICES = range(1, 9)
RINGS = ("ring-attention", "ring-attention-causal", "ring-attention-stripe", "ring-attention-zigzag")
PLAIN_SHARDED = (*RINGS, "allgather-cp-attention", "allgather-cp-attention-noncausal", "lasp1-linear-attention",
                 "lasp2-linear-attention", "distattention-decode")
HEAD_SHARDED = ("ulysses-attention", "ulysses-attention-noncausal", "megatron-sp-attention",
                "megatron-sp-attention-noncausal")
USP = ("usp-attention", "usp-attention-noncausal")
# Each scheme's non-causal form (what `archsim parallel --no-causal` times) and its causal sibling.
NONCAUSAL = {f"{name}-noncausal": name for name in ("ulysses-attention", "usp-attention", "megatron-sp-attention",
                                                     "allgather-cp-attention")}


def _max_error(binding: Binding, seed: int = 0, inputs: dict[str, np.ndarray] | None = None) -> float:
    """Largest |cascade - reference| over the reference's outputs, Q scaled by 3 so per-block maxima differ."""
    if inputs is None:
        inputs = random_inputs(binding, seed)
        if "Q" in inputs:
            inputs["Q"] = inputs["Q"] * 3.0
    got = execute(binding, inputs)
    want = REFERENCES[binding.cascade.reference](inputs, binding.params)
    assert want
    error = 0.0
    for tensor, expected in want.items():
        assert got[tensor].shape == expected.shape, tensor
        assert np.isfinite(got[tensor]).all(), tensor
        error = max(error, float(np.max(np.abs(got[tensor] - expected))))
    return error


def _bind(name: str, **params: float) -> Binding:
    return bind(library.load_cascade_spec(name), params)


@pytest.mark.parametrize("name", PLAIN_SHARDED)
@pytest.mark.parametrize("devices", DEVICES)
def test_sequence_sharded_cascades_equal_their_reference(name: str, devices: int) -> None:
    sizes = [4 * devices] + ([16] if 16 % (2 * devices) == 0 else [])
    for seq_len in sizes:
        binding = _bind(name, devices=devices, seq_len=seq_len, heads=8, kv_heads=4)
        for seed in (0, 1):
            assert _max_error(binding, seed) < TOLERANCE, (seq_len, seed)


@pytest.mark.parametrize("name", HEAD_SHARDED)
@pytest.mark.parametrize("devices", DEVICES)
def test_head_sharded_cascades_equal_their_reference(name: str, devices: int) -> None:
    """P | heads and P | kv_heads: heads 2P with P KV heads for every P, and heads 8 / kv_heads 8 or 4 where P
    divides them."""
    shapes = [(2 * devices, devices)] + [(8, kv) for kv in (8, 4) if kv % devices == 0]
    for heads, kv_heads in shapes:
        binding = _bind(name, devices=devices, seq_len=4 * devices, heads=heads, kv_heads=kv_heads)
        assert _max_error(binding) < TOLERANCE, (heads, kv_heads)


@pytest.mark.parametrize("name", USP)
@pytest.mark.parametrize(("ulysses", "ring"), [(u, r) for u in DEVICES for r in DEVICES if u * r <= 8])
def test_usp_equals_its_reference(name: str, ulysses: int, ring: int) -> None:
    binding = _bind(name, ulysses=ulysses, ring=ring, seq_len=4 * ulysses * ring, heads=2 * ulysses,
                    kv_heads=ulysses)
    assert _max_error(binding) < TOLERANCE


@pytest.mark.parametrize(("name", "match"), [
    *((name, r"devices: expected a divisor of heads \(8\), got 3: .* \(ranks.HL: heads / devices")
      for name in HEAD_SHARDED),
    *((name, r"kv_heads: expected \(kv_heads % ulysses\) \* \(ulysses % kv_heads\) == 0 .* with kv_heads=3, ulysses=2")
      for name in USP)])
def test_head_sharding_refuses_heads_the_devices_do_not_divide(name: str, match: str) -> None:
    """heads / devices is a rank size: 8 heads on 3 devices is refused, not floored to 2 heads a device; 3 KV heads
    on a Ulysses degree of 2 (neither divides the other) are refused by USP's `requires:`."""
    params = {"ulysses": 2, "ring": 1, "kv_heads": 3} if name in USP else {"devices": 3, "kv_heads": 3}
    with pytest.raises(SpecError, match=match):
        _bind(name, seq_len=12, heads=6 if name in USP else 8, **params)


BROKEN = [  # (cascade, text in its einsums or masks, replacement, what breaks)
    ("ring-attention", "PRM[b,g,r,d,s,c] * RD[b,g,r,d,s,c]", "RD[b,g,r,d,s,c]", "denominator not rescaled"),
    ("ring-attention-zigzag", "PRM[b,g,r,d,s,w,c] * RNV[b,g,r,d,s,w,c,f]", "RNV[b,g,r,d,s,w,c,f]",
     "numerator not rescaled"),
    ("ring-attention-causal", "t == (d - s + devices) % devices", "t == (d + s) % devices",
     "blocks rotated the other way while the causal mask assumes (d - s) mod D"),
    ("ulysses-attention", "h == u * (heads // devices) + hl", "h == hl * devices + u",
     "all-to-all back to the wrong heads"),
    ("usp-attention", "PRM[b,y,u,gl,r,s,v,c] * RD[b,y,u,gl,r,s,v,c]", "RD[b,y,u,gl,r,s,v,c]",
     "ring denominator not rescaled"),
    ("megatron-sp-attention", "sum(u: ZP[b,u,n,m])", "sum(u: ZP[b,u,n,m]) where u == d",
     "reduce-scatter keeps only the device's own partial sum"),
    ("allgather-cp-attention", "KG[b,g,d,t,j,e]      = K[b,g,t,j,e]", "KG[b,g,d,t,j,e]      = K[b,g,d,j,e]",
     "all-gather copies the device's own chunk"),
    ("lasp1-linear-attention", "KV[b,h,d,e,f] + KVB[b,h,d,e,f]", "KVB[b,h,d,e,f]",
     "state passed on without the earlier chunks"),
    ("lasp2-linear-attention", "where t < d", "where t <= d", "prefix sum includes the device's own state"),
    ("distattention-decode", "PW[b,g,r,d] * PD[b,g,r,d]", "PD[b,g,r,d]", "partial denominators not rescaled"),
    ("ulysses-attention-noncausal", "sum(k: SN[b,d,gl,r,q,k] * VH[b,d,gl,k,f])",
     "sum(k: SN[b,d,gl,r,q,k] * VH[b,d,gl,k,f]) where k <= q", "a causal mask left on the numerator"),
    ("usp-attention-noncausal", "PRM[b,y,u,gl,r,s,v,c] * RNV[b,y,u,gl,r,s,v,c,f]", "RNV[b,y,u,gl,r,s,v,c,f]",
     "ring numerator not rescaled"),
    ("megatron-sp-attention-noncausal", "sum(k: SN[b,d,gl,r,q,k])", "sum(k: SN[b,d,gl,r,q,k]) where k <= q",
     "a causal mask left on the denominator"),
    ("allgather-cp-attention-noncausal", "VG[b,g,d,t,j,f]      = V[b,g,t,j,f]", "VG[b,g,d,t,j,f]      = V[b,g,d,j,f]",
     "all-gather copies the device's own V chunk"),
]


@pytest.mark.parametrize(("name", "right", "wrong", "why"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_merge_or_transfer_is_caught(name: str, right: str, wrong: str, why: str) -> None:
    data = read_yaml(library.find("cascades", name))
    fields = [key for key in ("einsums", "masks") if right in str(data.get(key, ""))]
    assert len(fields) == 1, fields
    if fields == ["einsums"]:
        assert data["einsums"].count(right) == 1
        data["einsums"] = data["einsums"].replace(right, wrong)
    else:
        data["masks"] = {k: v.replace(right, wrong) for k, v in data["masks"].items()}
    params = {"devices": 4, "heads": 8, "kv_heads": 4, "seq_len": 16}
    if name in USP:
        params = {"ulysses": 2, "ring": 2, "heads": 8, "kv_heads": 4, "seq_len": 16}
    right_binding = _bind(name, **params)
    broken = bind(cascade_from_dict(data), params)
    inputs = random_inputs(right_binding, 0)
    if "Q" in inputs:
        inputs["Q"] = inputs["Q"] * 3.0
    assert _max_error(right_binding, inputs=inputs) < TOLERANCE
    assert _max_error(broken, inputs=inputs) > 1e-3, why


@pytest.mark.parametrize(("name", "sibling"), NONCAUSAL.items())
def test_a_noncausal_form_is_its_causal_sibling_without_the_causal_masks(name: str, sibling: str) -> None:
    """The same Einsums over the same device ranks, so the same transfers; each Einsum either unmasked or masked as
    in the sibling by a mask that selects devices (no causal mask, no -inf fill), and a non-causal reference."""
    noncausal, causal = library.load_cascade_spec(name), library.load_cascade_spec(sibling)
    assert causal.reference != noncausal.reference
    assert (noncausal.inputs, noncausal.outputs) == (causal.inputs, causal.outputs)
    assert [e.name for e in noncausal.einsums] == [e.name for e in causal.einsums]
    for mine, theirs in zip(noncausal.einsums, causal.einsums, strict=True):
        assert (mine.output, mine.space, mine.body, mine.reduce_op, mine.reduce_vars) == (
            theirs.output, theirs.space, theirs.body, theirs.reduce_op, theirs.reduce_vars), mine.name
        assert mine.fill is None and mine.mask in (None, theirs.mask), mine.name
    params = {"ulysses": 2, "ring": 2} if name in USP else {"devices": 2}
    binding, causal_binding = _bind(name, **params), _bind(sibling, **params)
    inputs = random_inputs(binding, 0)
    assert _max_error(binding, inputs=inputs) < TOLERANCE
    assert _max_error(causal_binding, inputs=inputs) < TOLERANCE
    outputs = execute(binding, inputs), execute(causal_binding, inputs)
    assert all(np.max(np.abs(outputs[0][t] - outputs[1][t])) > 1e-3 for t in noncausal.outputs)


def _received(binding: Binding, einsum_name: str, source: str, destination: str) -> int:
    """Points of a transfer Einsum whose source device index differs from its destination device index: the
    elements that cross between devices (the rest is a device's own data), summed over devices."""
    einsum = next(e for e in binding.cascade.einsums if e.name == einsum_name)
    crossing = S.BinOp("!=", Var(source), Var(destination))
    predicate = crossing if einsum.mask is None else S.BinOp("and", einsum.mask.predicate, crossing)
    used = sorted({node.name for node in S.walk(predicate) if isinstance(node, Var)})
    dims = {v: binding.var_size(v) for v in used}
    total = math.prod(binding.var_size(v) for v in einsum.space)
    return count_true(predicate, dims, binding.params) * (total // math.prod(dims.values()))


B, H, G, N, E, P = 2, 8, 4, 32, 4, 4  # batch, heads, KV heads, tokens, head dim, devices


@pytest.mark.parametrize("name", RINGS)
def test_ring_moves_p_minus_1_kv_blocks_per_device(name: str) -> None:
    """seqpar-sparse.md §1, Ring Attention (pass-KV): (P-1)*2*(N/P)*H_kv*d elements received per device; summed
    over the P devices here. The analysis counts P blocks per device in KR and VR: the own block at s = 0 too."""
    binding = _bind(name, batch=B, heads=H, kv_heads=G, seq_len=N, head_dim=E, devices=P)
    analysis = analyze(binding)
    block = B * (N // P) * G * E  # one device's K (or V) block
    assert analysis.points["KR"] == analysis.points["VR"] == P * P * block
    received = _received(binding, "KR", "t", "d") + _received(binding, "VR", "t", "d")
    assert received == P * (P - 1) * 2 * (N // P) * G * E * B
    assert received * binding.word_bytes == P * (P - 1) * 2 * (N // P) * G * E * B * 2  # bf16 bytes


@pytest.mark.parametrize("name", ["ulysses-attention", "ulysses-attention-noncausal"])
def test_ulysses_all_to_all_moves_the_closed_form(name: str) -> None:
    """seqpar-sparse.md §1, DeepSpeed-Ulysses: (N/P)*(H+2H_kv)*d*(P-1)/P elements per device for the Q, K, V
    all-to-all (summed over the P devices here), and (N/P)*H*d*(P-1)/P for the output's all-to-all back."""
    binding = _bind(name, batch=B, heads=H, kv_heads=G, seq_len=N, head_dim=E, devices=P)
    qkv = sum(_received(binding, tensor, "t", "d") for tensor in ("QH", "KH", "VH"))
    assert qkv == P * B * (N // P) * (H + 2 * G) * E * (P - 1) // P
    assert _received(binding, "AV", "u", "d") == P * B * (N // P) * H * E * (P - 1) // P


def test_lasp2_all_gathers_p_minus_1_states_per_device() -> None:
    """seqpar-sparse.md §1, LASP-2: one all-gather of the chunk states; each device receives P-1 states of
    B*H*d_k*d_v, independent of the sequence length."""
    for seq_len in (N, 4 * N):
        binding = _bind("lasp2-linear-attention", batch=B, heads=H, seq_len=seq_len, head_dim=E, devices=P)
        assert _received(binding, "MG", "t", "d") == P * (P - 1) * B * H * E * E


@pytest.mark.parametrize("name", ["megatron-sp-attention", "megatron-sp-attention-noncausal"])
def test_megatron_sp_collectives_move_the_sequence_chunks(name: str) -> None:
    """Megatron-SP: the all-gather of X and the reduce-scatter of the output each move (P-1)*(N/P)*hidden
    elements per device (N*h*(P-1)/P; seqpar-sparse.md §1 counts 4*N*h per link for fwd + bwd)."""
    hidden = 16
    binding = _bind(name, batch=B, heads=H, kv_heads=G, seq_len=N, head_dim=E, devices=P,
                    hidden=hidden)
    chunk = B * (N // P) * hidden
    assert _received(binding, "XG", "t", "d") == P * (P - 1) * chunk
    assert _received(binding, "Z", "u", "d") == P * (P - 1) * chunk
