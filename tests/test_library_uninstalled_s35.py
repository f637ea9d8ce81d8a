"""A source checkout imported without being installed has no library packages (only an install maps `einsum/`,
`mappings/`, `workloads/` into `archsim.library`): archsim says so and exits 2, where it listed an empty library
and exited 0 (a non-editable install run from the checkout's root; wheel audit, session 35)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

import archsim
from archsim import library
from archsim.errors import SpecError


def test_a_missing_library_package_is_an_error_not_an_empty_library():
    with pytest.raises(SpecError, match="not found: archsim is imported from"):
        library.names("cascades", package="archsim.library.no_such_package")


def test_an_uninstalled_checkout_exits_2_naming_the_cause(tmp_path):
    shutil.copytree(Path(archsim.__file__).parent, tmp_path / "archsim",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # -S: no site hooks, so the editable install's mapping of the library folders is not loaded (as for a
    # non-editable install, whose copy the checkout shadows); the dependencies come from PYTHONPATH
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(site.getsitepackages()))
    for args in (["list"], ["run", "-m", "fusemax", "-w", "bert-base"]):
        done = subprocess.run([sys.executable, "-S", "-m", "archsim", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "a source checkout's folder that is not installed" in done.stderr
        assert str(tmp_path / "archsim") in done.stderr
        assert "Traceback" not in done.stderr
