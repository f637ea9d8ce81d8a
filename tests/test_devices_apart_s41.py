"""Ops placed on a device whose memory is apart from the weight holder's (an architecture device, a second GPU)
move their activations between the two over no modelled link: `simulate` lists them under not timed, as it lists a
TP all-reduce without a tp link. They were free and unlisted (audit helper-494: a prompt's attention on a spatial
array beside each H100, its Q, K, V and output never sent)."""

from __future__ import annotations

import yaml

from archsim.systems.system_checks import apart_from_weights
from archsim.systems.system_messages import untimed_messages
from archsim.systems.system_spec import load_system


def _system(tmp_path, placement: list) -> str:
    """vllm-h100 with a FuseMax array beside it and `placement`'s rules before the rule giving the GPUs all ops."""
    path = tmp_path / "sys.yaml"
    path.write_text(yaml.safe_dump({
        "base": "vllm-h100", "name": "h100-fusemax",
        "devices": {"fx": {"kind": "architecture", "count": 1, "preset": "fusemax", "mapping": "fusemax-gqa"}},
        "placement": [*placement, {"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm",
                                          "ffn", "moe", "ffn_residual"], "device": "gpu"}]}))
    return str(path)


def test_a_prompts_attention_on_an_array_apart_lists_its_activations_as_not_timed(tmp_path):
    system = load_system(_system(tmp_path, [{"op": "attention", "phase": "prefill", "device": "fx"}]))
    assert apart_from_weights(system) == {"fx": ("attention (prefill)",)}
    assert untimed_messages(system, system.parallelism_for("llama3-8b")) == [
        "activations to and from fx (architecture) for attention (prefill): its memory is apart from gpu's, which "
        "holds the weights, and no link carries them"]


def test_the_simulate_json_says_so(tmp_path, cli):
    import json

    out = json.loads(cli("simulate", "--system", _system(tmp_path, [{"op": "attention", "phase": "prefill",
                                                                      "device": "fx"}]),
                         "--workload", "llama3-8b", "--rate", "2", "--requests", "2", "--json").output)
    assert out["not_timed"] == ["activations to and from fx (architecture) for attention (prefill): its memory is "
                                "apart from gpu's, which holds the weights, and no link carries them"]


def test_devices_sharing_the_holders_memory_or_a_link_list_nothing():
    """NeuPIMs' PIM and Duplex's Logic-PIM compute in the holder's HBM; Lamina's and AttAcc's pools are reached over
    their links; a single-device system moves nothing."""
    for preset in ("neupims", "duplex", "lamina", "vllm-h100", "attacc"):
        system = load_system(preset)
        assert apart_from_weights(system) == {}, preset
