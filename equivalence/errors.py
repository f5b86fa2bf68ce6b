"""The library's exception types.

Every error raised for bad input derives from :class:`ConversionError`, so a
caller can catch one type. Messages name the field, what was found and what
was expected, because "shapes do not match" alone leaves a user guessing.
"""

from __future__ import annotations

import os
import reprlib


class ConversionError(ValueError):
    """Base class: the weights, the options or the call cannot be converted."""


class UnknownFormatError(ConversionError):
    """A format or runtime name that the library does not know."""


class ShapeError(ConversionError):
    """An array whose shape disagrees with the spec or with its siblings."""

    def __init__(self, field: str, found: object, expected: object, why: str = "") -> None:
        self.field, self.found, self.expected = field, found, expected
        detail = f" ({why})" if why else ""
        super().__init__(f"{field}: shape {found}, expected {expected}{detail}")


class MissingKeyError(ConversionError):
    """A weight that the format requires is absent."""


class UnexpectedKeyError(ConversionError):
    """A key or array that the format does not define."""


class WeightValueError(ConversionError):
    """Weights of the wrong kind: integer, complex, object or non-finite."""


class UnsupportedFeatureError(ConversionError):
    """The target format or runtime cannot hold a feature the weights use."""

    def __init__(self, target: str, feature: str, detail: str = "") -> None:
        self.target, self.feature = target, feature
        extra = f": {detail}" if detail else ""
        super().__init__(f"{target} cannot represent {feature}{extra}")


class SpecError(ConversionError):
    """An LSTMSpec with inconsistent or out-of-range fields."""


class FileFormatError(ConversionError):
    """A file that cannot be read or written as asked; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def describe(exc: BaseException) -> str:
    """``Type: message`` of a foreign exception, bounded, even when its ``__str__`` raises.

    Messages about a caller's objects must never fail themselves: an exception
    whose ``__str__`` raises would otherwise escape from the handler reporting it.
    """
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be formatted)"
    if len(text) > 500:
        text = text[:500] + "..."
    return f"{name}: {text}" if text else name


def brief(value: object) -> str:
    """A bounded ``repr`` of a caller's value that never raises (reprlib's limits)."""
    return _REPR.repr(value)


def _bounded_repr() -> reprlib.Repr:
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 80
    return shortener


_REPR = _bounded_repr()
