"""The workload library (YAML). Installed as the data package `archsim.library.workloads`."""
