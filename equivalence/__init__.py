"""equivalence: prove an LSTM computes the same function after its weights change framework.

The core (this package's import) needs numpy only. Frameworks are imported by
the runtime modules that adapt them, and Hypothesis by the checking API.
"""

from __future__ import annotations

from typing import Any

from .canonical import CellWeights, LSTMWeights, random_weights
from .convert import convert, from_canonical, to_canonical
from .errors import (
    ConversionError,
    MissingKeyError,
    ShapeError,
    SpecError,
    UnexpectedKeyError,
    UnknownFormatError,
    UnsupportedFeatureError,
    WeightValueError,
)
from .formats import FORMATS
from .io_types import LSTMInputs, LSTMResult
from .spec import LSTMSpec

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


def check_conversion(*args: Any, **kwargs: Any) -> Any:
    """See :func:`equivalence.check.check_conversion` (imported lazily: it needs Hypothesis)."""
    from .check import check_conversion as impl

    return impl(*args, **kwargs)


def assert_conversion(*args: Any, **kwargs: Any) -> Any:
    """See :func:`equivalence.check.assert_conversion`."""
    from .check import assert_conversion as impl

    return impl(*args, **kwargs)


def check_implementation(*args: Any, **kwargs: Any) -> Any:
    """See :func:`equivalence.implementation.check_implementation` (needs Hypothesis)."""
    from .implementation import check_implementation as impl

    return impl(*args, **kwargs)


def assert_implementation(*args: Any, **kwargs: Any) -> Any:
    """See :func:`equivalence.implementation.assert_implementation`."""
    from .implementation import assert_implementation as impl

    return impl(*args, **kwargs)
