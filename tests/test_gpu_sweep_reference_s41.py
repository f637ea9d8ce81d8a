"""A sweep's GPU points time FlashAttention-2 beside the architecture's points, so the mapping's cascade must be
shown to compute the attention the kernel times: a reference of it, checked by running the cascade. An exp and a K
input were the whole test, and a sigmoid or differential attention's sweep got FlashAttention-2's times as its own
(audit helper-494)."""

from __future__ import annotations

from pathlib import Path

import yaml

from archsim.cascade.reference_check import error_at_test_sizes
from archsim.library import load_cascade_spec

ROOT = Path(__file__).resolve().parents[1]
ONE_PASS = (ROOT / "einsum" / "attention-1pass.yaml").read_text()


def _sweep(tmp_path: Path, cascade_text: str) -> Path:
    """A sweep of the fusemax mapping over `cascade_text`'s cascade (the 1-pass Einsums' names, so the mapping
    binds it) at BERT-base's sizes, with GPU points."""
    (tmp_path / "mine.yaml").write_text(cascade_text)
    spec = {"name": "mine", "mapping": "fusemax", "cascade": "mine.yaml", "workload": "bert-base",
            "axes": {"workload.seq_len": [1024]}, "objectives": ["latency_s", "energy_pj"],
            "gpus": {"presets": ["h100-sxm5"]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_cascade_naming_no_reference_gets_no_gpu_points(tmp_path, cli):
    """The 1-pass cascade less its reference line computes softmax attention, but nothing says so: refused on
    `gpus`, naming the references a softmax kernel times."""
    text = ONE_PASS.replace("reference: attention\n", "")
    result = cli("check", str(_sweep(tmp_path, text)), expect=2)
    assert "gpus: GPU points time FlashAttention-2's softmax attention, but cascade attention-1pass names no " \
           "reference" in result.output
    assert "attention_causal_gqa" in result.output


def test_a_cascade_that_does_not_compute_its_reference_gets_no_gpu_points(tmp_path, cli):
    """Each key tile exponentiated against its own max and never rescaled (the same Einsums, units and exp, the
    wrong attention) while naming reference attention: refused on the cascade's `reference`, with the error."""
    wrong = ONE_PASS.replace("exp(QK[b,h,m1,m0,p] - RM[b,h,m1+1,p])", "exp(QK[b,h,m1,m0,p] - LM[b,h,m1,p])")
    assert wrong != ONE_PASS
    result = cli("check", str(_sweep(tmp_path, wrong)), expect=2)
    assert "mine.yaml: reference: cascade attention-1pass differs from its reference attention by" in result.output
    assert "expected it to compute its reference within 1e-05" in result.output


def test_the_shipped_attention_cascades_compute_their_references_at_test_sizes():
    """The check the sweep runs passes on the library cascades GPU points time (a shipped sweep is not refused)
    that time attention."""
    for name in ("attention-1pass", "attention-1pass-causal-gqa", "attention-3pass", "lightning-attention-2"):
        assert error_at_test_sizes(load_cascade_spec(name)) < 1e-9, name


def test_the_sweep_with_the_shipped_cascade_still_checks(tmp_path, cli):
    """The unchanged 1-pass cascade, by file, passes the check (the refusals above are the edits')."""
    cli("check", str(_sweep(tmp_path, ONE_PASS)))


def test_execute_check_of_a_cascade_naming_no_reference_fails(tmp_path, cli):
    """`execute --check` on a cascade that names no reference printed "nothing to compare" and exited 0: a check
    that cannot fail. It is refused naming the cascade's reference field; without --check the cascade runs."""
    path = tmp_path / "mine.yaml"
    path.write_text(ONE_PASS.replace("reference: attention\n", ""))
    result = cli("execute", str(path), "--check", expect=2)
    assert f"{path}: reference: missing: --check compares attention-1pass with its reference" in result.output
    assert "AV shape (2, 2, 16, 8)" in cli("execute", str(path)).output
