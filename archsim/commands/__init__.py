"""CLI commands kept out of `archsim.cli` (which registers them with `main.add_command`)."""
