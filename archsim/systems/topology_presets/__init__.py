"""Topology presets (YAML), one file per cluster; `archsim.systems.topology.load_topology(name)` reads them."""
