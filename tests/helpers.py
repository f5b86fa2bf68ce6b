"""Small shared pieces of the test suite (strategies for formats, option lookup)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from equivalence import formats
from equivalence.runtimes.base import Capabilities
from equivalence.spec import LSTMSpec

FLAT = ("jax_rnn", "cudnn_params")
DIRECTIONAL_LISTS = ("keras", "cudnn")


def format_capabilities(name: str) -> Capabilities:
    """What a weight format can hold, as Capabilities (so spec strategies can draw it)."""
    return formats.get(name).capabilities()


def read_options(name: str, spec: LSTMSpec) -> dict:
    """The reader options a format needs to interpret native weights for ``spec``."""
    if name in FLAT:
        return {
            "input_size": spec.input_size,
            "units": spec.units,
            "layers": spec.layers,
            "directions": spec.directions,
        }
    if name in DIRECTIONAL_LISTS:
        options = {"directions": spec.directions}
        if name == "keras":
            options["recurrent_activation"] = spec.recurrent_activation
        return options
    if name == "tf1":
        return {"cell_clip": spec.cell_clip, "proj_clip": spec.projection_clip}
    if name == "onnx":
        return {"clip": spec.gate_clip}
    return {}


@st.composite
def batches(draw, spec: LSTMSpec):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(draw(st.integers(1, 3)), draw(st.integers(1, 5)), spec.input_size))
