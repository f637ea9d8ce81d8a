"""`python -m archsim` runs the CLI."""

from archsim.cli import main

if __name__ == "__main__":  # Dask's spawned worker processes import this module again; they must not run the CLI
    main()
