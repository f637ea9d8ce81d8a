"""System presets (YAML), one file per system; `archsim.systems.system_spec.load_system(name)` reads them."""
