"""`python -m archsim` runs the CLI."""

from archsim.cli import main

main()
