"""Block-sparse attention on a spatial array, through the analytical model, against dense attention on the same
hardware (issue 19: the spatial-array model's skipped tiles and estimation pass; ../shared/reference/seqpar-sparse.md
§3.1: MInference's block-sparse head, Jiang et al., NeurIPS'24; on FuseMax, Nayak et al., MICRO'24). Reached by
tests only (tests/test_kv_selection.py, tests/test_sparse_on_array.py, tests/test_sparse_decode_fixes.py);
`archsim run` runs the same mappings.

- Static block mask (`block_sparse_on_array`): `attention-block-sparse` (a static block mask; no estimation pass:
  the mask is fixed, nothing is scored) against `attention-1pass`, the same Einsums, on a library mapping of
  either (FuseMax's `fusemax`, or `fusemax-cascade` on FLAT's hardware) through the analytical model, which
  counts masked points free. The 2-D array's Einsums (QK, SLN, SLNV) shrink with the kept fraction; the 1-D
  array's running-state Einsums (RM, PRM, SPD, RD, SPNV, RNV) are per key tile and query, masked at tile
  granularity (a tile the query does not see carries the state unchanged, as a kernel skips it), so they shrink
  with the fraction of (tile, query) pairs kept, which is the block density when blocks are whole tiles. Both
  the latency of a 1-D-bound mapping (FuseMax at these sizes) and the energy fall with density; a K/V tile no
  query of the resident query tile sees is not fetched (`archsim.model.reuse.masked_refetches`). Both cascades
  have a K/V head per query head: a grouped- or multi-query workload is refused.
- With the estimation (`selected_blocks_on_array`): MInference's block-sparse head
  (`minference-block-sparse`: pooling, block scores, top-k selection, then attention over the selected blocks) on
  `fusemax-minference-block-sparse` against dense causal attention (`attention-1pass-causal-gqa` on `fusemax-gqa`,
  grouped K/V or not). The estimation groups' cycles (every group but `attention`: one Einsum each, or
  `sequential`) do not fall with density, so their share of the sparse run's compute grows as density falls. The
  selected blocks' mask reads the selection (a density, no positions), so every K/V tile is fetched and the score
  rows the 3-pass softmax keeps on chip are dense: what falls with density is the 2-D array's compute, not the
  traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from archsim import library
from archsim.errors import SpecError
from archsim.model.result import Result

DENSE_ARRAY_CASCADE, SPARSE_ARRAY_CASCADE = "attention-1pass", "attention-block-sparse"
SELECTION_ARRAY_MAPPING, DENSE_CAUSAL_ARRAY_MAPPING = "fusemax-minference-block-sparse", "fusemax-gqa"
SELECTION_ATTENTION_GROUP = "attention"  # the selected blocks' group; the mapping's others are the estimation


@dataclass(frozen=True)
class ArrayBlockSparse:
    """Block-sparse attention against dense on one mapping: the kept fraction of QK's points and both Results."""

    density: float
    dense: Result
    sparse: Result


def block_sparse_on_array(mapping: str, workload: str, seq_len: int, block: int) -> ArrayBlockSparse:
    """`attention-1pass` and `attention-block-sparse` (blocks of `block` tokens) at `seq_len` tokens of `workload`
    on `mapping`, through the analytical model (module docstring). Both cascades have a K/V head per query head, so
    a grouped- or multi-query workload is refused (no block-sparse cascade with grouped K/V is in the library)."""
    from archsim.model.analytical import evaluate
    from archsim.point import prepare

    spec = library.load_workload_spec(workload)
    if spec.params.get("kv_heads", spec.params.get("heads")) != spec.params.get("heads"):
        raise SpecError(spec.path, "params.kv_heads",
                        f"{spec.params['kv_heads']:g} K/V heads for {spec.params.get('heads', 0):g} query heads: the "
                        f"spatial array's block-sparse comparison runs {DENSE_ARRAY_CASCADE} and "
                        f"{SPARSE_ARRAY_CASCADE}, one K/V head per query head; the library has no grouped-query "
                        "block-sparse cascade")
    results = []
    for cascade, sets in ((DENSE_ARRAY_CASCADE, {"seq_len": seq_len}),
                          (SPARSE_ARRAY_CASCADE, {"seq_len": seq_len, "block": block})):
        point = prepare(mapping, cascade=cascade, workload=workload, sets=sets)
        results.append((point.analysis.points["QK"],
                        evaluate(point.binding, point.analysis, point.arch, point.mapping)))
    (dense_points, dense), (sparse_points, sparse) = results
    return ArrayBlockSparse(sparse_points / dense_points, dense, sparse)


@dataclass(frozen=True)
class ArraySelectedBlocks:
    """MInference's block-sparse head, its estimation included, against dense causal attention on a spatial array:
    the kept fraction of causal points (the sparse QK's multiply-accumulates over the dense one's), the
    estimation's share of the sparse run's compute cycles, both Results."""

    density: float
    estimation_share: float
    dense: Result
    sparse: Result


def selected_blocks_on_array(workload: str, seq_len: int, block: int, k_b: int,
                             mapping: str = SELECTION_ARRAY_MAPPING,
                             dense_mapping: str = DENSE_CAUSAL_ARRAY_MAPPING) -> ArraySelectedBlocks:
    """`minference-block-sparse` (blocks of `block` tokens, `k_b` selected per block row: the cascade counts
    min(k_b, i + 1) blocks in query block i) on `mapping` and dense causal attention on `dense_mapping`, at
    `seq_len` tokens of `workload`, through the analytical model (module docstring). Bad settings are the binding's
    SpecErrors (`--set`'s)."""
    from archsim.point import run_point

    sparse = run_point(mapping, workload=workload, sets={"seq_len": seq_len, "block": block, "k_b": k_b})
    dense = run_point(dense_mapping, workload=workload, sets={"seq_len": seq_len})
    estimation = sum(e.compute_cycles for e in sparse.einsums if e.group != SELECTION_ATTENTION_GROUP)
    sparse_qk, dense_qk = (next(e.ops["mac"] for e in r.einsums if e.name == "QK") for r in (sparse, dense))
    return ArraySelectedBlocks(sparse_qk / dense_qk, estimation / sparse.compute_cycles, dense, sparse)
