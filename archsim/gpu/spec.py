"""Kept only while `archsim/dse/points.py` imports `GPU` from here: the GPU spec is `archsim.arch.gpu`. Delete this
module once that import reads `from archsim.arch.gpu import GPU`."""

from archsim.arch.gpu import GPU

__all__ = ["GPU"]
