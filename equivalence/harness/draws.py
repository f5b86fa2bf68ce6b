"""What ``check_conversion`` and ``check_implementation`` may draw: their keywords, checked.

A user pins their own model (``layers=2, directions=2, input_size=40``) or
narrows the features (``initial_state=False``). Every keyword is checked before
anything runs, against what both sides can run, and a wrong one raises a
ConversionError naming the argument and the fix. The draws themselves are the
suite's (:func:`equivalence.strategies.lstm_specs`), with the pinned fields
replaced: sizes down to 1 and the features masked the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from equivalence import cells
from equivalence.capabilities import INITIAL_STATE, LENGTHS, TIME_MAJOR, Capabilities
from equivalence.case import Case
from equivalence.errors import ConversionError, brief, describe
from equivalence.spec import DTYPES, MAX_LAYERS, LSTMSpec
from equivalence.strategies import INPUT_SIZES, UNITS, lstm_inputs, lstm_specs, lstm_weights

# The check's keywords a caller may turn off (True: keep, and the pair must have it), and
# the capability name each stands for.
FEATURES = {
    **{name: name for name in ("reverse", "peepholes", "cell_clip", "projection_clip",
                               "gate_clip", "input_forget")},
    "initial_state": INITIAL_STATE, "lengths": LENGTHS, "time_major": TIME_MAJOR,
}
_MAX_CHOICES = 64  # allowed values read from one keyword: a range of sizes, not a stream


@dataclass(frozen=True)
class Draws:
    """The allowed values of every pinned field, and the capabilities drawn from."""

    capabilities: Capabilities
    layers: tuple[int, ...] = (1,)
    directions: tuple[int, ...] = (1,)
    input_sizes: tuple[int, ...] = INPUT_SIZES
    units: tuple[int, ...] = UNITS
    projection: bool | int | None = None  # None: where both sides have it
    dtypes: tuple[str, ...] = ("float32",)
    cell: str = "lstm"
    reset_after: bool | None = None  # a GRU's variant pinned; None: drawn where both run


def _choices(name: str, value: object, low: int, high: int, hint: str) -> tuple[int, ...]:
    """An int or a sequence (range, list) of ints in [low, high], sorted: draws shrink to the
    smallest."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else None
    if values is None and isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        values = _read(name, value, _MAX_CHOICES + 1)
    odd = values is None or not values or len(values) > _MAX_CHOICES or any(
        isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high for v in values)
    if odd:
        raise ConversionError(f"{name}={brief(value)}: pass an int in [{low}, {high}] or a "
                              f"sequence of at most {_MAX_CHOICES} of them, e.g. {hint}")
    return tuple(sorted(set(values)))  # type: ignore[arg-type]


def _read(name: str, values: Iterable[Any], most: int) -> list[Any]:
    """At most ``most`` items of the caller's iterable; its own failure named, as ours."""
    try:
        return list(itertools.islice(values, most))
    except Exception as exc:  # an iterable whose __iter__ or __next__ raises
        raise ConversionError(f"{name}: iterating it raised {describe(exc)}") from exc


def parse(caps: Capabilities, pair: str, *, layers: object = 1, directions: object = 1,
          input_size: object = None, units: object = None, projection: object = None,
          dtypes: object = ("float32",), features: dict[str, Any] | None = None,
          cell: object = "lstm", reset_after: object = None) -> Draws:
    """The keywords of a check, checked against ``caps`` (what ``pair`` can run)."""
    features = features or {}
    caps = _cell_capabilities(caps, pair, cell, reset_after)
    for name, value in features.items():
        if name not in FEATURES:
            raise ConversionError(f"{name}: not a keyword of the check; features it takes: "
                                  f"{', '.join(FEATURES)}")
        if not isinstance(value, bool):
            raise ConversionError(f"{name}={brief(value)}: pass True or False")
        if value and FEATURES[name] not in caps:
            raise ConversionError(f"{name}=True: {pair} cannot run {name}; pass {name}=False "
                                  "or leave it out")
    caps = caps.without(*(FEATURES[k] for k, v in features.items() if not v))
    draws = Draws(
        caps,
        layers=_choices("layers", layers, 1, min(MAX_LAYERS, caps.max_layers or MAX_LAYERS),
                        "layers=2 or layers=[1, 2, 3]"),
        directions=_choices("directions", directions, 1, 2 if "bidirectional" in caps else 1,
                            "directions=2 or directions=[1, 2]" + (
                                "" if "bidirectional" in caps else
                                f" ({pair} is not bidirectional)")),
        input_sizes=INPUT_SIZES if input_size is None else _choices(
            "input_size", input_size, 1, 1 << 20, "input_size=40 or input_size=range(1, 9)"),
        units=UNITS if units is None else _choices(
            "units", units, 1, 1 << 20, "units=128 or units=range(1, 9)"),
        projection=_projection(projection, caps, pair),
        dtypes=_dtypes(dtypes, caps, pair),
        cell=str(cell),
        reset_after=reset_after if isinstance(reset_after, bool) else None,
    )
    _check_sizes(draws)
    return draws


def _cell_capabilities(caps: Capabilities, pair: str, cell: object,
                       reset_after: object) -> Capabilities:
    """``caps`` narrowed to the cell asked for: a GRU's variant pinned by ``reset_after``
    (None: both where both sides hold both)."""
    if not isinstance(cell, str) or cell not in cells.NAMES:
        raise ConversionError(f"cell={brief(cell)}: pass one of {list(cells.NAMES)}")
    if cell not in caps.cells:
        raise ConversionError(f"cell={cell!r}: {pair} cannot run a {cell.upper()}; it runs "
                              f"{sorted(caps.cells)}")
    if reset_after is None:
        return caps
    if not isinstance(reset_after, bool) or cell != "gru":
        raise ConversionError(f"reset_after={brief(reset_after)}: pass True or False, with "
                              "cell='gru' (the GRU's variant), or leave it out")
    if f"reset_after={reset_after}" not in caps:
        where = "after" if reset_after else "before"
        raise ConversionError(f"reset_after={reset_after}: {pair} cannot run a GRU with the "
                              f"reset gate {where} the matmul; pass reset_after={not reset_after}")
    return caps


def _projection(value: object, caps: Capabilities, pair: str) -> bool | int | None:
    if value is None or value is False:
        return value  # type: ignore[return-value]
    if value is not True and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConversionError(f"projection={brief(value)}: pass None (where both sides have "
                              "it), False, True, or the projection size (an int >= 1)")
    if "projection" not in caps:
        raise ConversionError(f"projection={value}: {pair} cannot run a projection; pass "
                              "projection=False or leave it out")
    return value  # type: ignore[return-value]


def _dtypes(value: object, caps: Capabilities, pair: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Iterable):
        raise ConversionError(f"dtypes={brief(value)}: pass some of {DTYPES}, e.g. "
                              "dtypes=['float32']")
    chosen = tuple(_read("dtypes", value, len(DTYPES) + 1))
    if not chosen or any(not isinstance(d, str) or d not in DTYPES for d in chosen):
        raise ConversionError(f"dtypes={brief(chosen)}: pass some of {DTYPES}, e.g. "
                              "dtypes=['float32']")
    refused = sorted(set(chosen) - caps.dtypes)
    if refused:
        raise ConversionError(f"dtypes: {pair} cannot run {', '.join(refused)}; it runs "
                              f"{sorted(caps.dtypes)}")
    return tuple(sorted(set(chosen), key=DTYPES.index))


def _check_sizes(draws: Draws) -> None:
    """The largest network the keywords allow must be a valid spec (sizes capped)."""
    projection = draws.projection
    if isinstance(projection, bool) and projection and max(draws.units) < 2:
        raise ConversionError("projection=True: needs units >= 2 (the projection is smaller "
                              "than the cell)")
    if not isinstance(projection, bool) and isinstance(projection, int) and (
            projection >= min(draws.units)):
        raise ConversionError(f"projection={projection}: must be smaller than every allowed "
                              f"units value (units={list(draws.units)})")
    try:
        LSTMSpec(max(draws.input_sizes), max(draws.units), layers=max(draws.layers),
                 directions=max(draws.directions))
    except ConversionError as exc:
        raise ConversionError(f"layers/directions/input_size/units: the largest network they "
                              f"allow is refused: {exc}") from exc


@st.composite
def cases(draw: st.DrawFn, draws: Draws) -> Case:
    """A whole example within ``draws``: the suite's draws, the pinned fields replaced."""
    caps = draws.capabilities
    base = draw(lstm_specs(capabilities=caps.without("projection"),
                           max_layers=1, dtypes=draws.dtypes, single_cell=True,
                           cell=draws.cell))
    layers = draw(st.sampled_from(draws.layers))
    directions = draw(st.sampled_from(draws.directions))
    units = draw(st.sampled_from(draws.units))
    projection = _drawn_projection(draw, draws, units)
    spec = base.replace(
        layers=layers, directions=directions, units=units,
        input_size=draw(st.sampled_from(draws.input_sizes)),
        reverse=base.reverse and directions == 1,
        projection_size=projection,
        projection_clip=(draw(st.sampled_from((None, 1.0))) if projection
                         and "projection_clip" in caps else None),
    )
    if draws.reset_after is not None:
        spec = spec.replace(reset_after=draws.reset_after)
    weights = draw(lstm_weights(spec))
    return Case(spec, weights, draw(lstm_inputs(spec, capabilities=caps)))


def _drawn_projection(draw: st.DrawFn, draws: Draws, units: int) -> int | None:
    wanted = draws.projection
    if wanted is False or units < 2 or "projection" not in draws.capabilities or (
            draws.cell != "lstm"):
        return None
    if not isinstance(wanted, bool) and isinstance(wanted, int):
        return wanted
    if wanted is None and not draw(st.booleans()):
        return None
    return draw(st.integers(1, units - 1))  # PyTorch requires P < H
