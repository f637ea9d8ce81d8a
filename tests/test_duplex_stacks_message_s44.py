"""A Duplex prompt beyond the memory its Logic-PIM stacks give the xPU names the stacks' field: it read "exceeds
the 64.4 GB (60 GiB) of it the serving engine holds", matching neither the H100's 80 GiB nor a memory_utilization
(audit helper-523)."""

from __future__ import annotations

import pytest

from archsim.systems.iteration import Batch
from archsim.systems.neupims import system
from archsim.systems.step import UnrunnableOp


def test_the_stacks_that_bind_are_named() -> None:
    model = system("duplex", "llama3-70b", changes={"devices.lp.capacity_bytes": 12 * 2**30})
    with pytest.raises(UnrunnableOp, match=r"exceeds the 64\.4 GB \(60 GiB\) of it the serving engine holds "
                                           r"\(devices\.lp's capacity_bytes, the stacks it uses as HBM\)"):
        model.iteration(Batch((200_000,), ()))
