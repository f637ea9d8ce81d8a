"""`archsim gpu-roofline` on an encoder (audit helper-453): BERT-base's prefill was drawn causal (254 FLOP/B, half
the non-causal count) as no workload field says whether a model is causal. A workload naming its decoder block is
causal; one naming none must say (`--causal` / `--no-causal`); `--no-causal` doubles the prefill's FLOPs on the
same bytes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _fa2_flops_per_byte(cli, tmp_path: Path, *args: str) -> float:
    out = tmp_path / "_".join(args or ("default",))
    cli("gpu-roofline", *args, "--out", str(out))
    return pd.read_csv(out / "roofline.csv").set_index("label").loc["prefill fwd FA2", "flops_per_byte"]


def test_an_encoder_must_say_whether_its_prefill_is_causal(cli, tmp_path: Path) -> None:
    out = cli("gpu-roofline", "-w", "bert-base", "--out", str(tmp_path / "r"), expect=2).output
    assert out.startswith("error: --causal: bert-base names no decoder block") and out.count("\n") == 1


def test_no_causal_doubles_the_prefill_flops_per_byte(cli, tmp_path: Path) -> None:
    causal = _fa2_flops_per_byte(cli, tmp_path, "-w", "bert-base", "--causal")
    full = _fa2_flops_per_byte(cli, tmp_path, "-w", "bert-base", "--no-causal")
    assert 1.95 < full / causal <= 2.0  # the same Q, K, V and O bytes; every score, not the lower triangle


def test_a_decoder_stays_causal_by_default(cli, tmp_path: Path) -> None:
    assert _fa2_flops_per_byte(cli, tmp_path) == _fa2_flops_per_byte(cli, tmp_path, "--causal")
