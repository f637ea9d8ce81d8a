"""The matrix products inside a layer op, read off its bound cascade: which Einsums are GEMMs, their (m, k, n)
shapes, and which operand a device keeps stationary.

A MAC Einsum `out = sum(k: A * B)` is a batch of GEMMs. Its index variables split four ways:
- k: the reduced variables;
- n: the variables of the *stationary* operand that reach the output and are not in the other operand (the weight
  matrix's columns, the keys of a K^T·q);
- m: the variables of the *streaming* operand that reach the output and are not in the stationary one (tokens,
  query rows);
- batch: the variables both operands and the output share (batch and head of an attention product): `count`
  independent GEMMs.
The stationary operand is the one whose tensor role (`archsim.systems.step.ROLES`) is a weight, else the one that
is KV cache; a MAC Einsum with neither (an RMSNorm's sum of squares, a MoE combine) is not a GEMM and is left to a
device's vector units. A masked Einsum (a causal mask, MoE top-k routing) computes `density` of its points: a
device skips the masked rows, so `rows` is m x density, rounded up.

GEMMs of one op that stream the same input over the same m, k and batch variables against weights (Q, K and V
projections; SwiGLU's gate and up projections) are one GEMM with their columns side by side, as fused kernels and
NPU compilers run them. Everything here is read from the Einsums and the binding; nothing is counted by hand.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from archsim.cascade import syntax as S
from archsim.cascade.ir import Cascade, Einsum, Ref
from archsim.memo import identity_cache
from archsim.systems.step import KV_CACHE, WEIGHTS, Op, tensor_roles_of


@dataclass(frozen=True)
class Gemm:
    """`count` GEMMs out[rows, n] = in[rows, k] · stationary[k, n]; `flops` are the useful ones (masks applied),
    `stationary_bytes` the stationary operands' bytes (all `count` of them), `role` their tensor role."""

    rows: int
    k: int
    n: int
    count: int
    flops: int
    stationary_bytes: int
    role: str  # weights | kv_cache
    einsums: tuple[str, ...]
    tensors: tuple[str, ...]  # the stationary operands


_OP_GEMMS: weakref.WeakKeyDictionary[Op, tuple[Gemm, ...]] = weakref.WeakKeyDictionary()  # op -> op_gemms(op)


def op_gemms(op: Op) -> tuple[Gemm, ...]:
    """The GEMMs of `op` (module docstring), fused where they share an input; remembered while the op lives (a
    cache capped by count had kept up to 65,536 ops alive after the models and caches holding them let go)."""
    found = _OP_GEMMS.get(op)
    if found is None:
        found = _OP_GEMMS[op] = _fused_gemms(op)
    return found


def _fused_gemms(op: Op) -> tuple[Gemm, ...]:
    fused: dict[tuple, Gemm] = {}
    for einsum, key, gemm in _einsum_gemms(op):
        if key is not None and key in fused:
            prev = fused[key]
            gemm = Gemm(prev.rows, prev.k, prev.n + gemm.n, prev.count, prev.flops + gemm.flops,
                        prev.stationary_bytes + gemm.stationary_bytes, prev.role, (*prev.einsums, einsum.name),
                        (*prev.tensors, *gemm.tensors))
        fused[key if key is not None else einsum.name] = gemm
    return tuple(fused.values())


def writer_of(op: Op, tensor: str) -> Einsum | None:
    """The Einsum of the op's cascade that writes `tensor` (None for a tensor none writes: an input)."""
    return next((e for e in op.binding.cascade.einsums if e.output.tensor == tensor), None)


def einsum_density(op: Op, einsum: Einsum) -> float:
    """The share of `einsum`'s iteration space the op computes: its counted points (a mask's kept ones) over all
    of them (module docstring)."""
    sizes, var_ranks = op.binding.rank_sizes, op.binding.cascade.var_ranks
    full_points = math.prod([sizes[var_ranks[v]] for v in einsum.space])
    return op.analysis.points[einsum.name] / full_points if full_points else 0.0


def _einsum_gemms(op: Op) -> Iterator[tuple[Einsum, tuple | None, Gemm]]:
    binding, analysis = op.binding, op.analysis
    shapes = _gemm_shapes(binding.cascade, op.cascade)

    sizes, var_ranks = binding.rank_sizes, binding.cascade.var_ranks

    def size(names):  # Binding.var_size of each
        return math.prod([sizes[var_ranks[v]] for v in names])

    for shape in shapes:
        einsum = shape.einsum
        macs = analysis.ops[einsum.name].get("mac", 0)
        if not macs:
            continue
        rows = math.ceil(size(shape.m_vars) * einsum_density(op, einsum))
        gemm = Gemm(rows, size(shape.k_vars), size(shape.n_vars), size(shape.batch_vars), 2 * macs,
                    binding.bytes(shape.stationary), shape.role, (einsum.name,), (shape.stationary,))
        key = ((shape.streaming, shape.m_vars, shape.reduced, shape.batch_vars, rows) if shape.role == WEIGHTS
               else None)
        yield einsum, key, gemm


@dataclass(frozen=True)
class _GemmShape:
    """A MAC Einsum's GEMM as the cascade fixes it (module docstring), its sizes left to a binding."""

    einsum: Einsum
    stationary: str  # tensor
    streaming: str  # tensor
    role: str
    m_vars: tuple[str, ...]
    n_vars: tuple[str, ...]
    batch_vars: tuple[str, ...]
    k_vars: tuple[str, ...]  # the reduced variables, in the Einsum's space order
    reduced: tuple[str, ...]  # the reduced variables, sorted


def _shapes_of(cascade: Cascade, roles: dict[str, str]) -> tuple[_GemmShape, ...]:
    """The GEMM shapes of `cascade`'s MAC Einsums whose operands are two different tensors, one of them a weight
    or KV cache (by `roles`)."""
    shapes = []
    for einsum in cascade.einsums:
        operands = _operands(einsum)
        if operands is None:
            continue
        a, b = operands
        stationary = next((ref for role in (WEIGHTS, KV_CACHE) for ref in (a, b) if roles[ref.tensor] == role), None)
        if stationary is None or a.tensor == b.tensor:
            continue
        streaming = b if stationary is a else a
        out, s_vars, x_vars = ref_vars(einsum.output), ref_vars(stationary), ref_vars(streaming)
        reduced = set(einsum.reduce_vars)
        m_vars = tuple(v for v in x_vars if v in out and v not in s_vars)
        n_vars = tuple(v for v in s_vars if v in out and v not in x_vars)
        batch_vars = tuple(v for v in out if v in s_vars and v in x_vars)
        k_vars = tuple(v for v in einsum.space if v in reduced)
        shapes.append(_GemmShape(einsum, stationary.tensor, streaming.tensor, roles[stationary.tensor], m_vars, n_vars,
                                 batch_vars, k_vars, tuple(sorted(reduced))))
    return tuple(shapes)


@identity_cache(maxsize=256)
def _gemm_shapes(cascade: Cascade, cascade_name: str) -> tuple[_GemmShape, ...]:
    """`_shapes_of` a loaded library cascade (an op's `binding.cascade`, of library name `cascade_name`), its
    tensors' roles the op's (`step.tensor_roles_of`): remembered per Cascade object, as they depend on the cascade
    alone (an edited file's is another object)."""
    return _shapes_of(cascade, tensor_roles_of(cascade_name, cascade))


def _operands(einsum: Einsum) -> tuple[Ref, Ref] | None:
    body = einsum.body
    if isinstance(body, S.BinOp) and body.op == "*" and isinstance(body.lhs, Ref) and isinstance(body.rhs, Ref):
        return body.lhs, body.rhs
    return None


def ref_vars(ref: Ref) -> tuple[str, ...]:
    """The index variables an access reads, in order (constant slots left out)."""
    return tuple(t.var for t in ref.terms if t.var is not None)
