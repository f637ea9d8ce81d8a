"""The mapping library (YAML). Installed as the data package `archsim.library.mappings`."""
