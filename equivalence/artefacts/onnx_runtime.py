"""The onnxruntime end of the ONNX model side: a CPU session over a model held in memory,
feeds cast to the element type a graph input declares, and quiet runs.

Why quiet: a refusal is raised and said once (its first line), not logged by
onnxruntime as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from equivalence.errors import ConversionError


def open_session(model: Any, path: Path) -> Any:
    """A CPU InferenceSession over ``model`` (from its bytes: no path is opened)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ConversionError(f"{path}: onnxruntime cannot load the model "
                              f"({first_line(exc)})") from exc


def as_elem(array: np.ndarray, elem: int) -> np.ndarray:
    """``array`` as the onnx element type ``elem`` (kept as it is where ``elem`` is unknown)."""
    from onnx import helper

    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem) if elem else array.dtype
    except (KeyError, TypeError, ValueError):
        dtype = array.dtype
    return np.ascontiguousarray(array.astype(dtype, copy=False))


def first_line(exc: BaseException) -> str:
    """The first line of onnxruntime's message (what a refusal shows: one line)."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def run_options() -> Any:
    """RunOptions that keep onnxruntime from logging a failed run."""
    import onnxruntime

    options = onnxruntime.RunOptions()
    options.log_severity_level = 4  # a refusal is raised and said once, not logged too
    return options


def dtype_name(elem: int) -> str:
    """numpy's name for the onnx element type ``elem`` (float32 where unknown)."""
    from onnx import helper

    try:
        return str(np.dtype(helper.tensor_dtype_to_np_dtype(elem)))
    except (KeyError, TypeError, ValueError):
        return "float32"
