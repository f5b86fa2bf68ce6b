"""Hypothesis strategies: LSTM specs, weights, inputs and whole cases.

Named like ``hypothesis.extra.numpy``: plural nouns, keyword-only bounds with
``min_*``/``max_*`` names, arguments checked up front. Shapes are drawn from
small sets on purpose: every distinct shape costs a framework a build and a
trace, and small sizes (1 included) are where layout bugs show.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from hypothesis import strategies as st

from .canonical import LSTMWeights, random_weights
from .capabilities import Capabilities, joint_capabilities  # noqa: F401 (re-exported)
from .case import Case
from .io_types import LSTMInputs
from .spec import LSTMSpec

INPUT_SIZES = (1, 2, 3, 5)
UNITS = (1, 2, 4, 6)
STEPS = (1, 3, 6, 9)
BATCHES = (1, 2, 3)
CLIPS = (0.5, 1.0, 3.0)
DEFAULT_CAPABILITIES = Capabilities()  # float32, sigmoid, no optional features


def _check_bound(name: str, value: int, low: int) -> None:
    if not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r}: pass an int >= {low}")


@st.composite
def lstm_specs(
    draw: st.DrawFn,
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_layers: int = 2,
    dtypes: Iterable[str] | None = None,
    single_cell: bool = False,
) -> LSTMSpec:
    """Specs that ``capabilities`` can run; ``single_cell`` fixes one layer, one direction."""
    _check_bound("max_layers", max_layers, 1)
    caps = capabilities
    limit = min(max_layers, caps.max_layers or max_layers)
    layers = 1 if single_cell else draw(st.integers(1, limit))
    directions = 1 if single_cell or not caps.bidirectional else draw(st.sampled_from((1, 2)))
    units = draw(st.sampled_from(UNITS))
    projection = None
    if caps.projection and units > 1 and draw(st.booleans()):
        projection = draw(st.integers(1, units - 1))  # PyTorch requires P < H
    allowed = sorted(set(dtypes or ("float32",)) & caps.dtypes) or ["float32"]
    return LSTMSpec(
        input_size=draw(st.sampled_from(INPUT_SIZES)),
        units=units,
        layers=layers,
        directions=directions,
        projection_size=projection,
        peepholes=caps.peepholes and draw(st.booleans()),
        cell_clip=draw(st.sampled_from(CLIPS)) if caps.cell_clip and draw(st.booleans()) else None,
        projection_clip=(
            draw(st.sampled_from(CLIPS))
            if projection and caps.projection_clip and draw(st.booleans())
            else None
        ),
        gate_clip=draw(st.sampled_from(CLIPS)) if caps.gate_clip and draw(st.booleans()) else None,
        recurrent_activation=draw(st.sampled_from(sorted(caps.recurrent_activations))),
        dtype=draw(st.sampled_from(allowed)),
    )


@st.composite
def lstm_weights(draw: st.DrawFn, spec: LSTMSpec, *, max_scale: float = 1.0) -> LSTMWeights:
    """Canonical weights for ``spec``, rounded to ``spec.dtype`` so every side sees the same values.

    Values come from a drawn seed (fast, and shrinks towards seed 0) with a
    drawn scale, so both near-linear and saturating gates are exercised.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from((0.1, 0.5, max_scale)))
    weights = random_weights(spec, np.random.default_rng(seed), scale=scale)
    return weights.astype(spec.dtype)


@st.composite
def lstm_inputs(
    draw: st.DrawFn,
    spec: LSTMSpec,
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_batch: int = 3,
    max_steps: int = 9,
) -> LSTMInputs:
    """Inputs for ``spec``: data, and where supported initial states, lengths, time-major."""
    _check_bound("max_batch", max_batch, 1)
    _check_bound("max_steps", max_steps, 1)
    batch = draw(st.sampled_from([b for b in BATCHES if b <= max_batch] or [1]))
    steps = draw(st.sampled_from([t for t in STEPS if t <= max_steps] or [1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.float64 if spec.dtype == "float64" else np.float32
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(dtype)
    h0 = c0 = lengths = None
    if capabilities.initial_state and draw(st.booleans()):
        shape = (spec.layers, spec.directions, batch)
        h0 = rng.uniform(-1, 1, (*shape, spec.output_size)).astype(dtype)
        c0 = rng.uniform(-1, 1, (*shape, spec.units)).astype(dtype)
    if capabilities.lengths and steps > 1 and draw(st.booleans()):
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[rng.integers(batch)] = steps  # frameworks size outputs by the longest sequence
    time_major = capabilities.time_major and draw(st.booleans())
    return LSTMInputs(x, h0, c0, lengths, time_major)


@st.composite
def lstm_cases(
    draw: st.DrawFn,
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_layers: int = 2,
    dtypes: Iterable[str] | None = None,
    single_cell: bool = False,
) -> Case:
    """A whole example that every runtime behind ``capabilities`` can run."""
    spec = draw(
        lstm_specs(
            capabilities=capabilities, max_layers=max_layers, dtypes=dtypes, single_cell=single_cell
        )
    )
    weights = draw(lstm_weights(spec))
    return Case(spec, weights, draw(lstm_inputs(spec, capabilities=capabilities)))
