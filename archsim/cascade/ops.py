"""Map operators of the cascade language and the op types they are counted as.

Binary operators are fixed by the syntax (`+ - * /`, `max(a, b)`, `min(a, b)`, comparisons). Unary
operators come from a plain dict, so a user registers one by passing an extended dict to the loader and
the interpreter (`{**DEFAULT_UNARY_OPS, "softplus": UnaryOp(...)}`); nothing global is mutated.

Op types are the classes of hardware operation a model costs separately (a MAC, an exp, a divide, a max
each have their own unit throughput and energy). `sub` counts as `add`; a product under a `sum` reduction
counts as one `mac` instead of a `mul` plus an `add`. A composite activation (gelu, silu) keeps its own op
type; architectures decide what it costs (FuseMax's artifact: exp = 6 MAC + 1 add).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UnaryOp:
    """A unary map operator: its name in the cascade language, its numpy function, and the op type it is counted as."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    op_type: str


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


DEFAULT_UNARY_OPS: dict[str, UnaryOp] = {
    op.name: op
    for op in (
        UnaryOp("exp", np.exp, "exp"),
        UnaryOp("log", np.log, "log"),
        UnaryOp("sqrt", np.sqrt, "sqrt"),
        UnaryOp("rsqrt", lambda x: 1.0 / np.sqrt(x), "sqrt"),
        UnaryOp("recip", lambda x: 1.0 / x, "div"),
        UnaryOp("relu", lambda x: np.maximum(x, 0.0), "max"),
        UnaryOp("gelu", _gelu_tanh, "gelu"),
        UnaryOp("silu", lambda x: x / (1.0 + np.exp(-x)), "silu"),
        UnaryOp("sigmoid", lambda x: 1.0 / (1.0 + np.exp(-x)), "sigmoid"),
        # elu(x) + 1: the positive feature map of linear attention (Katharopoulos et al., ICML'20)
        UnaryOp("elu1", lambda x: np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0))), "elu"),
    )
}

BINARY_OP_TYPES = {"+": "add", "-": "add", "*": "mul", "/": "div"}
COMPARE_OP_TYPE = "cmp"
BINARY_CALLS = {"max": "max", "min": "min"}  # max(a, b), min(a, b) as map ops
REDUCE_OP_TYPES = {"sum": "add", "max": "max", "min": "min"}
REDUCE_IDENTITY = {"sum": 0.0, "max": -np.inf, "min": np.inf}
PREDICATE_CALLS = ("abs", "min", "max")  # functions allowed in mask predicates
