"""The CLI commands, one module per job; `archsim.cli` imports each only when it is invoked."""
