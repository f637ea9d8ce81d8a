"""Architecture presets (YAML) of the FuseMax artifact: `fusemax`, `flat`, `unfused`; `archsim.library` finds them."""
