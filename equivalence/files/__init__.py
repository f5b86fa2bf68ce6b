"""Real files: find the LSTMs in framework files, and write converted weights as files.

``read(path)`` sniffs the file's content (not only its name) and returns every
:class:`FoundLSTM`; ``select`` picks one; ``WRITERS`` write canonical weights.
The ``equivalence inspect`` and ``equivalence convert`` commands live in
:mod:`equivalence.files.cli`. Each module imports its framework lazily.

* keras: reads Keras 3 ``.keras``/``.weights.h5`` and legacy Keras HDF5 models or weights
  (``CuDNNLSTM`` too); writes ``.keras``, ``.weights.h5`` or a tf_keras ``.h5`` model.
* tf1: reads TF checkpoints (``Saver``, ``tf.train.Checkpoint``); writes a checkpoint with
  TF1 cell variable names.
* torch: reads ``torch.save`` state_dicts and safetensors; writes an ``nn.LSTM`` state_dict.
* onnx: reads ``LSTM`` nodes of ONNX models; writes one ``LSTM`` node per layer.
* neoml: reads and writes equivalence case files (``.npz``) for the NeoML environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..formats.tf1 import DEFAULT_FORGET_BIAS
from ._base import FileFormatError, FoundLSTM, detect_kind, select

__all__ = ["FAMILIES", "FileFormatError", "FoundLSTM", "detect_kind", "read", "select"]

# File kind (from detect_kind) -> the format family a user names with --from.
FAMILIES = {
    "keras_h5": "keras",
    "keras_zip": "keras",
    "tf1": "tf1",
    "torch": "torch",
    "safetensors": "torch",
    "onnx": "onnx",
    "npz": "neoml",
}
FAMILY_KINDS = {"keras": "keras_h5", "tf1": "tf1", "torch": "torch", "onnx": "onnx",
                "neoml": "npz"}


def _reader(kind: str, forget_bias: float) -> Callable[[Path], list[FoundLSTM]]:
    if kind == "keras_h5":
        from .keras import read_keras_h5

        return read_keras_h5
    if kind == "keras_zip":
        from .keras import read_keras_zip

        return read_keras_zip
    if kind == "tf1":
        from .tf1 import read_checkpoint

        return lambda path: read_checkpoint(path, forget_bias)
    if kind == "torch":
        from .torch import read_torch

        return read_torch
    if kind == "safetensors":
        from .torch import read_safetensors

        return read_safetensors
    if kind == "onnx":
        from .onnx import read_onnx

        return read_onnx
    if kind == "npz":
        from .neoml import read_case

        return read_case
    raise FileFormatError("?", f"no reader for file kind {kind!r}")


def read(path: str | os.PathLike[str], family: str | None = None,
         forget_bias: float = DEFAULT_FORGET_BIAS) -> list[FoundLSTM]:
    """Every LSTM in ``path``. ``family`` (keras, cudnn, tf1, torch, onnx, neoml) must match
    the file's content; it is also the fallback when the content is not recognized."""
    path = Path(path)
    wanted = "keras" if family == "cudnn" else family
    try:
        kind = detect_kind(path)
    except FileFormatError as exc:
        if wanted is None or "unrecognized" not in exc.problem:
            raise
        kind = FAMILY_KINDS[wanted]
    if wanted is not None and FAMILIES[kind] != wanted:
        raise FileFormatError(path, f"--from {family}, but the content is a "
                                    f"{FAMILIES[kind]} file ({kind})")
    found = _reader(kind, forget_bias)(path)
    if family == "cudnn":
        found = [f for f in found if f.format == "cudnn"]
    return found
