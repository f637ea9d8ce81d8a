"""A GPU preset may derive from another (`base:`), as a system spec can (`archsim.gpu.load`, module docstring): the
base is loaded and validated first, the derived file's keys laid over it (`archsim.spec_files.laid_over`, the rule
system specs use); `name` is required, `description` and `source` are inherited, `aliases` are not (two presets
answering one label would make `gpu_for` ambiguous), a cycle is refused at `base`, and an edited base reaches the
presets derived from it. AttAcc's A100a (`a100a-hbm3`) had repeated all 20 numbers of the A100 80GB preset to change
one; it is now that preset with another `dram_bytes_per_s`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim import library
from archsim.cli import main
from archsim.errors import SpecError
from archsim.gpu.load import gpu_for, gpu_from_dict, load_gpu
from archsim.spec_files import laid_over

A100 = "a100-80gb-sxm4"
OWN = ("name", "description", "source", "citation", "aliases")  # a GPU's fields that are not numbers of the chip


def _write(folder: Path, name: str, data: dict) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def _numbers(gpu) -> dict:
    return {k: v for k, v in dataclasses.asdict(gpu).items() if k not in OWN}


def test_a_derived_preset_is_its_base_with_its_keys_laid_over(tmp_path) -> None:
    path = _write(tmp_path, "fast.yaml", {"base": A100, "name": "fast", "dram_bytes_per_s": 3.0e12,
                                          "tensor_flops_per_s": {"fp8": 624.0e12}})
    derived, base = load_gpu(path), load_gpu(A100)
    assert derived.name == "fast" and derived.source == str(path)
    assert derived.dram_bytes_per_s == 3.0e12 and derived.tensor_flops_per_s == {**base.tensor_flops_per_s,
                                                                                 "fp8": 624.0e12}
    assert _numbers(derived) == {**_numbers(base), "dram_bytes_per_s": 3.0e12,
                                 "tensor_flops_per_s": derived.tensor_flops_per_s}


def test_description_and_source_are_inherited_aliases_are_not(tmp_path) -> None:
    base = load_gpu(A100)
    derived = load_gpu(_write(tmp_path, "mine.yaml", {"base": A100, "name": "mine"}))
    assert (derived.description, derived.citation) == (base.description, base.citation) and base.aliases
    assert derived.aliases == ()
    assert gpu_for(base.aliases[0]) == base  # the label still names one preset
    own = load_gpu(_write(tmp_path, "own.yaml", {"base": A100, "name": "own", "description": "d", "source": "s",
                                                 "aliases": ["My GPU"]}))
    assert (own.description, own.citation, own.aliases) == ("d", "s", ("My GPU",))


def test_a_base_path_is_read_beside_the_derived_file_and_may_derive_itself(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    _write(folder, "mid.yaml", {"base": A100, "name": "mid", "power_w": 300})
    top = _write(folder, "top.yaml", {"base": "mid.yaml", "name": "top", "power_w": None, "sm_count": 100})
    monkeypatch.chdir(tmp_path)  # not the specs' folder
    with pytest.raises(SpecError) as raised:
        load_gpu(top)  # power_w: null removes the key the chain set: it is missing
    assert raised.value.source == str(top) and raised.value.where == "power_w"
    _write(folder, "top.yaml", {"base": "mid.yaml", "name": "top", "sm_count": 100})
    gpu = load_gpu(top)
    assert (gpu.power_w, gpu.sm_count, gpu.fp32_flops_per_s) == (300, 100, load_gpu(A100).fp32_flops_per_s)


def test_editing_the_base_reaches_the_derived_preset(tmp_path) -> None:
    base = _write(tmp_path, "base.yaml", yaml.safe_load(library.find("GPU presets", A100, "archsim.gpu.presets")
                                                        .read_text()))
    derived = _write(tmp_path, "derived.yaml", {"base": "base.yaml", "name": "derived"})
    assert load_gpu(derived).power_w == 400
    _write(tmp_path, "base.yaml", {**yaml.safe_load(base.read_text()), "power_w": 350})
    assert load_gpu(derived).power_w == 350


@pytest.mark.parametrize("files", [{"a.yaml": "a.yaml"}, {"a.yaml": "b.yaml", "b.yaml": "a.yaml"}],
                         ids=["itself", "two"])
def test_a_cycle_of_bases_is_refused_at_base(tmp_path, files) -> None:
    for name, base in files.items():
        _write(tmp_path, name, {"base": base, "name": name})
    with pytest.raises(SpecError) as raised:
        load_gpu(tmp_path / "a.yaml")
    assert raised.value.where == "base" and "cycle" in raised.value.message


def test_a_missing_base_names_the_derived_file_and_base(tmp_path) -> None:
    for base, said in (("no-such-gpu", "no-such-gpu"), ("gone.yaml", "no such file")):
        path = _write(tmp_path, "d.yaml", {"base": base, "name": "d"})
        with pytest.raises(SpecError) as raised:
            load_gpu(path)
        assert (raised.value.source, raised.value.where) == (str(path), "base") and said in raised.value.message


def test_a_bad_base_is_refused_naming_its_own_file(tmp_path) -> None:
    bad = _write(tmp_path, "bad.yaml", {"base": A100, "name": "bad", "clock_hz": 1980.0})
    derived = _write(tmp_path, "d.yaml", {"base": "bad.yaml", "name": "d", "clock_hz": 1.98e9})
    with pytest.raises(SpecError) as raised:
        load_gpu(derived)
    assert (raised.value.source, raised.value.where) == (str(bad), "clock_hz")


def test_a_derived_preset_names_itself(tmp_path) -> None:
    with pytest.raises(SpecError) as raised:
        load_gpu(_write(tmp_path, "d.yaml", {"base": A100, "dram_bytes_per_s": 3.0e12}))
    assert raised.value.where == "name" and "base" in raised.value.message
    with pytest.raises(SpecError) as raised:
        gpu_from_dict({"base": 7, "name": "x"})
    assert raised.value.where == "base"


def test_a100a_is_the_a100_with_hbm3() -> None:
    """The rewritten preset has the values of the copy it replaced, field by field."""
    a100a, a100 = load_gpu("a100a-hbm3"), load_gpu(A100)
    assert _numbers(a100a) == {**_numbers(a100), "dram_bytes_per_s": 3.352e12}
    assert a100a.citation.startswith("AttAcc artifact") and a100a.aliases == () and a100a.name == "a100a-hbm3"
    data = yaml.safe_load(Path(a100a.source).read_text())
    assert data["base"] == A100 and "sm_count" not in data


def test_archsim_check_tells_a_derived_gpu_preset(tmp_path) -> None:
    path = _write(tmp_path, "mine.yaml", {"base": A100, "name": "mine", "dram_bytes_per_s": 3.0e12})
    for args in (["check", "a100a-hbm3"], ["check", str(path)]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and ": gpu " in result.output, result.output


def test_archsim_check_tells_a_misspelt_gpu_base_by_the_files_own_keys(tmp_path) -> None:
    """A GPU preset with a misspelt base is checked as a GPU (its own keys are a GPU's), so the error lists the GPU
    presets (audit helper-409: it had said the base was not a system preset); a system spec deriving from a system
    is still a system."""
    path = _write(tmp_path, "typo.yaml", {"base": "h100-sxm", "name": "typo", "power_w": 600})
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2 and "not a GPU preset" in result.output and "h100-sxm5" in result.output
    system = _write(tmp_path, "sysd.yaml", {"base": "attacc", "name": "sysd",
                                            "schedule": {"kind": "staggered", "micro_batches": 1}})
    result = CliRunner().invoke(main, ["check", str(system)])
    assert result.exit_code == 0 and ": system sysd" in result.output, result.output


def test_the_merge_rule_is_one_for_systems_and_gpus() -> None:
    from archsim.systems import system_spec

    assert system_spec.laid_over is laid_over
    assert laid_over({"a": {"b": 1, "c": 2}, "d": 3, "e": [1]}, {"a": {"b": 5}, "d": None, "e": [2]}) == {
        "a": {"b": 5, "c": 2}, "e": [2]}


def test_a_base_of_another_kind_is_refused_at_base_of_the_derived_file(tmp_path) -> None:
    """A chip or system preset named as a GPU's base is refused naming the derived file and `base` (audit
    helper-409: the error had named the packaged chip preset's own keys, as though that file were broken)."""
    from archsim.systems.chip import load_chip

    chip = Path(load_chip("attacc-pim").source)
    derived = tmp_path / "bchip.yaml"
    derived.write_text(f"base: {chip}\nname: bchip\nsm_count: 100\n")
    with pytest.raises(SpecError) as refused:
        load_gpu(str(derived))
    assert refused.value.source == str(derived) and refused.value.where == "base"
    assert "not a GPU preset" in refused.value.message
