"""What the models remember in a process answers as a fresh process would (issue s53's review).

1. A library cascade edited in a long-lived process (a notebook, a sweep worker) reaches the ops bound after the
   edit: the library parses a file again when its bytes change, and the caches above it are keyed by the loaded
   Cascade objects, not by a cascade's name (`library.library_cascade`, `step.layer_cascades`, `gpu_tiles.step_ops`).
2. A resource limit decides a call alike whatever came before it: the shared op caches of a model are keyed by
   the limit on sizes (`workload.max_size`, the one limit binding reads) as well as by the sizes.
3. An architecture device's outermost memory is unbounded (math.inf), the one meaning its spec, the analytical
   model and the system checks give it; a system that would hold the weights there is refused naming its placement
   (serving pages the KV cache by the room beside the weights), not told its device "holds 0 B".
4. A long prefill's working set (`sparse_prefill.layer_working_bytes`) is the cascades' (`working_set`), with the
   layer's K and V left to the KV cache that sparse_prefill counts them in.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml

from archsim import library
from archsim.errors import LimitError, SpecError
from archsim.model import gpu_tiles
from archsim.systems import seqpar_memory, sparse_prefill
from archsim.systems.devices import device_models
from archsim.systems.expert_shares import experts_op
from archsim.systems.step import Step, layer_ops
from archsim.systems.system_model import sizes_model, system_model_of
from archsim.systems.system_spec import load_system
from archsim.systems.working_set import layer_working_bytes

TOKENS = 128  # a prompt of llama2-7b: hidden 4096, 32 heads of 128, MHA
PROJECTION_MACS = TOKENS * 4096 * 4096  # one of the Q, K and V projections' MACs


@pytest.fixture
def cascades(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The library's cascade package as a copy in `tmp_path`, which the library loads from while the test runs (as a
    user editing the installed files would see it); its folder. The copy's modification time is its own (copytree
    copies the folder's): the library remembers a package's listing per folder stamp."""
    folder = tmp_path / "einsum"
    shutil.copytree(Path(str(importlib.resources.files(library.PACKAGES["cascades"]))), folder)
    os.utime(folder, ns=(time.time_ns(), time.time_ns()))
    spec = importlib.util.spec_from_file_location(library.PACKAGES["cascades"], folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, library.PACKAGES["cascades"], module)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def _qkv_flops(ops) -> int:
    return next(op.flops for op in ops if op.name == "qkv")


def test_an_edited_library_cascade_reaches_the_ops_bound_after_the_edit(cascades: Path) -> None:
    """The V projection made to multiply its weight twice adds one multiply per MAC of it (PROJECTION_MACS FLOPs);
    the score exponentials' argument made to subtract the running max twice adds one FP32 op per score of a
    64 x 64 step. A model built before the edit keeps the ops it bound; one built after binds the edit."""
    workload = library.load_workload_spec("llama2-7b")
    step = Step("prefill", 1, TOKENS)
    before, tile_before = _qkv_flops(layer_ops(workload, step, "llama")), gpu_tiles.step_ops(64, 64, 64)
    old_model = sizes_model(workload)
    assert _qkv_flops(old_model.ops("prefill", 1, TOKENS)) == before == 3 * 2 * PROJECTION_MACS

    _edit(cascades / "qkv-projection.yaml", "* WV[g,f,d])", "* WV[g,f,d] * WV[g,f,d])")
    _edit(cascades / "attention-1pass.yaml", "exp(QK[b,h,m1,m0,p] - RM[b,h,m1+1,p])",
          "exp(QK[b,h,m1,m0,p] - RM[b,h,m1+1,p] - RM[b,h,m1+1,p])")

    assert _qkv_flops(layer_ops(workload, step, "llama")) == before + PROJECTION_MACS
    assert _qkv_flops(sizes_model(workload).ops("prefill", 1, TOKENS)) == before + PROJECTION_MACS
    assert _qkv_flops(old_model.ops("prefill", 1, TOKENS)) == before  # its ops are those it bound
    mma, exp, alu = gpu_tiles.step_ops(64, 64, 64)
    assert (mma, exp, alu) == (tile_before[0], tile_before[1], tile_before[2] + 64 * 64)
    assert gpu_tiles.fwd_tile(64, 64, 64, 4, False, 2, True, False, False, False).alu_ops == alu


LIMIT = "ARCHSIM_MAX_SIZE"


def test_a_size_limit_decides_a_call_alike_whatever_came_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200,000-token prompt of llama3-8b is beyond a limit of 150,000 on sizes (above every size of the workload,
    its vocab of 128,256 the largest): refused under it, bound under a limit of 10^7, and refused again under 150,000
    (it was answered from the op cache)."""
    workload = library.load_workload_spec("llama3-8b")
    for limit, refused in ((150_000, True), (10_000_000, False), (150_000, True)):
        monkeypatch.setenv(LIMIT, str(limit))
        for ask in (lambda: sizes_model(workload).ops("prefill", 1, 200_000),
                    lambda: sizes_model(workload).attention("prefill", 200_000)):
            if refused:
                with pytest.raises(LimitError, match="200000 is beyond the limit of 150000"):
                    ask()
            else:
                assert ask()


def test_a_size_limit_decides_an_expert_group_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mixtral's two experts over 400,000 routed pairs bind 200,000 tokens: refused under a limit of 100,000 before
    and after they were bound under 10^7."""
    key = sizes_model(library.load_workload_spec("mixtral-8x7b")).shard_key
    for limit, refused in ((100_000, True), (10_000_000, False), (100_000, True)):
        monkeypatch.setenv(LIMIT, str(limit))
        if refused:
            with pytest.raises(LimitError):
                experts_op(key, 2, 400_000, 14336)
        else:
            assert experts_op(key, 2, 400_000, 14336).binding.params["tokens"] == 200_000


def test_an_architecture_devices_memory_is_unbounded_and_never_holds_the_weights(tmp_path: Path) -> None:
    """FuseMax alone (its DRAM has no capacity: the outermost level never has one): its capacity is math.inf, and a
    system giving it the decode qkv is refused naming the placement, not told that it holds 0 B."""
    path = tmp_path / "fx-only.yaml"
    path.write_text(yaml.safe_dump({
        "name": "fx-only", "source": "test",
        "devices": {"fx": {"kind": "architecture", "count": 1, "preset": "fusemax", "mapping": "fusemax-gqa"}},
        "parallelism": {"tp": 1, "pp": 1},
        "placement": [{"op": ["attn_norm", "qkv", "attention", "out_proj", "attn_residual", "ffn_norm", "ffn", "moe",
                              "ffn_residual"], "device": "fx"}],
        "schedule": {"kind": "blocked"}}))
    system = load_system(str(path))
    assert device_models(system)["fx"].capacity_bytes == math.inf
    workload = library.load_workload_spec("llama3-8b")
    with pytest.raises(SpecError) as refused:
        system_model_of(system, workload, system.parallelism_for("llama3-8b"))
    assert refused.value.where == "placement"
    assert "memory is unbounded" in refused.value.message and "holds 0 B" not in refused.value.message


@pytest.mark.parametrize("name", ["llama2-7b", "llama3-8b", "deepseek-v3-mla"])
def test_the_prefill_working_set_is_the_cascades_with_k_and_v_in_the_cache(name: str) -> None:
    """`sparse_prefill.layer_working_bytes` is `working_set.layer_working_bytes` of the prefill layer, no FFN
    intermediates, K and V left out (sparse_prefill counts them in the cache): the hand count it replaced differed
    where the attention is not hidden wide (DeepSeek-V3's MLA: 736 of 752 MiB at 8K). With K and V in, the same
    function gives the sequence-parallel memory model's working set (llama2-7b: 320 MiB at 8K, 256 without)."""
    workload, tokens = library.load_workload_spec(name), 8192
    ops = layer_ops(workload, Step("prefill", 1, tokens), workload.block)
    assert sparse_prefill.layer_working_bytes(workload, tokens) == layer_working_bytes(ops, (), kv_in_cache=True)
    with_kv = layer_working_bytes(ops, ())
    assert seqpar_memory.inference_memory(workload, "ring", 1, tokens).activations_bytes == with_kv
    if name == "llama2-7b":
        assert (sparse_prefill.layer_working_bytes(workload, tokens), with_kv) == (256 * 2**20, 320 * 2**20)


def test_expert_ops_bind_the_moe_cascade_their_model_bound(cascades: Path) -> None:
    """A model's expert ops (`experts_op` given its `cascades`, as the expert co-processing and whole-expert paths
    give them) bind the MoE cascade the model's layer bound, not one edited since, whose router logits gain a
    multiply; without a model's cascades, the library's as its file reads now."""
    model = sizes_model(library.load_workload_spec("mixtral-8x7b"))
    bound = model.cascades("decode")
    before = experts_op(model.shard_key, 2, 63, 14336, bound)
    _edit(cascades / "moe-experts.yaml", "R[t,x]     = sum(d: X[t,d] * WR[d,x])",
          "R[t,x]     = sum(d: X[t,d] * WR[d,x] * WR[d,x])")
    kept = experts_op(model.shard_key, 2, 63, 14336, model.cascades("decode"))
    assert kept.binding.cascade is bound["moe-experts"] and kept.flops == before.flops
    edited = experts_op(model.shard_key, 2, 63, 14336)
    assert edited.binding.cascade is not bound["moe-experts"] and edited.flops > before.flops
