"""Hypothesis strategies: LSTM specs, weights, inputs and whole cases.

Named like ``hypothesis.extra.numpy``: plural nouns, keyword-only bounds with
``max_*`` names, arguments checked when the strategy is made (a ConversionError, a
ValueError, naming the argument and what to pass), not at the first draw. The public
four are :func:`lstm_specs`, :func:`lstm_weights`, :func:`lstm_inputs` and
:func:`lstm_cases`; each returns a strategy for :meth:`hypothesis.strategies.DataObject.draw`
or ``@given``. Shapes are drawn from
small sets on purpose: every distinct shape costs a framework a build and a
trace, and small sizes (1 included) are where layout bugs show.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
from hypothesis import strategies as st

from equivalence import cells
from equivalence.canonical import LSTMWeights, random_weights
from equivalence.capabilities import (  # noqa: F401 (Capabilities, joint_capabilities re-exported)
    INITIAL_STATE,
    LENGTHS,
    TIME_MAJOR,
    Capabilities,
    joint_capabilities,
)
from equivalence.case import Case
from equivalence.errors import ConversionError, SpecError, brief
from equivalence.io_types import LSTMInputs
from equivalence.spec import (
    ACTIVATIONS,
    DTYPES,
    MAX_LAYERS,
    RECURRENT_ACTIVATIONS,
    LSTMSpec,
    finite_number,
)

INPUT_SIZES = (1, 2, 3, 5)
UNITS = (1, 2, 4, 6)
STEPS = (1, 3, 6, 9)
BATCHES = (1, 2, 3)
CLIPS = (0.5, 1.0, 3.0)
DEFAULT_CAPABILITIES = Capabilities()  # float32, sigmoid, no optional features


def _check_bound(name: str, value: int, low: int, high: int | None = None) -> None:
    """A ConversionError (a ValueError) naming the argument unless ``low <= value <= high``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        most = f" and <= {high}" if high is not None else ""
        raise ConversionError(f"{name}={brief(value)}: pass an int >= {low}{most}")


def _check_choices(capabilities: object, dtypes: object) -> tuple[str, ...] | None:
    """The caller's capabilities and dtypes checked (dtypes as a tuple, read once)."""
    if not isinstance(capabilities, Capabilities):
        raise ConversionError(
            f"capabilities: got {type(capabilities).__name__}, expected Capabilities")
    if dtypes is None:
        return None
    if isinstance(dtypes, str) or not isinstance(dtypes, Iterable):
        raise ConversionError(f"dtypes: {brief(dtypes)}, expected an iterable of {DTYPES}")
    chosen = tuple(itertools.islice(dtypes, len(DTYPES) * 4 + 1))
    odd = [d for d in chosen if not isinstance(d, str) or d not in DTYPES]
    if odd or not chosen or len(chosen) > len(DTYPES) * 4:
        raise ConversionError(f"dtypes: {brief(chosen)}, expected some of {DTYPES}")
    return chosen


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConversionError(f"{name}={brief(value)}: pass True or False")


def lstm_specs(
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_layers: int = 2,
    dtypes: Iterable[str] | None = None,
    single_cell: bool = False,
    cell: str = "lstm",
) -> st.SearchStrategy[LSTMSpec]:
    """:class:`LSTMSpec` s that every runtime behind ``capabilities`` can run.

    ``capabilities`` (default: float32, sigmoid, no optional feature) bounds the
    features drawn; ``max_layers`` (default 2, at most ``MAX_LAYERS``) the stack
    depth; ``dtypes`` (default None: float32) the precisions allowed, some of
    ``DTYPES``; ``single_cell`` (default False) fixes one layer, one direction;
    ``cell`` (default ``"lstm"``) is the cell type, one of ``capabilities.cells``
    (a GRU drawn with ``reset_after`` both ways where the capabilities hold
    ``"reset_after=False"`` and ``"reset_after=True"``, else the one they hold).
    Sizes come from ``INPUT_SIZES`` and ``UNITS``.
    """
    _check_bound("max_layers", max_layers, 1, MAX_LAYERS)
    chosen = _check_choices(capabilities, dtypes)
    _check_flag("single_cell", single_cell)
    _check_cell(cell, capabilities)
    return _specs(capabilities=capabilities, max_layers=max_layers, dtypes=chosen,
                  single_cell=single_cell, cell=cell)


def _check_cell(cell: object, capabilities: Capabilities) -> None:
    if not isinstance(cell, str) or cell not in capabilities.cells:
        raise ConversionError(f"cell={brief(cell)}: pass one of {sorted(capabilities.cells)} "
                              "(the cells these capabilities run)")


@st.composite
def _specs(
    draw: st.DrawFn,
    *,
    capabilities: Capabilities,
    max_layers: int,
    dtypes: tuple[str, ...] | None,
    single_cell: bool,
    cell: str = "lstm",
) -> LSTMSpec:
    """What :func:`lstm_specs` draws (its arguments already checked).

    Every choice is drawn whatever the capabilities, then masked by them: runtimes
    with different capabilities then see the same shapes for the same draws, so
    the networks built (and the runs shared, :mod:`equivalence.memo`) for one
    check serve the others.
    """
    caps = _masked_for(cell, capabilities)
    limit = min(max_layers, caps.max_layers or max_layers)
    layers = min(draw(st.integers(1, max_layers)), limit)
    directions = draw(st.sampled_from((1, 2)))
    if single_cell or "bidirectional" not in caps:
        layers, directions = (1 if single_cell else layers), 1
    units = draw(st.sampled_from(UNITS))
    wants_projection, projection_draw = draw(st.booleans()), draw(st.integers(1, max(UNITS) - 1))
    projection = None
    if "projection" in caps and units > 1 and wants_projection:
        projection = min(projection_draw, units - 1)  # PyTorch requires P < H
    clips = {name: draw(_optional_clips()) for name in ("cell", "projection", "gate")}
    reversed_draw, coupled_draw = (draw(st.integers(0, 3)) == 0 for _ in range(2))
    # Drawn in the order they always were (input size, peepholes, gate activation, dtype).
    input_size = draw(st.sampled_from(INPUT_SIZES))
    peepholes = draw(st.booleans())
    recurrent_activation = draw(st.sampled_from(RECURRENT_ACTIVATIONS))
    # One wide integer decides the dtype (its value mod 6) and the cell activation (higher
    # bits), so the activation adds no draw and leaves the dtype draws where they were.
    wide = draw(_WIDE)
    # Both variants where both run (one bit of the wide draw), else the one that does.
    reset_before = "reset_after=False" in caps and (
        "reset_after=True" not in caps or wide // 6 // 96 % 2 == 1)
    return LSTMSpec(
        cell=cell,
        reset_after=not reset_before,
        input_size=input_size,
        units=units,
        layers=layers,
        directions=directions,
        projection_size=projection,
        peepholes=peepholes and "peepholes" in caps,
        # Rare (one draw in four) so the forward LSTM stays the common case.
        reverse=reversed_draw and directions == 1 and "reverse" in caps,
        input_forget=coupled_draw and "input_forget" in caps,
        cell_clip=clips["cell"] if "cell_clip" in caps else None,
        projection_clip=clips["projection"] if projection and "projection_clip" in caps else None,
        gate_clip=clips["gate"] if "gate_clip" in caps else None,
        recurrent_activation=_allowed(recurrent_activation, caps.recurrent_activations,
                                      "sigmoid"),
        activation=_allowed(_activation_of(wide), caps.activations, "tanh"),
        dtype=_allowed(_dtype_of(wide), set(dtypes or ("float32",)) & caps.dtypes, "float32"),
    )


def _masked_for(cell: str, capabilities: Capabilities) -> Capabilities:
    """``capabilities`` without the features another cell owns (a GRU has no c, so no
    peepholes, projection, cell clip, forget_bias or coupled gates)."""
    return capabilities.without(*cells.foreign_features(cell))


def dtype_draws() -> st.SearchStrategy[str]:
    """float32 in three draws of six, float16, bfloat16 and float64 one in six each.

    float32 is what people ship, so every check must judge it in at least a third
    of its examples (tests/test_draws.py holds the ci and the report draws to
    that): a uniform draw over the four gave the pairs claiming all of them no
    float32 in the report's 25 examples, as Hypothesis's draws over a few values
    are far from uniform. One wide integer, reduced mod 6, is close to uniform;
    it is drawn whatever the capabilities (see lstm_specs), a check that cannot
    run the precision drawn runs float32, and failures shrink to 0: float32.
    """
    return _WIDE.map(_dtype_of)


_WIDE = st.integers(0, 2**32 - 1)
_OTHER_DTYPES = tuple(d for d in DTYPES if d != "float32")
_OTHER_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "tanh")


def _dtype_of(drawn: int) -> str:
    return "float32" if drawn % 6 < 3 else _OTHER_DTYPES[drawn % 6 - 3]


def _activation_of(drawn: int) -> str:
    """tanh in 3 draws of 4 (what people ship, and what every other feature is checked
    with), each other activation 1 in 24; read from the bits above the dtype's, so
    failures shrink to tanh with the dtype."""
    pick = drawn // 6 % (4 * len(_OTHER_ACTIVATIONS))
    tanh_picks = 3 * len(_OTHER_ACTIVATIONS)
    return "tanh" if pick < tanh_picks else _OTHER_ACTIVATIONS[pick - tanh_picks]


def _optional_clips() -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.sampled_from(CLIPS))


def _allowed(drawn: str, allowed: Iterable[str], fallback: str) -> str:
    """``drawn`` when allowed, else the fallback (or the first allowed value)."""
    allowed = sorted(allowed)
    if drawn in allowed:
        return drawn
    return fallback if fallback in allowed or not allowed else allowed[0]


def lstm_weights(spec: LSTMSpec, *, max_scale: float = 1.0) -> st.SearchStrategy[LSTMWeights]:
    """Canonical weights for ``spec``, rounded to ``spec.dtype`` so every side sees the same values.

    Values come from a drawn seed (fast, and shrinks towards seed 0) with a drawn
    scale of 0.1, 0.5 or ``max_scale`` (default 1.0, a positive finite number), so
    both near-linear and saturating gates are exercised.
    """
    _check_spec(spec)
    scale = finite_number("max_scale", max_scale)
    if not scale > 0:
        raise ConversionError(f"max_scale={brief(max_scale)}: pass a positive number, e.g. 1.0")
    return _weights(spec, max_scale=scale)


def _check_spec(spec: object) -> None:
    if not isinstance(spec, LSTMSpec):
        raise SpecError(f"spec: got {type(spec).__name__}, expected LSTMSpec (draw one "
                              "from lstm_specs())")


@st.composite
def _weights(draw: st.DrawFn, spec: LSTMSpec, *, max_scale: float) -> LSTMWeights:
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from((0.1, 0.5, max_scale)))
    weights = random_weights(spec, np.random.default_rng(seed), scale=scale)
    return weights.astype(spec.dtype)


def lstm_inputs(
    spec: LSTMSpec,
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_batch: int = 3,
    max_steps: int = 9,
) -> st.SearchStrategy[LSTMInputs]:
    """:class:`LSTMInputs` for ``spec``: batch-first data, and where ``capabilities``
    allow, initial states, sequence lengths and time-major layout (each drawn on or off).

    ``max_batch`` (default 3) and ``max_steps`` (default 9) are ints >= 1 bounding the
    sizes drawn from ``BATCHES`` and ``STEPS`` (1 when none fits).
    """
    _check_spec(spec)
    _check_choices(capabilities, None)
    _check_bound("max_batch", max_batch, 1)
    _check_bound("max_steps", max_steps, 1)
    return _inputs(spec, capabilities=capabilities, max_batch=max_batch, max_steps=max_steps)


@st.composite
def _inputs(draw: st.DrawFn, spec: LSTMSpec, *, capabilities: Capabilities, max_batch: int,
            max_steps: int) -> LSTMInputs:
    batch = draw(st.sampled_from([b for b in BATCHES if b <= max_batch] or [1]))
    steps = draw(st.sampled_from([t for t in STEPS if t <= max_steps] or [1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.float64 if spec.dtype == "float64" else np.float32
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(dtype)
    # Everything is drawn whatever the capabilities, then masked (see lstm_specs).
    shape = (spec.layers, spec.directions, batch)
    h0: np.ndarray | None = rng.uniform(-1, 1, (*shape, spec.output_size)).astype(dtype)
    c0: np.ndarray | None = rng.uniform(-1, 1, (*shape, spec.units)).astype(dtype)
    if "c" not in spec.state_names:
        c0 = None
    drawn = rng.integers(1, steps + 1, size=batch)
    drawn[rng.integers(batch)] = steps  # frameworks size outputs by the longest sequence
    lengths: np.ndarray | None = drawn
    wants_state, wants_lengths, wants_time_major = (draw(st.booleans()) for _ in range(3))
    if not (INITIAL_STATE in capabilities and wants_state):
        h0 = c0 = None
    if not (LENGTHS in capabilities and steps > 1 and wants_lengths):
        lengths = None
    time_major = TIME_MAJOR in capabilities and wants_time_major
    return LSTMInputs(x, h0, c0, lengths, time_major)


def lstm_cases(
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
    max_layers: int = 2,
    dtypes: Iterable[str] | None = None,
    single_cell: bool = False,
    max_scale: float = 1.0,
    max_batch: int = 3,
    max_steps: int = 9,
    cell: str = "lstm",
) -> st.SearchStrategy[Case]:
    """Whole examples (:class:`Case`: spec, weights, inputs) that every runtime behind
    ``capabilities`` can run; the arguments and defaults are those of :func:`lstm_specs`,
    :func:`lstm_weights` and :func:`lstm_inputs`, checked here."""
    specs = lstm_specs(capabilities=capabilities, max_layers=max_layers, dtypes=dtypes,
                       single_cell=single_cell, cell=cell)
    lstm_weights(LSTMSpec(1, 1), max_scale=max_scale)  # the arguments' checks, now
    lstm_inputs(LSTMSpec(1, 1), capabilities=capabilities, max_batch=max_batch,
                max_steps=max_steps)
    return _cases(specs, capabilities, float(max_scale), max_batch, max_steps)


@st.composite
def _cases(draw: st.DrawFn, specs: st.SearchStrategy[LSTMSpec], capabilities: Capabilities,
           max_scale: float, max_batch: int, max_steps: int) -> Case:
    spec = draw(specs)
    weights = draw(lstm_weights(spec, max_scale=max_scale))
    inputs = draw(lstm_inputs(spec, capabilities=capabilities, max_batch=max_batch,
                              max_steps=max_steps))
    return Case(spec, weights, inputs)
