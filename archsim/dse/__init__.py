"""Design-space exploration: Pareto fronts (and, later, sweeps)."""
