"""Bad input a fuzzing audit found mishandled (contract: exit 2, one line naming the file, the field and what was
expected): a pattern map's `pattern` given as a mapping or list crashed (an unhashable type); a link or GPU file a
topology names by path lost the inner file and field; `archsim check` passed a system whose own degrees every
command refuses; a calibration's notes took any type and unknown keys; a sweep with its target block deleted
was told only that `mapping` is required."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.dse.spec import SWEEPS_PACKAGE
from archsim.errors import SpecError
from archsim.gpu.params import calibration_from_dict, load_calibration, packaged_path, packaged_versions
from archsim.systems.system_spec import PRESETS_PACKAGE as SYSTEMS
from archsim.systems.system_spec import load_system, system_names
from archsim.systems.topology import load_topology, topology_from_dict
from archsim.workload_patterns import pattern_map_from_dict


def _one_line(result) -> str:
    text = result.output.strip()
    assert "\n" not in text and "Traceback" not in text and "internal error" not in text, text
    return text


# ---------------------------------------------------------------------------------- 1. a pattern that is no name
MAP = {"name": "x", "model": "x", "description": "x", "source": "x", "layers": 32, "heads": 8, "head_kind": "kv"}


@pytest.mark.parametrize("pattern", [{"a": 1}, ["streaming"]])
def test_a_pattern_given_as_a_mapping_or_list_is_refused_naming_the_field(pattern) -> None:
    """`pattern not in SETTINGS` hashed the value: a mapping or list was a TypeError (exit 1, 'internal error')."""
    with pytest.raises(SpecError) as error:
        pattern_map_from_dict({**MAP, "patterns": [{"pattern": pattern, "heads": 256}]}, "p3.yaml")
    assert (error.value.source, error.value.where) == ("p3.yaml", "patterns[0].pattern")
    assert error.value.message.startswith("expected one of vertical_slash, block_sparse, a_shape, streaming")


def test_check_refuses_a_pattern_map_whose_pattern_is_a_mapping(tmp_path, cli) -> None:
    path = tmp_path / "p3.yaml"
    path.write_text(yaml.safe_dump({**MAP, "patterns": [{"pattern": {"a": 1}, "heads": 256}]}))
    result = cli("check", str(path), expect=2)
    assert _one_line(result).startswith(f"error: {path}: patterns[0].pattern: expected one of ")


# ------------------------------------------------------------------ 2. a topology's link or GPU file, its own field
def _preset_without(kind: str, name: str, package: str, key: str, folder: Path, file: str) -> None:
    data = yaml.safe_load(library.find(kind, name, package).read_text())
    del data[key]
    (folder / file).write_text(yaml.safe_dump(data))


def _write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _topology(**changes) -> dict:
    return {"name": "t", "description": "t", "source": "t", "gpu": "h100-sxm5",
            "levels": [{"link": "nvlink4-h100", "devices": 8}, {"link": "ib-ndr-400g"}], **changes}


def test_a_topologys_link_file_missing_a_field_names_that_file_and_field(tmp_path) -> None:
    """It said `levels[0].link: no link 'nv.yaml': missing` (a system's links.tp names `nv.yaml: latency_s`)."""
    _preset_without("links", "nvlink4-h100", "archsim.systems.link_presets", "latency_s", tmp_path, "nv.yaml")
    source = _write(tmp_path / "topo.yaml", _topology(levels=[{"link": "nv.yaml", "devices": 8},
                                                               {"link": "ib-ndr-400g"}]))
    with pytest.raises(SpecError) as error:
        load_topology(source)
    assert (error.value.source, error.value.where) == (source, "levels[0].link")
    assert error.value.message == f"{tmp_path / 'nv.yaml'}: latency_s: missing", error.value.message


def test_a_topologys_gpu_file_missing_a_field_names_that_file_and_field(tmp_path) -> None:
    _preset_without("GPU presets", "h100-sxm5", "archsim.gpu.presets", "sm_count", tmp_path, "g2.yaml")
    source = _write(tmp_path / "topo.yaml", _topology(gpu="g2.yaml"))
    with pytest.raises(SpecError) as error:
        load_topology(source)
    assert (error.value.source, error.value.where) == (source, "gpu")
    assert error.value.message.startswith(f"{tmp_path / 'g2.yaml'}: sm_count: missing"), error.value.message


def test_a_topologys_unknown_link_name_still_names_the_known_presets(tmp_path) -> None:
    with pytest.raises(SpecError) as error:
        topology_from_dict(_topology(levels=[{"link": "nvlink9", "devices": 8}, {"link": "ib-ndr-400g"}]), "t.yaml")
    assert error.value.where == "levels[0].link"
    assert error.value.message.startswith("nvlink9: not a link preset (known: ")


# ------------------------------------------------------------------------ 3. check tests the spec's own degrees
def _lamina_at(tmp_path: Path, tp: int) -> Path:
    data = yaml.safe_load(library.find("system presets", "lamina", SYSTEMS).read_text())
    data["parallelism"]["tp"] = tp
    path = tmp_path / "l4.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_warns_of_a_system_whose_own_tp_a_run_refuses(tmp_path, cli) -> None:
    """Lamina's replica is its 2 compute GPUs (tp 2 over the node's NVLink, [lm] §3.5): tp 4 needs 4 in a node.
    `check` said ok with no word of it; now it says ok (a sweep's axes or --tp may set other degrees) with the
    refusal `simulate` gives as a warning."""
    path = _lamina_at(tmp_path, 4)
    said = (f"{path}: devices.compute.count: expected at least 4 (a TP group in one node: its all-reduce runs "
            "on the node's link tp; parallelism.tp = 4), got 2")
    checked = _one_line(cli("check", str(path)))
    assert checked.startswith(f"ok  {path}: system lamina (warning: a run at its own degrees is refused")
    assert said in checked
    simulated = cli("simulate", "-s", str(path), "-w", "llama3-70b", "--rate", "1", "--requests", "4", expect=2)
    assert _one_line(simulated) == f"error: {said}"


def test_check_warns_of_a_by_workload_entry_the_node_cannot_hold(tmp_path, cli) -> None:
    """vllm-h100's nodes hold 8 GPUs on NVLink (links.tp): a by_workload TP group of 16 does not fit one."""
    data = yaml.safe_load(library.find("system presets", "vllm-h100", SYSTEMS).read_text())
    data["parallelism"]["by_workload"]["llama3-70b"]["tp"] = 16
    path = tmp_path / "v16.yaml"
    path.write_text(yaml.safe_dump(data))
    text = _one_line(cli("check", str(path)))
    assert text.startswith(f"ok  {path}: ") and f"refused, unless --tp or a sweep's axes set others: {path}: " \
        "devices.gpu.count: expected at least 16 (" in text, text
    assert "parallelism.by_workload.llama3-70b.tp = 16" in text, text


def test_every_shipped_system_passes_check_without_a_warning() -> None:
    from archsim.commands.listing import _degrees_warning

    assert {name: _degrees_warning(load_system(name)) for name in system_names()} == dict.fromkeys(system_names(), "")


@pytest.mark.parametrize("name", system_names())
def test_every_shipped_system_passes_check(name: str, cli) -> None:
    cli("check", str(library.find("system presets", name, SYSTEMS)))
    assert load_system(name).name == name


@pytest.mark.parametrize("name", library.names("sweeps", SWEEPS_PACKAGE))
def test_every_shipped_sweep_passes_check(name: str, cli) -> None:
    cli("check", str(library.find("sweeps", name, SWEEPS_PACKAGE)))


# ------------------------------------------------------------------------------- 4. a calibration's typed notes
def _v2() -> dict:
    return yaml.safe_load(packaged_path("v2").read_text())


def _set(data: dict, path: str, value) -> dict:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(("path", "value", "says"), [
    ("families.fa2.kernels", 3, "expected text"),
    ("families.fa2.kernels", ["FlashAttention-2"], "expected text"),
    ("families.fa2.meaning.launch_s", {"a": 1}, "expected text"),
    ("families.fa2.meaning", ["launch_s"], "expected a mapping"),
    ("families.fa2.meaning.no_such_param", "x", "unknown key"),
    ("families.fa2.fit.rows", "18", "expected a whole number"),
    ("families.fa2.fit.rows", True, "expected a whole number"),
    ("families.fa2.fit.time_mape_pct", "3.4", "expected a finite number >= 0"),
    ("families.fa2.fit.log_rmse", float("nan"), "expected a finite number >= 0"),
    ("families.fa2.fit.kept_from_base", ["no_such_param"], "expected a list of parameter names of fa2"),
    ("families.fa2.fit.note", 7, "expected text"),
    ("families.pytorch.fit.not_identifiable", "gemm_efficiency", "expected a list of parameter names"),
    ("families.pytorch.fit.not_identifiable", [1], "expected a list of parameter names"),
    ("families.fa2.fit.mape", 1.0, "unknown key"),
    ("measurements.file", 3, "expected text"),
    ("measurements.rows", 2.5, "expected a whole number"),
    ("measurements.gpus", ["h200"], "expected a mapping"),
    ("measurements.typo", 1, "unknown key"),
    ("measurements.kept_from.calibration", 1, "expected text"),
    ("measurements.kept_from.file", ["a.csv"], "expected text"),
    ("measurements.kept_from.typo", 1, "unknown key"),
])
def test_a_calibrations_notes_are_typed_and_their_keys_known(path: str, value, says: str) -> None:
    with pytest.raises(SpecError) as error:
        calibration_from_dict(_set(_v2(), path, value), "cal.yaml")
    assert error.value.source == "cal.yaml"
    assert error.value.where.startswith(path), str(error.value)
    assert says in error.value.message, str(error.value)


@pytest.mark.parametrize("version", packaged_versions())
def test_the_shipped_calibrations_pass(version: str, cli) -> None:
    assert load_calibration(version).version >= 1
    cli("check", str(packaged_path(version)))


# ---------------------------------------------------------------------- 5. a sweep with its target block deleted
@pytest.mark.parametrize("name", ["seqpar-scaling", "neupims-channels"])
def test_a_sweep_missing_its_target_says_which_keys_name_one(name: str, tmp_path, cli) -> None:
    """A sweep of multi-device attention (or of a system) without its block read as an architecture sweep and
    said only `mapping: required`; the message names the keys the other kinds of sweep take."""
    data = yaml.safe_load(library.find("sweeps", name, SWEEPS_PACKAGE).read_text())
    data.pop("parallel", None)
    data.pop("system", None)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    text = _one_line(cli("check", str(path), expect=2))
    assert text.startswith(f"error: {path}: mapping: required in a sweep of an architecture (a sweep names system: "
                           "for a system, parallel: for multi-device attention or sparse: for sparse attention)"), text
