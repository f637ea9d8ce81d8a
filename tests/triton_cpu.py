"""What the Triton kernel tests share: the interpreter switched on before any kernel module is imported (triton.jit
reads TRITON_INTERPRET then), torch and triton required (the test module is skipped without them), the device the
kernels run on, the dtypes they are checked in and the softmax tolerance of each."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
torch = pytest.importorskip("torch")
pytest.importorskip("triton")

INTERPRET = os.environ["TRITON_INTERPRET"] == "1"
DEVICE = "cpu" if INTERPRET else "cuda"
if not INTERPRET and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET=0 needs a CUDA GPU", allow_module_level=True)

DTYPES = (torch.float32, torch.float16)
SOFTMAX_ATOL = {torch.float32: 1e-5, torch.float16: 2e-3}
