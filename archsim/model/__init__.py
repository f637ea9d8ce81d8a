"""Performance models: the analytical and event models of a mapping, the PIM channel model and the GPU model."""
