"""Duplex (issue 15): the reproduction's headline over the paper's grid, the Bank-PIM comparison, the QPS sweep and its
saturation rate, and the report page.

Expected values: the paper's findings (../shared/reference/pim.md §2.4), the issue's bounds, and hand derivations
of the saturation interpolation and the Op/B closed forms (stated in each test).
"""

from __future__ import annotations

import statistics

import pandas as pd
import pytest
from click.testing import CliRunner

from archsim.cli import main
from archsim.report.duplex import throughput_rows, write_duplex_report
from archsim.systems import duplex_figures, duplex_reproduce
from archsim.systems.requests import gaussian_requests, poisson_requests


@pytest.fixture(scope="module")
def reproduction(run_all_once):
    return run_all_once("duplex")  # (records, headline, qps records): the whole reproduction, about a minute


def test_the_saturation_rates_read_as_bounds_where_the_sweep_ends(run_all_once) -> None:
    """`reproduce duplex` said 'saturates at at least 16.0 req/s' (audit helper-463): each bound now reads once."""
    run_all_once("duplex")  # computed (once for the run) before `run_all` is patched to read it

    def computed(as_artifact: bool = False):
        assert not as_artifact
        return run_all_once("duplex")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(duplex_reproduce, "run_all", computed)
        result = CliRunner().invoke(main, ["reproduce", "duplex"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "read off the sweep's TTFT it saturates" in line]
    assert len(lines) == len(duplex_reproduce.QPS_SYSTEMS) and not any("at at" in line for line in lines)
    assert any("saturates at about " in line for line in lines)


GRID_POINTS = 5 * 2 * 3  # models x (L_in, L_out) x batches of duplex_reproduce.PAPER_GRID


def test_the_reproduction_writes_the_issues_keys(reproduction) -> None:
    records, headline, _ = reproduction
    # PAPER_GRID x 2 systems; GRID x 3 (Duplex, +PE, Bank-PIM); 2xGPU on LATENCY_GRID; the Bank-PIM comparison x 2
    pair, others, latency, bank = 2 * GRID_POINTS, 3 * 2 * 2, 2, 2 * 2
    assert len(records) == pair + others + latency + bank
    keys = {"model", "system", "lin", "lout", "batch", "throughput_tok_s", "tbt_p50_s", "tbt_p99_s", "e2e_s",
            "energy_j_per_token", "rank_s_per_token", "preemptions", "batch_reached"}  # the issue's, the ranks'
    # seconds per token, and how far a point fell short of its batch
    assert all(set(r) == keys for r in records)
    assert headline["points"] == GRID_POINTS
    points = [(r["model"], r["lin"], r["lout"], r["batch"], r["system"]) for r in records]
    assert len(set(points)) == len(points)  # no system runs a point twice, so every record has one GPU record
    assert throughput_rows(records)["gpu_tok_s"].notna().all()


def test_expert_co_processing_does_not_lose_to_duplex(reproduction) -> None:
    """+PE takes the best split of each rank's experts between the xPU and the Logic-PIM, and co-processing
    overlaps the attention; Duplex runs each rank's whole experts on one unit (both without +ET, so a step whose
    tokens reach 5 of Mixtral's 8 experts waits for the rank holding two of them on both). The paper: +PE is 1.04x
    Duplex on average (pim.md §2.4); here within 1 % at every point and on average (mean 1.0036x)."""
    pe = duplex_reproduce.over_baseline(reproduction[0], "duplex-pe", "throughput_tok_s", baseline="duplex")
    assert len(pe) == 4 and sum(pe) / len(pe) >= 0.99 and min(pe) >= 0.99


def test_mean_throughput_over_gpu_is_the_papers(reproduction) -> None:
    """Duplex+PE+ET over the GPU, mean over the paper's grid (five models): within 15 % of 2.07x (pim.md §2.1)."""
    assert reproduction[1]["throughput_mean"]["ours"] == pytest.approx(2.07, rel=0.15)
    assert reproduction[1]["throughput_mean"]["within"]


def test_the_mean_follows_the_models_mix(reproduction) -> None:
    """MoE models with few tokens per expert gain most, the dense ones least (the module docstring's reading)."""
    records = reproduction[0]
    by_model = {m: duplex_reproduce.over_baseline([r for r in records if r["model"] == m], "duplex-pe-et",
                                                  "throughput_tok_s")
                for m in duplex_reproduce.PAPER_GRID["models"]}
    assert min(by_model["glam-143b"]) > max(by_model["opt-66b"]) > max(by_model["llama3-70b"]) > 1.0


def test_grok_gains_least_of_the_moe_models(reproduction) -> None:
    """pim.md §2.4: "Grok1 gains least because of inter-node communication". Grok-1 runs on two nodes of 8, each
    node an expert-parallel group exchanging its MoE tokens over InfiniBand (both systems pay it), so its mean gain
    over the GPU is below Mixtral's and GLaM's, one node each."""
    records = reproduction[0]
    mean = {m: statistics.mean(duplex_reproduce.over_baseline([r for r in records if r["model"] == m],
                                                              "duplex-pe-et", "throughput_tok_s"))
            for m in ("mixtral-8x7b", "glam-143b", "grok-1-314b")}
    assert mean["grok-1-314b"] < min(mean["mixtral-8x7b"], mean["glam-143b"]), mean


def test_max_throughput_over_gpu_is_the_papers(reproduction) -> None:
    """Its maximum: within 15 % of the paper's 2.67x (pim.md §2.1)."""
    assert reproduction[1]["throughput_max"]["ours"] == pytest.approx(2.67, rel=0.15)


def test_energy_reduction_is_the_papers(reproduction) -> None:
    """Energy per token, 1 - mean(Duplex+PE+ET / GPU): within 10 points of the paper's 28.19 % (pim.md §2.1), with
    the xPUs' static power at the presets' 20 % of TDP; across gpu.md §5's suggested 15-25 % too, and not without
    it (per action alone the saving is the per-byte price ratio times the Logic-PIM's share of the bytes)."""
    headline = reproduction[1]
    assert headline["energy_reduction"]["ours"] == pytest.approx(0.2819, abs=0.10)
    by_static = headline["energy_reduction_by_static"]
    assert by_static["0.15"] == pytest.approx(0.2819, abs=0.10) and by_static["0.25"] == pytest.approx(0.2819, abs=0.10)
    assert by_static["0"] < by_static["0.15"] < headline["energy_reduction"]["ours"] < by_static["0.25"]
    assert by_static["0"] < 0.2819 - 0.10


def test_bank_pim_beats_duplex_on_opt_and_loses_on_llama3(reproduction) -> None:
    """pim.md §2.4: Bank-PIM beats Duplex on OPT-66B (MHA: decode attention at Op/B ~1, where the Bank-PIM's 16x
    bandwidth beats the Logic-PIM's 4x) and loses on Llama3-70B (GQA deg_grp 8: Op/B ~8, compute-bound on the
    Bank-PIM's 1 Op/B against the Logic-PIM's 7.9)."""
    bank = reproduction[1]["bank_pim"]
    assert bank["opt-66b"]["bank_pim_over_duplex"] > 1.0
    assert bank["llama3-70b"]["bank_pim_over_duplex"] < 1.0
    assert all(v["within"] for v in bank.values())


def test_the_qps_sweep_records_every_system_and_rate(reproduction) -> None:
    qps = reproduction[2]
    assert [(r["system"], r["qps"]) for r in qps] == [(s, q) for s in duplex_reproduce.QPS_SYSTEMS
                                                      for q in duplex_reproduce.QPS_RATES]
    keys = {"system", "qps", "requests", "throughput_tok_s", "tbt_p50_s", "tbt_p99_s", "ttft_p50_s", "ttft_p90_s",
            "ttft_p99_s", "e2e_p50_s", "e2e_p99_s", "ttft_alone_s", "saturated"}
    assert all(set(r) == keys for r in qps)
    for system in duplex_reproduce.QPS_SYSTEMS:  # once saturated, a higher offered load stays saturated
        flags = [r["saturated"] for r in qps if r["system"] == system]
        assert flags == sorted(flags)


def test_the_gpu_saturates_between_8_and_10_requests_per_second(reproduction) -> None:
    """The issue, from the paper's Fig. 13 (pim.md §2.4: the GPU saturates above 9 req/s), read as its capacity:
    the requests per second archsim's calibrated GPU serves with its batch full. Missed (7.32) while the GPU's MoE
    elementwise kernels moved every expert's intermediates instead of the routed pairs' (top_k / experts)."""
    summary = reproduction[1]["qps"]
    assert 8.0 <= summary["capacity_qps"][duplex_reproduce.BASELINE] <= 10.0 and summary["gpu_saturation_qps"]["within"]


def test_duplex_sustains_at_least_1_4x_the_gpus_rate(reproduction) -> None:
    """The issue (the paper: Duplex about 14 req/s against the GPU's 9, 1.56x). Missed (1.31x) while the MoE's
    elementwise bytes counted every expert on the xPU and +PE's expert ops bound top_k times the tokens."""
    summary = reproduction[1]["qps"]
    gpu, duplex = (summary["capacity_qps"][s] for s in duplex_reproduce.QPS_SYSTEMS)
    assert duplex / gpu >= 1.4 and summary["duplex_over_gpu"]["within"]


def test_the_reasons_quote_the_runs_numbers(reproduction) -> None:
    """A reason's numbers are the run's (`archsim.systems.attribution.Reason`), formatted into it: the QPS reasons
    quote the capacities, calibrated and at the roofline, and the energy reason each model's range (the reasons of
    the run's targets within tolerance are empty; filled from the run's records here)."""
    records, headline, _ = reproduction
    qps = headline["qps"]
    for name in ("gpu_saturation_qps", "duplex_over_gpu"):  # within: no reason
        assert qps[name]["within"] and qps[name]["reason"] == ""
    assert headline["energy_reduction"]["within"] and headline["energy_reduction"]["reason"] == ""
    energy = duplex_reproduce.over_baseline([r for r in records if r["model"] == "llama3-70b"],
                                            duplex_reproduce.HEADLINE_SYSTEM, "energy_j_per_token")
    reason = duplex_reproduce.ATTRIBUTION["energy_reduction"].filled(
        **duplex_reproduce._numbers(records, "energy_reduction"))
    assert f"llama3-70b {1 - max(energy):.0%}-{1 - min(energy):.0%}" in reason
    by_static = " / ".join(f"{v:.1%}" for v in headline["energy_reduction_by_static"].values())
    assert f"at 0 / 15 / 25 % of TDP {by_static}" in reason and "140 W each, 20% of TDP" in reason


def test_the_ttft_estimate_reads_above_the_capacity(reproduction) -> None:
    """A finite run that starts empty queues late, so the latency read-out of the sweep overstates the rate a
    system sustains (duplex_reproduce's docstring); the capacity is the queueing bound."""
    summary = reproduction[1]["qps"]
    for system in duplex_reproduce.QPS_SYSTEMS:
        assert summary["saturation_qps"][system]["qps"] > summary["capacity_qps"][system]


def test_timed_as_the_papers_simulator_the_qps_checks_hold(reproduction) -> None:
    """--as-artifact: the GPU and the xPU at their roofline, as Duplex's simulator times them (pim.md §2.5). Then the
    GPU serves above 9 req/s (the paper: saturates above 9; 10.71 here, above the issue's band, as a roofline GPU
    is faster than the calibrated one) and Duplex+PE+ET at least 1.4x that (the paper: about 14). The reproduction
    works these capacities out beside its own (`capacity_qps(as_artifact=True)`)."""
    capacity = reproduction[1]["qps"]["capacity_qps_as_artifact"]
    gpu, duplex = (capacity[s] for s in duplex_reproduce.QPS_SYSTEMS)
    assert gpu >= 9.0 and duplex / gpu >= 1.4


def test_timed_as_the_papers_simulator_the_mean_gain_and_the_energy_reduction_hold(computed_once) -> None:
    """--as-artifact, the README's claims: the mean throughput gain within the issue's 15 % of 2.07x and the energy
    reduction within 10 points of 28.19 % (pim.md §2.1), both printed "within"; the maximum gain is outside (its
    reason printed). The headline of the grids in that timing (`grid_records`, what `run_all(as_artifact=True)`
    reads its headline off), about 25 s."""
    headline = computed_once("duplex-as-artifact-headline", lambda: duplex_reproduce.headline(
        duplex_reproduce.grid_records(as_artifact=True)))
    assert headline["throughput_mean"]["ours"] == pytest.approx(2.07, rel=0.15)
    assert headline["energy_reduction"]["ours"] == pytest.approx(0.2819, abs=0.10)
    assert headline["throughput_mean"]["within"] and headline["energy_reduction"]["within"]
    assert not headline["throughput_max"]["within"] and headline["throughput_max"]["reason"]


def test_as_artifact_times_only_the_gpu_devices_at_their_roofline() -> None:
    for name in duplex_reproduce.SYSTEMS:
        system = duplex_reproduce.duplex_system(name, as_artifact=True)
        assert {d.timing for d in system.devices.values() if d.kind == "gpu"} == {"roofline"}
        assert all(d.timing is None for d in system.devices.values() if d.kind != "gpu")
    assert all(d.timing is None for d in duplex_reproduce.duplex_system("duplex-gpu").devices.values())


def _record(system: str, qps: float, ttft_p90_s: float) -> dict:
    return {"system": system, "qps": qps, "ttft_p90_s": ttft_p90_s, "ttft_alone_s": 0.1,
            "saturated": ttft_p90_s > duplex_reproduce.SATURATION_TTFT_MULTIPLE * 0.1}


def test_saturation_is_interpolated_in_log_ttft() -> None:
    """Threshold 10 x 0.1 s = 1 s. p90 TTFT 0.1 s at 8 req/s and 10 s at 10 req/s: log TTFT crosses log 1 halfway,
    at 9 req/s. Saturated at the lowest rate: at most 4; never: at least 16."""
    records = [_record("a", 8, 0.1), _record("a", 10, 10.0), _record("b", 4, 5.0), _record("b", 16, 9.0),
               _record("c", 4, 0.1), _record("c", 16, 0.2)]
    assert duplex_reproduce.saturation_qps(records, "a") == (pytest.approx(9.0), "")
    assert duplex_reproduce.saturation_qps(records, "b") == (4, "at most")
    assert duplex_reproduce.saturation_qps(records, "c") == (16, "at least")


def test_qps_requests_are_poisson_arrivals_with_gaussian_lengths() -> None:
    requests = duplex_reproduce.qps_requests(8.0, 50, seed=3)
    poisson = poisson_requests(rate_per_s=8.0, n=50, lengths="sharegpt", seed=3)
    gaussian = gaussian_requests(50, 4096, 512, 0.1, 3)
    assert [r.arrival_s for r in requests] == [r.arrival_s for r in poisson]
    assert [(r.prompt_tokens, r.output_tokens) for r in requests] == \
        [(r.prompt_tokens, r.output_tokens) for r in gaussian]


def test_the_report_writes_its_figures_and_tables(reproduction, tmp_path) -> None:
    index = write_duplex_report(*reproduction, tmp_path)
    for name in ("throughput", "opb", "qps"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
        assert f"'{name}.png'" in index.read_text()
    ops = pd.read_csv(tmp_path / "opb.csv")
    moe = ops[ops.op == "moe"].set_index("batch").op_per_byte
    for batch in (32, 64, 128):  # MoE Op/B ~ tokens per expert = batch x top-2 / 8 experts (within the router's few %)
        assert moe[batch] == pytest.approx(batch * 2 / 8, rel=0.05)
    attention = ops[ops.op == "attention"].op_per_byte
    assert attention.to_numpy() == pytest.approx([4.0] * 3, rel=0.02)  # deg_grp = 32 heads / 8 KV heads
    ridges = pd.read_csv(tmp_path / "ridges.csv").set_index("unit").ridge_op_per_byte
    assert ridges["Logic-PIM"] == pytest.approx(21.2992 / 2.6816)  # pim.md §2.2: 21.3 TFLOPS over 4 x 670.4 GB/s
    assert ridges["Bank-PIM"] == pytest.approx(1.0)  # pim.md §2.2: peak Op/B 1
    assert ridges["xPU (H100)"] == pytest.approx(989.4 / 3.35)  # H100 SXM5 FP16 tensor peak over HBM3
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"gpu_saturation_qps", "duplex_over_gpu", "bank_pim_over_duplex opt-66b"} <= set(summary.metric)
    page = index.read_text()  # every table written is linked from the page (ridges.csv was not)
    assert all(f"href='{path.name}'" in page for path in tmp_path.glob("*.csv") if path.name != "summary.csv")


def test_report_command_routes_duplex(reproduction, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(duplex_reproduce, "run_all", lambda: reproduction)
    result = CliRunner().invoke(main, ["report", "--reproduction", "duplex", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(str(tmp_path / "r" / "index.html"))
    bad = CliRunner().invoke(main, ["report", "--reproduction", "duplex", "--model", "BERT"])
    assert bad.exit_code == 2 and "--model and --seq-len" in bad.output


# pim.md §2.4's figures as the README's Duplex figures table has them, default mode: the paper's value and whether
# ours is within the issue's tolerance for its kind (15 % of a ratio, 10 points of a reduction), written here, not
# read from duplex_figures, so that one edit to the module cannot move a target and its verdict together.
RATIO_FIGURES = {  # name: (paper, within)
    "duplex_over_gpu_max": (2.51, True),  # Duplex alone: up to 2.51x GPU
    "pe_over_duplex_mean": (1.04, True),  # +PE: 1.04x on average over Duplex
    "pe_et_over_duplex_max": (1.36, True),  # +PE+ET: up to 1.36x over Duplex
    "duplex_over_bank_pim_max_mixtral": (1.80, False),  # up to 1.80x faster than Bank-PIM on Mixtral
    "duplex_over_bank_pim_mean_mixtral": (1.49, True),  # on average 1.49x faster on Mixtral
    "bank_pim_over_gpu_mixtral_256_b64": (1.18, True),  # Bank-PIM only 1.18x over GPU at batch 64, (256, 256)
    "duplex_over_gpu_mixtral_256_b64": (2.05, True),  # where Duplex gets 2.05x
}
REDUCTION_FIGURES = {  # name: (paper, within)
    "glam_b64_tbt_p50_vs_gpu": (0.583, True),  # GLaM, batch 64: median TBT -58.3 % vs GPU
    "glam_b64_e2e_vs_gpu": (0.602, True),  # E2E -60.20 % vs GPU
    "glam_b64_e2e_vs_2xgpu": (0.3538, True),  # E2E -35.38 % vs 2xGPU
    "energy_reduction_mixtral": (0.3328, True),  # energy savings 33.28 % on Mixtral
    "energy_reduction_glam": (0.4203, True),  # 42.03 % on GLaM
    "energy_reduction_grok": (0.3459, True),  # 34.59 % on Grok1
}
BOUND_FIGURES = ("glam_b64_tbt_p50_vs_2xgpu",)  # GLaM, batch 64: median TBT below 2xGPU's (a positive reduction)
RATIO_TOL, REDUCTION_POINTS = 0.15, 0.10


def test_the_figures_targets_are_the_papers() -> None:
    """duplex_figures prints "within" against its own paper values and tolerances: they are the ones above."""
    papers = {name: paper for name, (paper, _) in (RATIO_FIGURES | REDUCTION_FIGURES).items()}
    assert {f.name: f.paper for f in duplex_figures.FIGURES} == papers | dict.fromkeys(BOUND_FIGURES)
    assert duplex_figures.TOLERANCE == {duplex_figures.RATIO: RATIO_TOL, duplex_figures.REDUCTION: REDUCTION_POINTS}


def test_every_figure_of_section_2_4_is_read_off_the_run(reproduction) -> None:
    """Each figure of pim.md §2.4 is read off points of the run; ours is within its kind's tolerance of the paper's
    value exactly where the README's table says "within", and one outside carries its modelling reason."""
    figures = {f["figure"]: f for f in reproduction[1]["figures"]}
    assert set(figures) == set(RATIO_FIGURES) | set(REDUCTION_FIGURES) | set(BOUND_FIGURES)
    assert all(f["points"] >= 1 for f in figures.values())
    for name, (paper, within) in RATIO_FIGURES.items():
        assert (figures[name]["ours"] == pytest.approx(paper, rel=RATIO_TOL)) is within, name
    for name, (paper, within) in REDUCTION_FIGURES.items():
        assert (figures[name]["ours"] == pytest.approx(paper, abs=REDUCTION_POINTS)) is within, name
    assert all(figures[name]["ours"] > 0 for name in BOUND_FIGURES)
    expected = {name: within for name, (_, within) in (RATIO_FIGURES | REDUCTION_FIGURES).items()}
    assert {name: f["within"] for name, f in figures.items()} == expected | dict.fromkeys(BOUND_FIGURES, True)
    assert figures["duplex_over_bank_pim_max_mixtral"]["reason"] == \
        duplex_figures.REASONS["duplex_over_bank_pim_max_mixtral"]
