"""The shipped design-space sweeps (YAML), loaded by name with `archsim.dse.spec.load_sweep_spec`."""
