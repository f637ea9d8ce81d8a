"""A GPU file written from a datasheet that leaves out a field the model needs is told what that field is: the
error had said only "sync_mma_fraction: missing", a name no datasheet uses."""

from pathlib import Path

import pytest
import yaml

from archsim.errors import SpecError
from archsim.gpu.load import load_gpu


@pytest.mark.parametrize(("field", "meaning"), [
    ("sync_mma_fraction", "the fraction of the tensor peak warp-level mma.sync reaches"),
    ("smem_bytes_per_clock_per_sm", "shared-memory bandwidth in bytes per clock per SM"),
    ("tensor_flops_per_s", "the dense tensor-core peak in FLOP/s per precision"),
])
def test_a_missing_field_says_what_it_is(tmp_path, field, meaning):
    data = yaml.safe_load(Path(load_gpu("h100-sxm5").source).read_text())
    data.pop(field)
    path = tmp_path / "sheet.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_gpu(str(path))
    assert (info.value.source, info.value.where) == (str(path), field)
    assert info.value.message.startswith(f"missing: expected {meaning}"), info.value.message
