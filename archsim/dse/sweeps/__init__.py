"""The shipped design-space sweeps (YAML), loaded by name with `archsim.library.load_sweep_spec`."""
