"""A sweep's stored reason names a spec by its name, never by its file (audit s45, README: 'A stored reason is the
field and message without the spec file's path, ... so a store reused from a moved spec exports the same bytes').

Before: a tiling refusal said `M0=256 from /work/main/mappings/fusemax.yaml` (a checkout's path; a wheel's is
another, a user mapping's moves with the sweep), and a serving refusal `expected at most layers (32 in
/tmp/.../wl.yaml: ...)`. Now `M0=256 from mapping fusemax` and `(32 in llama3-8b: ...)`. The expected numbers are the
specs': FuseMax's `set: {M0: 256}` does not divide 1000 tokens (1024 = 4 x 256 does); Llama 3 8B has 32 layers (64
stages cannot each hold one) and 32 heads (3 does not divide them, 1 does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import archsim
from archsim import library
from archsim.cascade.bind import bind
from archsim.cli import main
from archsim.dse.spec import load_sweep
from archsim.dse.store import read_records
from archsim.dse.sweep import run_sweep
from archsim.errors import SpecError

LIBRARY = str(Path(archsim.__file__).resolve().parent.parent)  # the folder holding mappings/, workloads/, einsum/
# a copy of the library's fusemax mapping beside the sweep: its reason named the copy's path
TILED = {"name": "tiled", "mapping": "mymap.yaml", "workload": "bert-base",
         "axes": {"workload.seq_len": [1000, 1024]}, "objectives": ["latency_s", "energy_pj"]}
# a copy of llama3-8b beside the sweep, served by vLLM on H100s at pipeline and tensor degrees it cannot take
SERVED = {"name": "served", "system": "vllm-h100", "workload": "mywl.yaml",
          "serving": {"rate_per_s": 2.0, "requests": 2, "lengths": "alpaca", "seed": 0, "max_batch": 8},
          "axes": {"system.parallelism.pp": [1, 64], "system.parallelism.tp": [1, 3]}}


def _reasons_in(folder: Path, data: dict, copies: dict[str, Path], write_yaml) -> list[str]:
    """The stored reasons (by key) of the sweep `data` written in `folder`, with `copies` (name -> library file)
    copied beside it."""
    for name, original in copies.items():
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(original, folder / name)
    spec = write_yaml(folder / "sweep.yaml", data)
    run_sweep(load_sweep(spec), folder / "s.sqlite")
    return read_records(folder / "s.sqlite").sort_values("key").reason.tolist()


def _moved_reasons(tmp_path: Path, data: dict, copies: dict[str, Path], write_yaml) -> list[str]:
    """The reasons of the sweep run from two folders, checked equal and free of the folders' and library's paths."""
    here, there = (_reasons_in(tmp_path / folder, data, copies, write_yaml) for folder in ("here", "moved/away"))
    assert here == there
    for reason in here:
        assert str(tmp_path) not in reason and LIBRARY not in reason and ".yaml" not in reason, reason
    return [reason for reason in here if reason]


def test_a_tiling_reason_names_the_mapping_not_its_file(tmp_path, write_yaml):
    copies = {"mymap.yaml": Path(library.load_mapping_spec("fusemax").source)}
    (refused,) = _moved_reasons(tmp_path, TILED, copies, write_yaml)
    assert refused.startswith("partition.M: M=1000 is not divisible by M0=256 (seq_len=1000 from the sweep's sets "
                              "and axes, M0=256 from mapping mymap)"), refused


def test_a_serving_degree_reason_names_the_workload_not_its_file(tmp_path, write_yaml):
    copies = {"mywl.yaml": Path(library.load_workload_spec("llama3-8b").path)}
    refused = _moved_reasons(tmp_path, SERVED, copies, write_yaml)
    assert sorted(set(refused)) == [
        "parallelism.pp: expected at most layers (32 in llama3-8b: a stage holds at least one), got 64",
        "parallelism.tp: expected a divisor of heads (32 in llama3-8b), got 3"]


def test_the_cli_line_keeps_the_file_and_names_the_mapping():
    """`archsim run` still starts its one line with the file blamed (the cascade, whose partition fails)."""
    result = CliRunner().invoke(main, ["run", "-m", "fusemax", "-w", "bert-base", "--set", "seq_len=1000"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    cascade = library.load_cascade_spec("attention-1pass").source
    assert result.output.startswith(f"error: {cascade}: partition.M: M=1000 is not divisible by M0=256 "
                                    "(seq_len=1000 from --set, M0=256 from mapping fusemax); "), result.output


@pytest.mark.parametrize(("cascade", "sets", "rule", "origin"), [
    ("minference-block-sparse", {"seq_len": 32, "block": 64}, "(ranks.I: seq_len // block)",
     "seq_len=32 from the sweep's sets and axes"),
    ("ulysses-attention", {"devices": 3}, "(ranks.HL: heads / devices)", "heads=32 from workload llama3-8b"),
])
def test_a_split_reason_names_the_cascade_and_workload_not_their_files(cascade, sets, rule, origin):
    """Whole blocks and even head splits said `(ranks.I: seq_len // block, <the cascade's file>)` and `heads=32 from
    <the workload's file>`; the cascade is named at the start of the clause (`minference-block-sparse splits`)."""
    spec = library.load_cascade_spec(cascade)
    with pytest.raises(SpecError) as caught:
        bind(spec, library.load_workload_spec("llama3-8b"), sets, "the sweep's sets and axes")
    message = caught.value.message
    assert f"{cascade} splits" in message and rule in message and origin in message, message
    assert LIBRARY not in message and ".yaml" not in message, message


def test_a_named_source_survives_pickling() -> None:
    """A Dask worker's SpecError crosses processes pickled: a named source keeps its file and its name (review
    helper-551: `_Named` could not be unpickled or copied)."""
    import copy
    import pickle

    from archsim.cascade.bind import _Named

    named = _Named("/x/m.yaml", "mapping m")
    for twin in (pickle.loads(pickle.dumps(named)), copy.deepcopy(named)):
        assert (str(twin), twin.name) == ("/x/m.yaml", "mapping m")
