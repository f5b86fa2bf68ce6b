"""The contract's weight check is remembered by content: a changed weight is read again."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.errors import ConversionError
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.spec import LSTMSpec

from .runtime_support import require

pytestmark = pytest.mark.cpu


def test_weights_changed_in_place_after_a_pass_are_checked_again() -> None:
    entry = next(e for e in table.entries() if e.name == "onnxruntime")
    runtime = require(entry)
    spec = LSTMSpec(3, 2)
    rng = np.random.default_rng(0)
    case = Case(spec, random_weights(spec, rng).astype("float32"),
                LSTMInputs(rng.normal(size=(2, 4, 3)).astype(np.float32)))
    native = harness.native_weights(entry, case)
    native = copy.deepcopy(native)  # writable arrays of our own
    runtime.run(spec, native, case.inputs)  # passes, and is remembered
    weight = native["W"] if isinstance(native, dict) else native[0]["W"]
    weight.flat[0] = np.nan
    with pytest.raises(ConversionError):
        runtime.run(spec, native, case.inputs)
