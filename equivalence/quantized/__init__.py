"""Quantized LSTMs: each quantization path judged against the quantized oracle.

One module per path (:mod:`.torch_dynamic`, :mod:`.onnxruntime_dynamic`,
:mod:`.litert`, :mod:`.openvino_nncf`), one for the oracle and its bound
(:mod:`.oracle`); :func:`run_all` runs every path on :data:`SHAPES` and returns
one :class:`~.result.QuantizedResult` per path and shape, the ``quantized`` key of
the results JSON. A path that cannot convert or run here is a record with the
reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from equivalence.errors import describe
from equivalence.quantized.oracle import MATCHES, WRONG
from equivalence.quantized.result import FAILED, NOT_RUN, QuantizedResult, failed
from equivalence.spec import LSTMSpec

__all__ = ["FAILED", "MATCHES", "NOT_RUN", "SHAPES", "WRONG", "QuantizedResult", "run_all"]

# Small, stacked, and large enough (1024 elements a matrix) for LiteRT's dynamic range.
SHAPES = (LSTMSpec(3, 4), LSTMSpec(5, 6, layers=2), LSTMSpec(16, 16))


def _paths() -> list[tuple[str, Callable[[LSTMSpec, int, int], QuantizedResult]]]:
    from equivalence.quantized import litert, onnxruntime_dynamic, openvino_nncf, torch_dynamic

    paths: list[tuple[str, Callable[[LSTMSpec, int, int], QuantizedResult]]] = [
        (torch_dynamic.PATH, torch_dynamic.run),
        (onnxruntime_dynamic.PATH, onnxruntime_dynamic.run),
        (f"{onnxruntime_dynamic.PATH}, reduce_range",
         lambda s, e, seed: onnxruntime_dynamic.run(s, e, seed, reduce_range=True)),
    ]

    def litert_path(mode: str) -> Callable[[LSTMSpec, int, int], QuantizedResult]:
        return lambda s, e, seed: litert.run(s, mode, e, seed)  # this mode, not the loop's last

    for mode in litert.MODES:
        paths.append((f"litert {mode}", litert_path(mode)))
    paths.append((openvino_nncf.PATH, openvino_nncf.run))
    return paths


def run_all(examples: int, seed: int, shapes: tuple[LSTMSpec, ...] = SHAPES
            ) -> list[QuantizedResult]:
    """Every path on every shape (``examples`` random LSTMs each), plus the loop-form probes."""
    from equivalence.quantized import litert

    results = []
    for name, run in _paths():
        for spec in shapes:
            try:
                results.append(run(spec, examples, seed))
            except Exception as exc:  # a path that breaks is a finding, kept with its reason
                results.append(failed(name, "", spec, describe(exc)))
    for mode in ("int8", "int16x8"):
        probe = litert.loop_form_probe(shapes[0], mode)
        if probe is not None:
            results.append(probe)
    return results
