"""The L40S preset's memory is what its runs can use (audit s50): an L40S runs with ECC on by default, and its GDDR6
ECC is inline, so 1/16 of its 48 GiB holds the check bits; nvidia-smi shows about 46,068 MiB (quoted from memory,
medium confidence), within 0.5 % of 15/16 x 48 GiB = 46,080 MiB, the rule the presets' [gib] note states; 48 GiB
is 6.7 % above it."""

from __future__ import annotations

from archsim.gpu.load import load_gpu

MIB = 2**20
GIB = 2**30
NVIDIA_SMI_L40S_MIB = 46068  # from memory, ECC on (the default)


def test_the_l40s_preset_is_15_16_of_48_gib_within_half_a_percent_of_nvidia_smi() -> None:
    dram_bytes = load_gpu("l40s").dram_bytes
    assert dram_bytes == 48 * GIB * 15 // 16 == 46080 * MIB
    assert abs(dram_bytes / (NVIDIA_SMI_L40S_MIB * MIB) - 1) < 0.005
