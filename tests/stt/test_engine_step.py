"""The moshi STT step waits for the device once: all device work is queued, then one copy back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.stt.test_batching import cpu_engine
from tests.stt_client import FRAME, speechlike

pytestmark = pytest.mark.moshi


#: Tensor methods that read device data on the host (each one waits for the device).
HOST_READS = {"cpu", "numpy", "item", "tolist", "__bool__", "__int__", "__float__", "__index__"}


class HostReads(torch.overrides.TorchFunctionMode):
    """Records every tensor-to-host read made inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in HOST_READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("variant", ["stt_dir", "stt_noheads_dir"], ids=["eot-heads", "silero-vad"])
def test_a_step_reads_from_the_device_once(tiny, variant):
    engine = cpu_engine(str(getattr(tiny, variant)), 4)
    audio = speechlike(1.0, seed=3)[: 12 * FRAME].reshape(12, FRAME)
    for k, frame in enumerate(audio):
        frames = np.stack([frame] * 4)
        active = np.array([True, k % 3 != 1, False, True])
        reset = [0, 1, 3] if k == 0 else []
        with HostReads() as step_reads:
            results = engine.step(frames, active, reset)
        assert step_reads.reads == ["cpu", "numpy"]
        assert [r is not None for r in results] == active.tolist()
    with HostReads() as launch_reads, torch.no_grad():
        engine.launch(frames, np.ones(4, dtype=bool), [])
    assert launch_reads.reads == []
