"""The cascade library (YAML). Installed as the data package `archsim.library.einsum`."""
