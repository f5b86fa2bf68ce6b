"""GPU runtimes (cuDNN paths) against their CPU twins and the reference.

Without a CUDA device these skip with the reason; with
EQUIVALENCE_REQUIRE_GPU=1 (the nightly GPU job) a skip becomes a failure.
TF32 is turned off by the runtimes themselves before each comparison.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from equivalence import table
from equivalence.harness import judge as harness
from equivalence.strategies import joint_capabilities, lstm_cases

from .runtime_support import record, replay_command

pytestmark = pytest.mark.gpu
GPU_ENTRIES = table.entries(device="gpu")


def require_gpu(entry: table.Entry):
    reason = entry.load().unavailable_reason()
    if reason:
        if os.environ.get("EQUIVALENCE_REQUIRE_GPU") == "1":
            pytest.fail(f"{entry.name} cannot run but EQUIVALENCE_REQUIRE_GPU=1: {reason}")
        pytest.skip(f"{entry.name}: {reason}")
    return entry.load()


@pytest.mark.parametrize("entry", GPU_ENTRIES, ids=lambda e: e.name)
@given(data=st.data())
def test_gpu_runtime_matches_reference(entry: table.Entry, data, request) -> None:
    runtime = require_gpu(entry)
    case = data.draw(
        lstm_cases(capabilities=runtime.capabilities, dtypes=runtime.capabilities.dtypes)
    )
    outcome = harness.check_against_reference(entry, case)
    record(request, outcome)
    assert outcome.ok, outcome.message(replay_command(request))


@pytest.mark.parametrize("entry", [e for e in GPU_ENTRIES if e.cpu_twin], ids=lambda e: e.name)
@given(data=st.data())
def test_gpu_runtime_matches_its_cpu_twin(entry: table.Entry, data, request) -> None:
    runtime = require_gpu(entry)
    twin = table.entry(entry.cpu_twin)
    caps = joint_capabilities([runtime.capabilities, twin.load().capabilities])
    case = data.draw(lstm_cases(capabilities=caps, dtypes=caps.dtypes))
    outcome = harness.check_pair(twin, entry, case)
    record(request, outcome)
    assert outcome.ok, outcome.message(replay_command(request))
