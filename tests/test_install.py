"""A non-editable install into a new virtual environment finds every library spec when run from another
directory. The new venv reuses this environment's dependencies (a .pth line), not its archsim. No package index is
needed (an offline CI machine): the wheel is built here, with this environment's setuptools (pyproject.toml's
build requirement), and installed from the file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from archsim import library

REPO = Path(__file__).resolve().parents[1]


def test_wheel_install_lists_the_library(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "reports", ".pytest_cache", ".hypothesis"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    offline = ["--no-index", "--no-deps", "--no-build-isolation"]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", tmp_path / "dist", source],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("archsim-*.whl"))
    installed = subprocess.run([python, "-m", "pip", "install", "-q", *offline, wheel], capture_output=True,
                               text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    shutil.rmtree(source)  # the installed copy must not need the source tree
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([env_dir / "bin" / "archsim", "list", "--json"], cwd=elsewhere,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["cascades"] == library.names("cascades")
    assert listing["workloads"] == library.names("workloads")
    where = subprocess.run([python, "-c", "import archsim; print(archsim.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(env_dir)), where
    assert sys.prefix not in where
    count = ("import importlib.resources as r; print(*(len(list(r.files(p).iterdir())) for p in "
             "('archsim.gpu.calibration', 'archsim.gpu.reference', 'archsim.systems.reference.fusemax', "
             "'archsim.systems.chip_presets', 'archsim.systems.link_presets', 'archsim.systems.system_presets', "
             "'archsim.systems.topology_presets')))")
    data = subprocess.run([python, "-c", count],
                          cwd=elsewhere, capture_output=True, text=True, check=True).stdout.split()
    assert all(int(n) >= 1 for n in data), data  # the calibration and the reference CSVs ship in the wheel
    maps = ("import importlib.resources as r; print(*sorted(e.name for e in "
            "r.files('archsim.library.workloads.patterns').iterdir() if e.name.endswith('.yaml')))")
    shipped = subprocess.run([python, "-c", maps], cwd=elsewhere, capture_output=True, text=True,
                             check=True).stdout.split()
    assert shipped == sorted(p.name for p in (REPO / "workloads" / "patterns").glob("*.yaml"))  # the pattern maps
