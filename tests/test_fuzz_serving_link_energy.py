"""Fuzz findings on the systems layer's links and energy: Lamina's link is rated per direction, so its busy time
is per direction (`link_out`, `link_back`); a device priced by board power (TDP) draws it while its rank
communicates (all-reduces, stage hops, the expert exchange and its wait) and, with attention offloading, over the
pools' whole time in the iteration; Lamina's advice for weights too big for its compute pool names the pool."""

from __future__ import annotations

from pathlib import Path

import pytest

from archsim import library
from archsim.errors import SpecError
from archsim.systems.iteration import Batch
from archsim.systems.models import system_model
from archsim.systems.offload import OffloadModel
from archsim.systems.system_messages import stage_hops_s
from archsim.systems.system_model import SystemModel
from archsim.systems.system_spec import load_system, with_fields


def _spec(tmp_path: Path, base: str, links: dict[str, tuple[float, float]]) -> Path:
    """A system file laid over `base` whose links are these (role -> latency, bandwidth per direction)."""
    lines = [f"name: {base}-fuzz", f"base: {base}", "links:"]
    for role, (latency_s, bytes_per_s) in links.items():
        lines.append(f"  {role}: {{name: {role}-fuzz, description: fuzz, source: fuzz, latency_s: {latency_s:.6e}, "
                     f"bytes_per_s_per_direction: {bytes_per_s:.6e}}}")
    path = tmp_path / "system.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _power_w(model, device: str) -> float:
    return float(model.system.devices[device].spec.power_w)


def test_lamina_busies_each_link_direction_at_most_its_wall_time(tmp_path: Path) -> None:
    """LLaMA-33B (MHA, hidden d = 6656, 2-byte words, 60 layers) on Lamina's DOP (2, 4) over a 2e8 B/s link: per
    token and layer q (2d B) and the new k, v (4d B) go out, the output (2d B) comes back, over min(tp, b) = 2 NICs.
    For 64 decodes out is 60 x 64 x 6d x 2 / 4e8 = 0.3834 s, back 0.1278 s; the period is at least the out
    direction's work, so each direction's busy time is within the iteration, and their sum (the old single `link`
    unit, utilization 1.265 in the serving run) is not."""
    model = system_model(load_system(_spec(tmp_path, "lamina", {"attention": (1e-9, 2e8)})),
                         library.load_workload_spec("llama-33b"))
    assert isinstance(model, OffloadModel) and model.nic_bytes_per_s == 4e8
    cost = model.iteration(Batch((), (1000,) * 64))
    d, layers = 6656, 60
    assert cost.busy_s["link_out"] == pytest.approx(layers * 64 * 3 * d * 2 / 4e8, rel=1e-9)  # 0.3834 s
    assert cost.busy_s["link_back"] == pytest.approx(layers * 64 * d * 2 / 4e8, rel=1e-9)  # 0.1278 s
    assert "link" not in cost.busy_s
    assert max(cost.busy_s["link_out"], cost.busy_s["link_back"]) <= cost.time_s
    assert cost.busy_s["link_out"] + cost.busy_s["link_back"] > cost.time_s


def test_a_tdp_priced_rank_draws_board_power_through_its_all_reduces(tmp_path: Path) -> None:
    """vLLM on 4 H100 (TDP-priced, pp 1) over a 1 ms, 1 GB/s TP link: every op of an iteration runs on the GPUs,
    one after another with the all-reduces, so the 4 ranks draw their board power for the whole iteration:
    energy = 4 x TDP x time (before, the all-reduces drew nothing: 3.4 J/token at 12.5 tok/s, 11 W per GPU)."""
    model = system_model(load_system(_spec(tmp_path, "vllm-h100", {"tp": (1e-3, 1e9)})),
                         library.load_workload_spec("llama3-70b"))
    assert isinstance(model, SystemModel) and model.parallelism.tp == 4
    for batch in (Batch((), (500,) * 8), Batch((300,), (500, 900))):
        cost = model.iteration(batch)
        assert cost.energy_j == pytest.approx(4 * _power_w(model, "gpu") * cost.time_s, rel=1e-9)


def test_a_stage_hop_powers_the_sending_and_the_receiving_stage(tmp_path: Path) -> None:
    """PP 2 over the same slow link: the iteration is stage 1's layers, the hop, stage 2's layers and the LM head;
    stage 1's ranks draw TDP over their layers and the hop, stage 2's over the hop, their layers and the head, so
    energy = tp x TDP x (time + hop) (an idle stage draws nothing)."""
    model = system_model(load_system(_spec(tmp_path, "vllm-h100", {"tp": (1e-3, 1e9)})).with_options(tp=4, pp=2),
                         library.load_workload_spec("llama3-70b"))
    batch = Batch((), (500,) * 8)
    cost, hop_s = model.iteration(batch), stage_hops_s(model, 8)
    assert hop_s > 1e-3
    assert cost.energy_j == pytest.approx(4 * _power_w(model, "gpu") * (cost.time_s + hop_s), rel=1e-9)


def test_expert_parallel_groups_draw_board_power_while_they_wait_in_the_exchange(tmp_path: Path) -> None:
    """Mixtral on vLLM's H100s at tp 4, ep 2 (pp 1): 5 decodes deal 3 and 2 to the groups; every MoE layer's
    all-to-all is where they meet, so the lighter group waits there for the heavier at board power and both
    groups' ranks are powered for the layers' time; each group's LM head then runs on its own ranks:
    energy = TDP x (tp x ep x (time - the slower head) + tp x both heads' time)."""
    path = _spec(tmp_path, "vllm-h100", {"tp": (1e-3, 1e9), "ep": (1e-3, 1e9)})
    model = system_model(with_fields(load_system(path), {"parallelism.ep": 2}),
                         library.load_workload_spec("mixtral-8x7b"))
    assert model.parallelism.ep == 2 and model.parallelism.pp == 1
    cost = model.iteration(Batch((), (400, 800, 1200, 1600, 2000)))
    heads_s = [model.lm_head_cost(n).time_s for n in (3, 2)]
    assert cost.energy_j == pytest.approx(
        _power_w(model, "gpu") * (4 * 2 * (cost.time_s - max(heads_s)) + 4 * sum(heads_s)), rel=1e-9)


def test_lamina_pools_draw_board_power_over_the_iteration(tmp_path: Path) -> None:
    """Lamina's 2 H100s and 4 H20s (TDP-priced) over the slow link: a decode iteration keeps every micro-batch in
    flight, so both pools draw board power for its whole time: energy = (2 x TDP_H100 + 4 x TDP_H20) x time;
    before, 1.72 J/token in the serving run (the link's wait drew nothing)."""
    model = system_model(load_system(_spec(tmp_path, "lamina", {"attention": (1e-9, 2e8)})),
                         library.load_workload_spec("llama-33b"))
    cost = model.iteration(Batch((), (1000,) * 64))
    watts = 2 * _power_w(model, "compute") + 4 * _power_w(model, "memory")
    assert cost.energy_j == pytest.approx(watts * cost.time_s, rel=1e-9)


def test_lamina_weights_too_big_name_the_compute_pool_not_pp() -> None:
    """Lamina fixes tp at compute devices / replicas and refuses pp > 1: LLaMA3-405B (about 810 GB) on its two
    H100s is refused naming the compute pool's count, not 'raise tp or pp'."""
    with pytest.raises(SpecError) as error:
        system_model(load_system("lamina"), library.load_workload_spec("llama3-405b"))
    assert error.value.where == "devices.compute.count"
    assert "raise tp or pp" not in error.value.message and "pp 1" in error.value.message
