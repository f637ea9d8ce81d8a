"""A sweep that fails after its progress line was started prints its error on a line of its own (fixer
helper-471): it had read `24/120 points, 19.9 points/s, ETA 5 s   error: --scheduler: ...`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from archsim.cli import main
    from archsim.dse import dask_run
    from archsim.errors import SpecError

    def failing(spec, db_path, progress=None, **options):
        progress(24, 120, 19.9, 5.0)
        raise SpecError("--scheduler", "tcp://127.0.0.1:1", "lost its last worker mid-sweep")

    dask_run.run_sweep_dask = failing
    sys.argv = ["archsim", "sweep", "demo", "--db", sys.argv[1]]
    main()
""")


def test_a_mid_sweep_error_starts_its_own_line(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "d.sqlite")], capture_output=True, text=True,
                         check=False)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.splitlines()
    assert lines[-1] == "error: --scheduler: tcp://127.0.0.1:1: lost its last worker mid-sweep"
    assert lines[-2].strip().endswith("ETA 5 s")
