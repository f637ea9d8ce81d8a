"""Einsum cascades: the syntax, the loader into a typed IR, binding to sizes, static analyses and the interpreter."""
