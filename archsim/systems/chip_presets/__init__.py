"""Chip presets (YAML), one file per chip; `archsim.systems.chip.load_chip(name)` reads them."""
