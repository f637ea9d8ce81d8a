"""Load and validate GPU preset YAML into `GPU` (`archsim/gpu/presets/a100-80gb-sxm4.yaml` is a full example).

File format (units in the key names; every number carries its source in a comment in the presets)::

    name: a100-80gb-sxm4
    description: one line
    source: where the numbers come from
    aliases: ["A100 80GB SXM4", "NVIDIA A100-SXM4-80GB"]   # names a measurements CSV may use for this GPU
    sm_count: 108
    clock_hz: 1.41e+9                   # the boost clock the model runs (Hopper quotes its peaks at 1.83 GHz)
    tensor_flops_per_s: {fp16: 312.0e+12, bf16: 312.0e+12, tf32: 156.0e+12}   # dense; fp8 absent = none
    sync_mma_fraction: 1.0              # of the tensor peak reachable with warp-level mma.sync
    fp32_flops_per_s: 19.5e+12          # non-tensor FP32 (an FMA is 2 FLOPs)
    exp_per_clock_per_sm: 16            # SFU exp2 results per clock per SM
    smem_bytes_per_sm: 167936
    smem_bytes_per_clock_per_sm: 128
    regfile_bytes_per_sm: 262144
    max_threads_per_sm: 2048
    l2_bytes: 41943040
    l2_bytes_per_s: 7.2e+12
    dram_bytes: 85899345920             # bytes; a spec sheet's "80 GB" of HBM is taken as 80 GiB
    dram_bytes_per_s: 2.039e+12
    dram_latency_s: 5.0e-7
    power_w: 400
    dram_copy_fraction: 0.90            # optional: a measured copy's bandwidth over dram_bytes_per_s
    gemm_fraction: 0.81                 # optional: a measured large dense GEMM's FLOP/s over the fp16 tensor peak
    vendor: nvidia                      # nvidia or amd: which of the kernels' code paths the GPU takes
    compute_capability: "8.0"           # NVIDIA's major.minor (an nvidia GPU's, required), which a kernel may
                                        # require (FA3: 9.0); an amd GPU has none
    host_link: pcie4-x16                # optional: the link preset of its host interface (archsim list links),
                                        # or a link file's path, relative to this file's folder
    held_clock_hz: 1.2e+9               # optional: the SMs held at this clock, 0.1 to 1 x clock_hz (below)

A preset may derive from another: `base: a100-80gb-sxm4` (a packaged preset's name, or a YAML path, relative to
the file's folder, as a system spec's `base` is) loads and validates the base first (its errors name its file),
then lays the file's own keys over the base's (`archsim.spec_files.laid_over`: mappings such as
`tensor_flops_per_s` merge key by key, `null` removes a key, any other value replaces the base's; a base's
`host_link` path still names the file beside the base). The derived file must give its `name`; `description` and
`source` are the base's when it leaves them out; `aliases` are not inherited, as two presets answering one label
would make `gpu_for` ambiguous. A chain of more than `MAX_BASES` bases, or a cycle, is refused at `base`; a base's
file edited reaches the presets derived from it (`library.depends_on`). `a100a-hbm3.yaml` is the A100 80GB with
another DRAM bandwidth::

    base: a100-80gb-sxm4
    name: a100a-hbm3
    description: ...
    source: ...
    dram_bytes_per_s: 3.352e+12

`held_clock_hz` models a GPU whose SMs run below its boost clock `clock_hz`: a clock locked for benchmarking, or the
one a long run settles at under the power cap (an H200 held 0.96 of its boost running FlashAttention-2 over 16K
tokens and 0.82 over 1M; README, "Sparse prefill and KV-cache selection"). The spec is loaded at that clock
(`archsim.arch.gpu.at_sm_clock`: the tensor, FP32 and L2 rates scale with it, DRAM does not); `clock_hz` and the
peaks stay the datasheet's in the file.

`vendor` says which code paths the kernels take: an NVIDIA GPU's by its compute capability (warpgroup MMA from 9.0,
FlashAttention-3 on 9.0, the Triton tutorial's CUDA autotune stages), an AMD GPU's HIP ones (the tutorial's HIP
stages, MFMA as its native path). Both fields are required where they apply, so a GPU file that leaves them out
is refused rather than timed on another vendor's paths.

YAML reads `312e12` (no dot, no exponent sign) as text: write `312.0e+12`. A number outside the range every real
GPU's lies in (`NUMBERS`, a `Plausible` each), or a peak no SM could issue per clock (`FLOPS_PER_SM_CLOCK`), is
refused as written in another unit (`clock_hz: 1980.0` for 1980 MHz). Every error is a `SpecError` naming the
file, the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archsim import library
from archsim.arch.gpu import (
    ANY,
    COMPUTE_CAPABILITY,
    FRACTIONS,
    GPU,
    MEASURED,
    NUMBERS,
    at_sm_clock,
    check_fraction,
    check_tensor_mapping,
    tensor_rate,
)
from archsim.errors import Plausible, SpecError, check_header, loaded_for, ranged_number
from archsim.spec_files import is_spec_path, spec_beside

PRESETS_PACKAGE = "archsim.gpu.presets"
BASE = "base"  # a derived preset's base preset (see the module docstring)
MAX_BASES = 8  # bases of bases: a preset derives from one, rarely two; a longer chain is a mistake
UNINHERITED = ("aliases",)  # a base's keys a derived preset does not take: a label names one preset
# NUMBERS (field -> what it is, integer?, the range a real GPU's value lies in), MEASURED and the checks every GPU
# meets, a file's or one built in Python (`check_gpu`), are the GPU's own: `archsim.arch.gpu`
TENSOR_FLOPS_PER_S = Plausible(1e9, 1e18, 989.4e12, "FLOP/s")  # a dense peak of a tensor_flops_per_s precision
# A peak per SM per clock (FLOP/s / (sm_count x clock_hz)) of real hardware, FP32 or tensor: at least 2 FMA lanes
# (4 FLOP; G80's and GT200's SMs had 8 lanes, 16 FLOP, the fewest of any GPU), at most 65536 (the presets lie in
# 128..285 FP32 and 256..15473 tensor); outside, the peak, `clock_hz` or `sm_count` is in another unit than the
# file's (CUDA cores for SMs give 2).
FLOPS_PER_SM_CLOCK = (4, 65536)
VENDORS = ("nvidia", "amd")  # `vendor`: whose kernels' code paths the GPU takes (the module docstring)
MEANINGS = {"tensor_flops_per_s": "the dense tensor-core peak in FLOP/s per precision (fp16, bf16, tf32, fp8)",
            "source": "where the numbers come from (a datasheet, a paper)",
            "vendor": f"the GPU's vendor, one of {', '.join(VENDORS)} (which of the kernels' code paths it takes)",
            **{key: what for key, (what, _, _) in NUMBERS.items()}}  # what a missing field is, for its error
TEXT = ("name", "description", "source")
KEYS = (*TEXT, "aliases", "tensor_flops_per_s", *NUMBERS, *MEASURED, "vendor", "compute_capability", "host_link",
        "held_clock_hz")
OPTIONAL = ("description", "aliases", *MEASURED, "compute_capability", "host_link", "held_clock_hz")


def gpu_from_dict(data: Any, source: str = "<python>") -> GPU:
    """Validate a parsed preset; `source` names it in errors. A preset with `base` is laid over its base first
    (`library.derived_data`, the module docstring). Its numbers are checked here in the file's terms (text, ranges,
    units) with the checks every GPU meets (`archsim.arch.gpu.check_gpu`, which `GPU` runs again on itself)."""
    if isinstance(data, Mapping) and BASE in data:
        data = library.derived_data("GPU presets", data, source, (), PRESETS_PACKAGE, MAX_BASES, marker="sm_count",
                                    validate=gpu_from_dict, uninherited=UNINHERITED, paths=("host_link",))
    check_header(data, KEYS, OPTIONAL, TEXT, source, meanings=MEANINGS)
    numbers = {key: ranged_number(data[key], source, key, what, bounds, integer=integer)
               for key, (what, integer, bounds) in NUMBERS.items()}
    for key, what in MEASURED.items():
        if key in data:
            numbers[key] = ranged_number(data[key], source, key, what, ANY)
    _check_per_sm_clock(numbers["fp32_flops_per_s"], numbers, source, "fp32_flops_per_s")
    for key in FRACTIONS:
        check_fraction(key, numbers.get(key), source)
    capability = _compute_capability(data, source)
    host_link = _host_link(data.get("host_link"), source)
    gpu = GPU(
        name=data["name"],
        description=data.get("description", ""),
        source=source,
        citation=data["source"],
        aliases=_aliases(data.get("aliases", []), source),
        tensor_flops_per_s=_tensor(data["tensor_flops_per_s"], source, numbers),
        compute_capability=capability,
        host_link=host_link,
        **numbers,
    )
    if "held_clock_hz" not in data:
        return gpu
    held = ranged_number(data["held_clock_hz"], source, "held_clock_hz", "the clock the SMs are held at in Hz", ANY)
    return at_sm_clock(gpu, held)  # its range refused naming held_clock_hz of this file (gpu.source)


def _host_link(value: Any, source: str) -> str | None:
    """A GPU file's `host_link`: a link preset's name as it is, or a link file's path taken from the GPU file's
    folder (`spec_beside`, as a system spec's links are), refused here when it names no file. The link itself is
    read and checked by the systems layer, which owns links (`archsim.systems.links.check_host_link`)."""
    if value is None:
        return None
    if not (isinstance(value, str) and value.strip()):
        raise SpecError(source, "host_link", f"expected the name of a link preset (e.g. pcie5-x16) or a link file's "
                                             f"path, got {value!r}")
    link = spec_beside(value, source)
    if is_spec_path(link):
        loaded_for(source, "host_link", lambda path: library.find("link presets", path), link)
    return link


def _compute_capability(data: Mapping[str, Any], source: str) -> str | None:
    """The compute capability of a GPU file's `vendor`: an NVIDIA GPU's major.minor (required: without it the
    kernels would take AMD's paths), none for an AMD GPU; a SpecError naming the field otherwise."""
    vendor = data["vendor"]
    if vendor not in VENDORS:
        raise SpecError(source, "vendor", f"expected one of {', '.join(VENDORS)}, got {vendor!r}")
    capability = data.get("compute_capability")
    if vendor == "amd":
        if capability is not None:
            raise SpecError(source, "compute_capability", f"an amd GPU has no compute capability (NVIDIA's), got "
                                                          f"{capability!r}: leave it out, or set vendor: nvidia")
        return None
    if not (isinstance(capability, str) and COMPUTE_CAPABILITY.fullmatch(capability)):
        got = "nothing" if capability is None else repr(capability)
        raise SpecError(source, "compute_capability", f"expected NVIDIA's major.minor as text (quoted), e.g. \"9.0\", "
                                                      f"for an nvidia GPU, got {got}")
    return capability


def load_gpu(name_or_path: str | Path) -> GPU:
    """A preset by name (`a100-80gb-sxm4`, see `gpu_names()`) or a YAML file by path."""
    return library.load_preset("GPU presets", name_or_path, PRESETS_PACKAGE, gpu_from_dict)


def gpu_names() -> list[str]:
    """The names of the packaged GPU presets."""
    return library.names("GPU presets", PRESETS_PACKAGE)


SPEC_DIGEST_HEX = 16  # hex digits of a GPU's `spec_digest` (64 bits: no two GPU files of one user collide)
SPEC_REFERENCE = re.compile(rf"\(spec ([0-9a-f]{{{SPEC_DIGEST_HEX}}})\)$")  # a `content_reference`'s digest


def spec_digest(gpu: GPU) -> str:
    """A GPU by its content: the first `SPEC_DIGEST_HEX` hex digits of the SHA-256 of every field of the loaded spec
    (its numbers, names and texts, a derived file's base laid under it, a held clock applied) but `source`, the path
    it was named by, with a `host_link` file's path made absolute. The same file by any path, from any folder, gives
    one digest; a file of other content at the same path another."""
    fields = {f.name: getattr(gpu, f.name) for f in dataclasses.fields(gpu) if f.name != "source"}
    fields["tensor_flops_per_s"] = dict(gpu.tensor_flops_per_s)
    if gpu.host_link is not None and is_spec_path(gpu.host_link):
        fields["host_link"] = str(Path(gpu.host_link).resolve())
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:SPEC_DIGEST_HEX]


def is_packaged(gpu: GPU) -> bool:
    """Whether `gpu` is the packaged preset of its name: its content is that preset's (`spec_digest`), whatever path
    named it. The one rule of `gpu_reference` and `content_reference`."""
    return gpu.name in gpu_names() and spec_digest(load_gpu(gpu.name)) == spec_digest(gpu)


def gpu_reference(gpu: GPU) -> str:
    """How to name `gpu` again (a calibration's `measurements.gpus`, the GPU labels a command mapped): its preset name
    when it is the packaged preset of that name (`is_packaged`), else its file."""
    return gpu.name if is_packaged(gpu) else gpu.source


def content_reference(gpu: GPU) -> str:
    """How a calibration names a GPU its rows ran on (a family's `fit.gpus`, `archsim.gpu.provenance`): its preset
    name when it is the packaged preset of that name (`is_packaged`), else its file as named, then its content's
    digest, "specs/l4.yaml (spec" and 16 hex digits ")": `reference_identity` compares GPUs by the digest, not by the
    path typed, which names another file from another folder (and the same file by another path)."""
    return gpu.name if is_packaged(gpu) else f"{gpu.source} (spec {spec_digest(gpu)})"


def reference_identity(reference: str) -> str:
    """What a `content_reference` names a GPU by: its content's digest where it carries one, else the text itself (a
    packaged preset's name; a file's path, as a calibration written before the digests recorded it:
    `recorded_by_path`)."""
    found = SPEC_REFERENCE.search(reference)
    return found.group(1) if found else reference


def recorded_by_path(reference: str) -> bool:
    """Whether a calibration's `reference` names a GPU file by its path alone (written before `content_reference`
    added the content's digest): no packaged preset's name and no digest, so which GPU it was cannot be told now."""
    return reference_identity(reference) == reference and reference not in gpu_names()


def gpu_for(label: str, source: str = "<label>", where: str = "gpu") -> GPU:
    """The preset a GPU label names (a measurements CSV's `gpu` column, `nvidia-smi`'s name). A label equal to a
    preset's name or alias (case, spaces and punctuation ignored) names it; otherwise the label's normalised tokens
    must fit exactly one preset: the model ("h100", "rtx 4090"), the memory size ("80GB", "80 GB") and the form
    factor ("SXM5"; "SXM" fits any SXM generation) are checked against the preset's name and DRAM size, in any
    order; vendor, brand and memory-type words (NVIDIA, GeForce, HBM3, ...) are ignored. "H100 80GB SXM5",
    "NVIDIA H100-SXM5-80GB" and "H100 SXM5 80GB" all name h100-sxm5. A label fitting no preset, or several
    ("A100", "H100 80GB"), is a SpecError(`source`, `where`) naming the label and the candidates."""
    presets = [load_gpu(name) for name in gpu_names()]
    key = label_key(label)
    for gpu in presets:
        if key in {label_key(gpu.name), *(label_key(a) for a in gpu.aliases)}:
            return gpu
    wanted = _label_tokens(label)
    found = [gpu for gpu in presets if wanted["model"] and _fits(wanted, _preset_tokens(gpu))]
    if len(found) == 1:
        return found[0]
    if found:
        raise SpecError(source, where, f"the GPU label {label!r} is ambiguous: it fits the presets "
                                       f"{', '.join(g.name for g in found)} (add what tells them apart: the "
                                       f"memory size or form factor, e.g. {_telling_apart(found)!r})")
    raise SpecError(source, where, f"the GPU label {label!r} matches no preset (presets: {', '.join(gpu_names())}; "
                                   "a label names the model, optionally the memory size and form factor, e.g. "
                                   "'H100 SXM5 80GB')")


# Words of a GPU label that say nothing about which preset it is: vendors, brands, memory technologies.
IGNORED_TOKENS = frozenset({"nvidia", "amd", "geforce", "instinct", "tesla", "hgx", "dgx", "hbm", "hbm2", "hbm2e",
                            "hbm3", "hbm3e", "gddr6", "gddr6x", "gpu"})
MEMORY_TOKEN = re.compile(r"^(\d+)gb$")
FORM_TOKEN = re.compile(r"^(sxm\d*|pcie)$")


def _label_tokens(label: str) -> dict[str, set[str]]:
    """A label's tokens by kind: model, memory ("80gb"), form ("sxm5", "pcie"); "80 GB" is one token."""
    words = [w for w in re.split(r"[^a-z0-9]+", label.lower()) if w]
    merged: list[str] = []
    for word in words:
        if word == "gb" and merged and merged[-1].isdigit():
            merged[-1] += "gb"
        else:
            merged.append(word)
    kinds: dict[str, set[str]] = {"model": set(), "memory": set(), "form": set()}
    for token in merged:
        if token in IGNORED_TOKENS:
            continue
        kind = "memory" if MEMORY_TOKEN.match(token) else "form" if FORM_TOKEN.match(token) else "model"
        kinds[kind].add(token)
    return kinds


def _telling_apart(found: list[GPU]) -> str:
    """The memory size and form factor of the first of `found` as a label adds them ('40GB SXM4'), for a hint."""
    tokens = _preset_tokens(found[0])
    return " ".join(sorted(t.upper() for t in tokens["memory"] | tokens["form"]))


def _preset_tokens(gpu: GPU) -> dict[str, set[str]]:
    """A preset's tokens: its name's, and its DRAM size as a spec sheet writes it (n "GB" = n GiB) when the name has
    none."""
    kinds = _label_tokens(gpu.name)
    if not kinds["memory"]:
        kinds["memory"] = {f"{round(gpu.dram_bytes / 2**30)}gb"}
    return kinds


def _fits(label: dict[str, set[str]], preset: dict[str, set[str]]) -> bool:
    """Every model token of the label is the preset's and one of them is its chip (the token with a digit); a
    memory size, when given, is the preset's; a form factor, when both give one, is the same (SXM fits SXMn)."""
    chips = {t for t in preset["model"] if any(c.isdigit() for c in t)}
    if not label["model"] <= preset["model"] or not label["model"] & chips:
        return False
    if label["memory"] and label["memory"] != preset["memory"]:
        return False
    return not (label["form"] and preset["form"]) or any(
        f == p or ("sxm" in (f, p) and f.startswith("sxm") and p.startswith("sxm"))
        for f in label["form"] for p in preset["form"])


def label_key(label: str) -> str:
    """A GPU label as labels are compared: lower case, spaces and punctuation dropped ("NVIDIA L4" = "nvidia-l4")."""
    return re.sub(r"[^a-z0-9]", "", label.lower())


def _tensor(data: Any, source: str, numbers: Mapping[str, Any]) -> dict[str, float]:
    """The dense peak per precision (`check_tensor_mapping`, `tensor_rate`), each in range alone and per SM per clock
    (`FLOPS_PER_SM_CLOCK`)."""
    check_tensor_mapping(data, source)
    out = {}
    for precision, value in data.items():
        out[precision] = tensor_rate(precision, value, source, TENSOR_FLOPS_PER_S)
        _check_per_sm_clock(out[precision], numbers, source, f"tensor_flops_per_s.{precision}")
    return out


def _check_per_sm_clock(peak: float, numbers: Mapping[str, Any], source: str, where: str) -> None:
    """Refuse a peak whose FLOP per SM per clock no hardware has: the peak, `clock_hz` or `sm_count` is in another
    unit than the file's (each may lie in its own range: 16896 CUDA cores for 132 SMs)."""
    per_sm_clock = peak / (numbers["sm_count"] * numbers["clock_hz"])
    low, high = FLOPS_PER_SM_CLOCK
    if not low <= per_sm_clock <= high:
        raise SpecError(source, where, f"expected {low} to {high} FLOP per SM per clock, got {peak:g} FLOP/s / "
                                       f"(sm_count {numbers['sm_count']} x clock_hz {numbers['clock_hz']:g}) = "
                                       f"{per_sm_clock:.3g}: the peak, clock_hz or sm_count (SMs, not cores) is "
                                       "in another unit")


def _aliases(data: Any, source: str) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(isinstance(a, str) and a for a in data):
        raise SpecError(source, "aliases", f"expected a list of GPU names, got {data!r}")
    return tuple(data)

