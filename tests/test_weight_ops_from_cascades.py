"""Which ops read weights, for sub-batch interleaving's `schedule.resident_weight_bytes`, comes from the workload's
cascades (`step.ROLES` through `Op.bytes_by_role`), not a hand list of op names.

Before: `system_checks.WEIGHT_OPS` (qkv, out_proj, ffn, moe and the norms) was checked against the spec alone. It
never named attention, so a multi-head latent attention model, whose attention cascades hold the up-projections
WUK and WUV, ran with its prompt attention on a gpu (no SRAM size in its spec) as if that gpu kept weights on chip:
`archsim simulate -s <this system> -w deepseek-v3-mla` served 4 requests at 57.928 tokens/s. And it refused a
dense FFN on a gpu for every workload, though a model whose every layer is MoE has no such op.
Now `check_against_workload` (run by `system_model`) refuses a weight-reading op of the workload on a device other
than an npu; the SRAM bound of the npus stays a check of the spec alone (`archsim check`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from archsim.cli import main
from archsim.errors import SpecError
from archsim.library import load_workload_spec
from archsim.systems.models import system_model
from archsim.systems.step import WEIGHTS, Step, layer_op
from archsim.systems.system_spec import system_from_dict

MIB = 2**20
PRESETS = Path(__file__).parents[1] / "archsim/systems/system_presets"
REFUSED = r"schedule\.resident_weight_bytes: expected 0: gpu, which a rule can put {op} on, is a gpu device"


def neupims_with_gpu(rule: dict, resident_bytes: float = MIB) -> dict:
    """The neupims preset with a gpu device (4 H100s) that `rule` puts an op on, keeping `resident_bytes` of weights
    between sub-batches; deepseek-v3-mla over 16 PP stages, so its weights fit the NPUs' memory."""
    data = yaml.safe_load((PRESETS / "neupims.yaml").read_text())
    data["devices"]["gpu"] = {"kind": "gpu", "count": 4, "preset": "h100-sxm5"}
    if rule["op"] == "attention":
        data["devices"]["gpu"]["attention_kernel"] = "FlashAttention-2"
    data["placement"].insert(0, rule)
    data["parallelism"]["by_workload"]["deepseek-v3-mla"] = {"tp": 4, "pp": 16}
    data["schedule"]["resident_weight_bytes"] = resident_bytes
    return data


PREFILL_ATTENTION_ON_GPU = {"op": "attention", "phase": "prefill", "device": "gpu"}


def test_mla_prompt_attention_reads_weights_and_gqa_none() -> None:
    """MLA's prefill attention reads WUK and WUV, heads x head_dim x kv_lora_rank words each: 2 x 128 x 128 x 512
    x 2 B = 32 MiB for deepseek-v3-mla; a GQA prompt attention (llama3-70b) reads K and V, no weights."""
    mla, gqa = (load_workload_spec(name) for name in ("deepseek-v3-mla", "llama3-70b"))
    assert layer_op(mla, Step("prefill", 1, 16), "llama", "attention").bytes_by_role[WEIGHTS] == 32 * MIB
    assert layer_op(gqa, Step("prefill", 1, 16), "llama", "attention").bytes_by_role[WEIGHTS] == 0


def test_mla_attention_on_a_gpu_with_resident_weights_is_refused(tmp_path: Path) -> None:
    """The spec alone does not say whether attention reads weights (`archsim check` accepts it); the MLA workload
    does: system_model and `archsim simulate` refuse it, exit 2, one line naming the file, the field, the device
    and attention."""
    data = neupims_with_gpu(PREFILL_ATTENTION_ON_GPU)
    system = system_from_dict(copy.deepcopy(data), "sbi-gpu.yaml")
    mla = load_workload_spec("deepseek-v3-mla")
    with pytest.raises(SpecError, match=REFUSED.format(op="attention") + r" .*attention-mla-prefill\), got 1048576$"):
        system_model(system, mla)
    path = tmp_path / "sbi-gpu.yaml"
    path.write_text(yaml.safe_dump(data))
    run = CliRunner().invoke(main, ["simulate", "-s", str(path), "-w", "deepseek-v3-mla", "--rate", "1",
                                    "--requests", "2"])
    assert run.exit_code == 2, run.output
    message = run.stderr.strip()
    assert message.startswith(f"error: {path}: schedule.resident_weight_bytes: ") and "\n" not in message
    assert "gpu, which a rule can put attention on" in message
    # no weights kept on chip: still refused, as MLA's attention reads weights the gpu does not hold
    with pytest.raises(SpecError, match=r"placement\[\d\]\.device: .*attention reads weights in deepseek-v3-mla"):
        system_model(system_from_dict(neupims_with_gpu(PREFILL_ATTENTION_ON_GPU, 0), "sbi-gpu.yaml"), mla)


def test_gqa_attention_on_the_same_system_is_accepted() -> None:
    """llama3-70b's attention reads no weights, so its prompts may run on the gpu while the npu keeps weights."""
    system = system_from_dict(neupims_with_gpu(PREFILL_ATTENTION_ON_GPU), "sbi-gpu.yaml")
    model = system_model(system, load_workload_spec("llama3-70b"))
    assert model.weight_device.name == "npu"


def test_a_dense_ffn_on_a_gpu_is_refused_only_for_a_model_with_dense_layers() -> None:
    """A rule putting the decode ffn on a gpu: gpt3-7b's dense FFN reads W1 and W2 there, refused; every layer of
    mixtral-8x7b is MoE (its FFN is the moe op), so no ffn op runs and it is accepted. The spec alone cannot tell
    the two apart, so loading it is not refused (before: refused for every workload)."""
    system = system_from_dict(neupims_with_gpu({"op": "ffn", "phase": "decode", "device": "gpu"}), "sbi-gpu.yaml")
    with pytest.raises(SpecError, match=REFUSED.format(op="ffn") + r" .*gpt3-7b's decode: ffn\), got 1048576$"):
        system_model(system, load_workload_spec("gpt3-7b"))
    assert system_model(system, load_workload_spec("mixtral-8x7b")).weight_device.name == "npu"
