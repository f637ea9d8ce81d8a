"""Triton kernels of the library's algorithms. Installed as `archsim.kernels`."""
