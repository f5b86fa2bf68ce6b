"""equivalence: prove an LSTM computes the same function after its weights change framework.

The core (this package's import) needs numpy only. Frameworks are imported by
the runtime modules that adapt them, and Hypothesis by the checking API.
"""

from __future__ import annotations

from typing import Any

from equivalence.canonical import CellWeights, LSTMWeights, random_weights
from equivalence.convert import convert, from_canonical, to_canonical
from equivalence.errors import (
    ConversionError,
    MissingKeyError,
    ShapeError,
    SpecError,
    UnexpectedKeyError,
    UnknownFormatError,
    UnsupportedFeatureError,
    WeightValueError,
)
from equivalence.formats import FORMATS
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

__version__ = "0.1.0"

__all__ = [
    "FORMATS",
    "CellWeights",
    "ConversionError",
    "LSTMInputs",
    "LSTMResult",
    "LSTMSpec",
    "LSTMWeights",
    "MissingKeyError",
    "ShapeError",
    "SpecError",
    "UnexpectedKeyError",
    "UnknownFormatError",
    "UnsupportedFeatureError",
    "WeightValueError",
    "assert_conversion",
    "assert_implementation",
    "check_conversion",
    "check_implementation",
    "convert",
    "from_canonical",
    "random_weights",
    "to_canonical",
]


# The checking API needs Hypothesis (and check.py imports no framework at module level),
# so it is imported on first use: ``equivalence.check_conversion`` is then the real
# function, with its own signature and docstring for help() and inspect.
_LAZY = {
    "check_conversion": "harness.check",
    "assert_conversion": "harness.check",
    "check_implementation": "harness.implementation",
    "assert_implementation": "harness.implementation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'equivalence' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
