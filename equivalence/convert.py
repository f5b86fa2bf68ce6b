"""``convert``: native -> canonical -> native, with options routed to each side."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from equivalence.canonical import LSTMWeights
from equivalence.errors import ConversionError
from equivalence.formats import get


def _accepted(fn: Callable[..., Any]) -> set[str]:
    return {
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def split_options(
    source: str, target: str, options: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each option to the reader, the writer, or both (an option neither takes is an error).

    Use ``source_options=``/``target_options=`` dicts when one name means
    different things on each side (e.g. tf1 -> tf1 with another forget_bias).
    """
    options = dict(options)
    read = dict(options.pop("source_options", None) or {})
    write = dict(options.pop("target_options", None) or {})
    reader, writer = _accepted(get(source).to_canonical), _accepted(get(target).from_canonical)
    for name, value in options.items():
        if name not in reader | writer:
            raise ConversionError(
                f"option {name!r}: not accepted by {source} (reads: {sorted(reader)}) "
                f"or {target} (writes: {sorted(writer)})"
            )
        if name in reader:
            read.setdefault(name, value)
        if name in writer:
            write.setdefault(name, value)
    return read, write


def to_canonical(weights: Any, source: str, **options: Any) -> LSTMWeights:
    """Native weights of ``source`` -> canonical :class:`LSTMWeights`."""
    return get(source).to_canonical(weights, **options)


def from_canonical(weights: LSTMWeights, target: str, **options: Any) -> Any:
    """Canonical weights -> native weights of ``target``."""
    if not isinstance(weights, LSTMWeights):
        raise ConversionError(f"weights: got {type(weights).__name__}, expected LSTMWeights")
    return get(target).from_canonical(weights, **options)


def convert(weights: Any, *, source: str, target: str, **options: Any) -> Any:
    """Convert native ``weights`` of ``source`` into native weights of ``target``.

    Options go to whichever side accepts them, e.g.
    ``convert(w, source="tf1", target="keras", forget_bias=1.0)``.
    Features the target cannot hold raise :class:`UnsupportedFeatureError`.
    """
    get(source), get(target)  # unknown names fail before any work
    read, write = split_options(source, target, options)
    return from_canonical(to_canonical(weights, source, **read), target, **write)
