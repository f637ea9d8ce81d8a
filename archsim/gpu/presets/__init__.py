"""GPU presets (YAML), one file per GPU; `archsim.gpu.load.load_gpu(name)` reads them."""
