"""FuseMax's end-to-end numbers (Nayak et al., MICRO'24; abstract: 5.3x speedup at 83 % energy over FLAT): one
transformer layer = attention plus its linear layers, reproduced from archsim's own specs.

The linear layers are those of the artifact's `src/accel/matmul.py`: six GEMMs with R = B*P rows, the Q, K, V and
Z projections (R x D x D) and the two FFN GEMMs (R x D x S, R x S x D), each run on the 256 x 256 array as its own
group, reading its input and its weights from DRAM once and writing its output once, time = max(compute, DRAM
transfer), summed (docs/fusemax-artifact-model.md section 6). They are three library cascades (`qkv-projection`,
`output-projection`, `ffn`), each with one mapping per hardware (`linear-{qkv,out,ffn}-{flat,fusemax}`):

    config    hardware (architecture preset)        artifact file
    flat      FLAT baseline, 32 MiB global buffer   end2end-flat.csv
    fusemax   FuseMax, 16 MiB global buffer         end2end-proposal.csv

Assumptions:
- The FFN cascade has its GELU, bound to the 1-D array and overlapped with FFN1. The artifact charges nothing for
  activations (nor for layer norm and residuals, which no cascade here has). The presets' 1-D arrays run GELU
  as its parts in sequence; `with_activation` chooses:
  * `"none"` (the default; the artifact's assumption): one cycle per element, the least an op can cost in an
    architecture spec, and no energy. On 256 lanes that is R*S/256 cycles against FFN1's R*D*S/65536, hidden
    whenever D >= 256 (all four models).
  * `"gelu"` (the presets as they are, and what `archsim run` uses): GELU as x * sigmoid(1.702 x) =
    x / (1 + exp(-1.702 x)) (Hendrycks & Gimpel, arXiv 1606.08415, section 2), i.e. one mul, one exp, one add
    and one divide per element, priced from the 1-D array's own op table: 9 cycles and 164.7 pJ on FuseMax
    (exp = 6 MACs), 4 cycles and 156.4 pJ on FLAT (a 1-cycle exp unit).
    Then FFN1 waits for the 1-D array wherever 256 x cycles > D: on FuseMax BERT's linear layers take 67 % longer,
    T5's 112 %, TrXL's 42 %, XLM's 4 %; on FLAT BERT's 11 %, T5's 32 %. Energy moves by under 1 %.
- The two hardware run the same dataflow; they differ in buffer size (which only XLM's 32 MiB FFN weights feel)
  and in energy tables.
- XLM's FFN weights do not fit either buffer; the mappings split them along S, so FFN2 writes partial sums of Y
  once per weight tile and reads each back on the next (`plan._output_moves`; XLM has no artifact rows to check).

The artifact's CSVs (`reference/fusemax/end2end-*.csv`, BERT/TrXL/T5 only) are read only to print them beside ours
and to compute the error; nothing in a result comes from them.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from archsim import library
from archsim.arch.spec import Architecture
from archsim.memo import identity_cache
from archsim.model.analytical import evaluate
from archsim.model.result import Result
from archsim.point import prepare
from archsim.systems.fusemax import LENGTHS, MODELS, compare, headline, read_reference

HARDWARE = ("flat", "fusemax")
CASCADES = ("qkv", "out", "ffn")  # mapping `linear-{cascade}-{hardware}`
ACTIVATIONS = ("none", "gelu")
END2END_FILES = {"flat": "end2end-flat.csv", "fusemax": "end2end-proposal.csv"}
METRICS = ("latency_s", "traffic_bytes", "energy_pj")


def with_activation(arch: Architecture, activation: str) -> Architecture:
    """`arch` as it is ("gelu": the preset's GELU op, its parts in sequence) or with the GELU made free ("none",
    the artifact's assumption: one cycle, the least an op can take, and no energy); see the module docstring."""
    if activation == "gelu":
        return arch
    if activation == "none":
        return arch.with_changes(**{"units.array1d.op_cycles.gelu": 1, "units.array1d.energy.actions_pj.gelu": 0.0})
    raise ValueError(f"unknown activation '{activation}' (known: {', '.join(ACTIVATIONS)})")


def _arch(hw: str, activation: str) -> Architecture:
    """Library architecture `hw` as its file reads now (the library parses an edited file again) `with_activation`,
    remembered per loaded Architecture object, not per name."""
    return _with_activation(library.load_architecture_spec(hw), activation)


_with_activation = identity_cache(maxsize=16)(with_activation)


def linear_result(hw: str, model: str, seq_len: int, activation: str = "none") -> dict[str, Result]:
    """The three linear cascades of one layer on `hw`, one Result each (keys: CASCADES)."""
    results = {}
    for cascade in CASCADES:
        point = prepare(library.load_mapping_spec(f"linear-{cascade}-{hw}"), arch=_arch(hw, activation),
                        workload=MODELS[model], sets={"seq_len": seq_len})
        results[cascade] = evaluate(point.binding, point.analysis, point.arch, point.mapping)
    return results


def linear_point(hw: str, model: str, seq_len: int, activation: str = "none") -> dict:
    """One record: the linear layers of one layer summed over the three cascades. util_2d is the 2-D array's
    busy share of the summed time."""
    results = linear_result(hw, model, seq_len, activation).values()
    latency_s = sum(r.latency_s for r in results)
    return {
        "config": hw, "model": model, "seq_len": seq_len, "activation": activation,
        "feasible": all(r.feasible for r in results), "latency_s": latency_s,
        "energy_pj": sum(r.energy_pj for r in results),
        "traffic_bytes": sum(r.dram_traffic_bytes for r in results),
        "util_2d": sum(r.utilization["array2d"] * r.latency_s for r in results) / latency_s,
    }


def end2end_records(hardware: Iterable[str] = HARDWARE, models: Iterable[str] = MODELS,
                    lengths: Iterable[int] = LENGTHS.values(), activation: str = "none") -> list[dict]:
    """One linear-layer record (`linear_point`) per hardware, model and sequence length, in that nesting order."""
    return [linear_point(hw, m, n, activation) for hw in hardware for m in models for n in lengths]


def reference_end2end() -> pd.DataFrame:
    """The artifact's linear-layer results (`end2end-{flat,proposal}.csv`)."""
    return read_reference(END2END_FILES, METRICS)


def compare_end2end(records: list[dict]) -> pd.DataFrame:
    """Ours beside the paper's where the paper's is known, with the relative error of each metric."""
    return compare(records, reference_end2end(), METRICS)


def end2end_headline(attention_records: list[dict], end2end_records: list[dict]) -> dict[str, float]:
    """FuseMax against FLAT on one layer (attention + linear layers) over every (model, length) point all four
    parts have: arithmetic means of the speedup and of the energy ratio (the paper's 5.3x and 0.83 are such
    means over 24 points, `utils/graph.py::load_data` of the artifact)."""
    keys = ["config", "model", "seq_len"]
    attention = pd.DataFrame(attention_records)[[*keys, "latency_s", "energy_pj"]]
    linear = pd.DataFrame(end2end_records)[[*keys, "latency_s", "energy_pj"]]
    layer = attention.merge(linear, on=keys, suffixes=("_attn", "_linear"))
    for metric in ("latency_s", "energy_pj"):
        layer[metric] = layer[f"{metric}_attn"] + layer[f"{metric}_linear"]
    return headline(layer.to_dict("records"))
