"""archsim: a simulator and design-space explorer for attention accelerators (the `archsim` command is `cli`)."""
