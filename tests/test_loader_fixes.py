"""Fixes to the architecture and workload loaders, `archsim run`'s text and the workload/cascade checks of a point:
numbers YAML 1.1 reads as text are named as such, the run's energy is shown by component and action, a dense FFN
on a mixture-of-experts model and kv_heads that do not divide heads are refused with the advice that works."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from archsim import library

FUSEMAX_ARCH = library.find("architectures", "fusemax")
MIXTRAL = library.find("workloads", "mixtral-8x7b")


def _edited(source: Path, old: str, new: str, path: Path) -> Path:
    """`source`'s text with the first `old` replaced by `new` (kept as YAML text: `17e0` stays unquoted)."""
    text = source.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "where", "hint"), [
    ("mac: 17.1645", "mac: 17e0", "units.array2d.energy.actions_pj.mac", "write 1.7e+1"),
    ("bandwidth_bytes_per_s: 429496729600", "bandwidth_bytes_per_s: 4e11", "memories.DRAM.bandwidth_bytes_per_s",
     "write 4.0e+11"),
    ("leak: 0.844117", "leak: 8e-1", "memories.GlobalBuffer.energy.actions_pj.leak", "write 8.0e-1"),
    ("access_bits: 64", "access_bits: 64e0", "memories.DRAM.access_bits", "write 6.4e+1"),
])
def test_an_architecture_number_yaml_reads_as_text_is_named_so(tmp_path, cli, old, new, where, hint):
    """YAML 1.1 reads `17e0` (no dot, no exponent sign) as a string: the error says so and how to write the number,
    as the GPU, system, link and sweep loaders do, instead of reading as if a non-number were written."""
    path = _edited(FUSEMAX_ARCH, old, new, tmp_path / "arch.yaml")
    out = cli("check", str(path), expect=2).output
    assert out.count("\n") == 1 and f"{path}: {where}: " in out and f"(YAML reads this as text: {hint})" in out, out


def test_a_workload_size_yaml_reads_as_text_is_named_so(tmp_path, cli):
    path = _edited(library.find("workloads", "bert-base"), "seq_len: 1024", "seq_len: 2e3", tmp_path / "w.yaml")
    out = cli("check", str(path), expect=2).output
    assert out.count("\n") == 1 and f"{path}: params.seq_len: " in out, out
    assert "got '2e3' (YAML reads this as text: write 2.0e+3)" in out, out


def test_run_prints_energy_by_component_and_action_summing_to_the_total(cli, cli_json):
    """The text shows the whole `energy_by` (compute, memory, leakage) grouped by component, largest first; the
    components' totals sum to the energy shown (to the 4 digits printed), and the per-Einsum column, compute energy
    only, says so. `--json` keeps its keys."""
    args = ("run", "--mapping", "fusemax", "--workload", "bert-base", "--set", "seq_len=4096")
    out = cli(*args).output
    data = cli_json(*args)
    total = float(re.search(r"energy\s+(\S+) pJ, by component and action:", out).group(1))
    assert total == pytest.approx(data["energy_pj"], rel=1e-5)
    rows = re.findall(r"^    (\w+)\s+(\S+) pJ\s+\((.*)\)$", out, re.M)
    components = {c for c, _ in (key.split(".") for key in data["energy_by"])}
    assert {c for c, _, _ in rows} == components
    shown = [float(pj) for _, pj, _ in rows]
    assert shown == sorted(shown, reverse=True) and sum(shown) == pytest.approx(total, rel=1e-3)
    for component, pj, actions in rows:  # each component's actions are its energy_by entries
        mine = {a: v for key, v in data["energy_by"].items() for c, a in [key.split(".")] if c == component}
        assert float(pj) == pytest.approx(sum(mine.values()), rel=1e-3)
        assert [a.split()[0] for a in actions.split(", ")] == sorted(mine, key=lambda a: -mine[a])
    assert "compute_pj" in out and "energy_pj" not in out
    assert {"energy_pj", "energy_by", "einsums"} <= set(data) and "energy_pj" in data["einsums"][0]


def test_a_dense_ffn_on_a_mixture_of_experts_model_is_refused(cli):
    """Mixtral routes each token to 2 of 8 experts: ffn-swiglu bound to it counts one expert per token (3 GEMMs of
    B*P*D*S = 16*4096*4096*14336 MACs each, 3.848e12, half the routed work), so it is refused naming the file and
    params.experts, with the moe-experts cascade and its token count (16 x 4096 = 65536)."""
    out = cli("analyze", "ffn-swiglu", "--workload", "mixtral-8x7b", expect=2).output
    assert f"{MIXTRAL}: params.experts: " in out and "moe-experts cascade with --set tokens=65536" in out, out
    cli("analyze", "moe-experts", "--workload", "mixtral-8x7b", "--set", "tokens=65536")


def test_run_refuses_a_dense_ffn_on_a_mixture_of_experts_model(tmp_path, cli):
    """A MoE workload that names no block (so the block check passes) on the GELU FFN's mapping."""
    path = tmp_path / "moe.yaml"
    path.write_text("".join(line for line in MIXTRAL.read_text().splitlines(keepends=True)
                            if not line.startswith("block:")))
    out = cli("run", "--mapping", "linear-ffn-fusemax", "--workload", str(path), expect=2).output
    assert out.count("\n") == 1 and f"{path}: params.experts: " in out and "moe-experts" in out, out


def test_the_dense_layers_of_a_model_with_moe_every_run_a_dense_ffn(cli_json, cli):
    """GLaM's dense layers (moe_every 2) are 16384 wide (dense_ffn_dim): ffn-swiglu at that width is one of them,
    3 GEMMs of 16 * 4096 * 4096 * 16384 MACs = 1.3194e13; at the experts' width (its ffn_dim) it is refused."""
    out = cli("analyze", "ffn-swiglu", "--workload", "glam-143b", expect=2).output
    assert "params.experts" in out and "--set ffn_dim=16384" in out, out
    analysis = cli_json("analyze", "ffn-swiglu", "--workload", "glam-143b", "--set", "ffn_dim=16384")
    macs = sum(ops.get("mac", 0) for ops in analysis["ops"].values())
    assert macs == 3 * 16 * 4096 * 4096 * 16384


def test_analyze_applies_the_block_check(cli):
    """Llama-3-8B is a llama block (SwiGLU FFN): the GPT block's GELU FFN is refused by analyze as by run."""
    out = cli("analyze", "ffn", "--workload", "llama3-8b", expect=2).output
    assert ": block: llama3-8b is a llama block, whose dense FFN is cascade ffn-swiglu" in out, out
    cli("analyze", "ffn-swiglu", "--workload", "llama3-8b")


def test_kv_heads_that_do_not_divide_heads_are_refused_before_the_grouped_query_advice(cli):
    """BERT-base has 12 heads: 5 K/V heads cannot group them (12 / 5 is no whole number), so the advice to use a
    grouped-query mapping would only meet a second error; 4 groups them by 3, and gets that advice."""
    base = ("run", "--mapping", "fusemax", "--workload", "bert-base", "--set")
    out = cli(*base, "kv_heads=5", expect=2).output
    assert "--set: kv_heads: " in out and "the divisors of 12 nearest 5 are 4 and 6" in out, out
    assert "fusemax-gqa" not in out, out
    out = cli(*base, "kv_heads=4", expect=2).output
    assert "(grouped-query)" in out and "--mapping fusemax-gqa" in out, out


def test_a_set_width_is_not_taken_for_the_dense_layers_of_a_model(tmp_path, cli):
    """A MoE model with dense layers (moe_every 2) but no dense_ffn_dim has dense layers of its ffn_dim: a --set of
    another width is no dense layer of it, and is refused (it was taken as the dense layers' width)."""
    text = (Path(__file__).resolve().parents[1] / "workloads" / "glam-143b.yaml").read_text()
    path = tmp_path / "glam-nodense.yaml"
    path.write_text("\n".join(line for line in text.splitlines() if "dense_ffn_dim" not in line) + "\n")
    out = cli("analyze", "ffn-swiglu", "--workload", str(path), "--set", "ffn_dim=999", expect=2).output
    assert "params.experts" in out, out
