"""Small shared pieces of the test suite (strategies for formats, option lookup)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from equivalence import formats
from equivalence.capabilities import Capabilities
from equivalence.harness import judge as harness
from equivalence.spec import LSTMSpec


def format_capabilities(name: str) -> Capabilities:
    """What a weight format can hold, as Capabilities (so spec strategies can draw it)."""
    return formats.get(name).capabilities()


def read_options(name: str, spec: LSTMSpec) -> dict:
    """The reader options a format needs to interpret native weights for ``spec``."""
    return harness.reader_options(name, spec, {})


@st.composite
def batches(draw, spec: LSTMSpec):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(draw(st.integers(1, 3)), draw(st.integers(1, 5)), spec.input_size))
