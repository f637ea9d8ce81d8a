"""benchmarks/analytical_speed.py clears archsim's caches by name to time cold loads; a renamed cache broke it
without a failing test (perf audit helper-225: `library._parsed` had been replaced). Its clearing runs here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from archsim import library

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "analytical_speed.py"


def test_the_speed_benchmark_clears_the_caches_it_names() -> None:
    spec = importlib.util.spec_from_file_location("analytical_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    library.load_workload_spec("bert-base")
    assert library._PARSED  # something to clear
    module.clear_caches()
    assert not library._PARSED
