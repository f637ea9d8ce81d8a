"""Link presets (YAML), one file per link; `archsim.systems.links.load_link(name)` reads them."""
