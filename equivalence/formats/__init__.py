"""The registry of native weight formats (pure numpy).

Each format is a pair of functions through the canonical form plus the spec
features it can hold. Adding a format means adding a module and a row here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from equivalence.canonical import LSTMWeights
from equivalence.capabilities import TIME_MAJOR, Capabilities
from equivalence.errors import ConversionError, UnknownFormatError, brief, describe
from equivalence.formats import cudnn, flat, flax, keras, mlx, neoml, onnx, tf1, torch


@dataclass(frozen=True)
class Format:
    """One native weight format."""

    name: str
    to_canonical: Callable[..., LSTMWeights]
    from_canonical: Callable[..., Any]
    supported: frozenset[str]
    summary: str
    # holds a GRU with reset_after=True (False: tf1's GRUCell, the reset-before variant only)
    reset_after: bool = True
    # bias vectors an LSTM keeps per gate block: 2 (input and recurrent apart, as canonical
    # weights are) or 1 (summed: reading gives the recurrent bias as zeros)
    lstm_biases: int = 2
    # one flat parameter vector (its reader needs the spec), not named arrays
    flat: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "to_canonical", _typed(self.to_canonical, self.name, "reading"))
        object.__setattr__(
            self, "from_canonical", _typed(self.from_canonical, self.name, "writing")
        )

    @property
    def cells(self) -> frozenset[str]:
        """The cell types this format holds: LSTM, and those it declares (``cell=gru``)."""
        return frozenset({"lstm"} | {f.split("=", 1)[1] for f in self.supported
                                     if f.startswith("cell=")})

    def capabilities(self) -> Capabilities:
        """What this format can hold, in the runtimes' vocabulary (for strategies)."""
        # SUPPORTED holds names of the same vocabulary; any format takes the inputs a run
        # needs (they are not weights), the defaults, and the dtypes every format stores.
        held = set(self.supported)
        return Capabilities.of(*held, TIME_MAJOR, cells=self.cells,
                               dtypes=("float16", "float32", "float64"),
                               activations=("tanh",), recurrent_activations=("sigmoid",),
                               lacks=(*(() if "bidirectional" in held else ("bidirectional",)),
                                      *(() if self.reset_after else ("reset_after=True",))))


def _typed(fn: Callable[..., Any], name: str, action: str) -> Callable[..., Any]:
    """``fn`` raising only ConversionErrors: the caller's objects are foreign code.

    A Mapping whose ``__getitem__`` raises, a list that contains itself, an exception
    whose ``__str__`` raises: whatever escapes a format's own checks is reported as
    one ConversionError naming the format and the original exception (chained).
    SystemExit and KeyboardInterrupt are not Exceptions and pass through.
    """

    accepted = sorted(
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )

    @functools.wraps(fn)
    def typed(*args: Any, **kwargs: Any) -> Any:
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ConversionError(f"option {unknown[0]!r}: not accepted by {name} {action} "
                                  f"(options: {accepted})")
        try:
            return fn(*args, **kwargs)
        except ConversionError:
            raise
        except Exception as exc:
            raise ConversionError(f"{name}: {action} the weights failed ({describe(exc)})"
                                  ) from exc

    return typed


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "keras",
            keras.to_canonical,
            keras.from_canonical,
            keras.SUPPORTED,
            "[kernel (I,4H), recurrent_kernel (H,4H), bias (4H)] per LSTM",
            lstm_biases=1,
        ),
        Format(
            "cudnn",
            cudnn.to_canonical,
            cudnn.from_canonical,
            cudnn.SUPPORTED,
            "CuDNNLSTM: [kernel, recurrent_kernel, bias (8H)] in cuDNN layout",
        ),
        Format(
            "cudnn_params",
            flat.cudnn_params_to_canonical,
            flat.cudnn_params_from_canonical,
            flat.CUDNN_PARAMS_SUPPORTED,
            "flat cuDNN parameter buffer",
            flat=True,
        ),
        Format(
            "tf1",
            tf1.to_canonical,
            tf1.from_canonical,
            tf1.SUPPORTED,
            "LSTMCell [kernel (I+H,4H), bias (4H)] or checkpoint variables",
            reset_after=False,  # GRUCell: reset-before only
            lstm_biases=1,
        ),
        Format(
            "torch", torch.to_canonical, torch.from_canonical, torch.SUPPORTED, "nn.LSTM state_dict"
        ),
        Format(
            "onnx",
            onnx.to_canonical,
            onnx.from_canonical,
            onnx.SUPPORTED,
            "LSTM node W (D,4H,I), R (D,4H,H), B (D,8H), P (D,3H)",
        ),
        Format(
            "neoml",
            neoml.to_canonical,
            neoml.from_canonical,
            neoml.SUPPORTED,
            "Lstm input/recurrent weights and free terms, gates g f i o",
            reset_after=False,  # Gru: reset-before only
        ),
        Format(
            "flax",
            flax.to_canonical,
            flax.from_canonical,
            flax.SUPPORTED,
            "linen LSTMCell / OptimizedLSTMCell or nnx OptimizedLSTMCell params",
            lstm_biases=1,
        ),
        Format(
            "mlx",
            mlx.to_canonical,
            mlx.from_canonical,
            mlx.SUPPORTED,
            "mlx.nn.LSTM parameters Wx (4H,I), Wh (4H,H), one bias (4H)",
            lstm_biases=1,
        ),
        Format(
            "jax_rnn",
            flat.jax_rnn_to_canonical,
            flat.jax_rnn_from_canonical,
            flat.SUPPORTED,
            "jax.experimental.rnn flat weight vector",
            flat=True,
        ),
    )
}


def get(name: str) -> Format:
    """The format called ``name``; an unknown name lists the known ones."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise UnknownFormatError(
            f"format: {brief(name)} is unknown, expected one of {sorted(FORMATS)}"
        ) from None
