"""Real files: find the LSTMs in framework files, and write converted weights as files.

``read(path)`` sniffs the file's content (not only its name) and returns every
:class:`FoundLSTM`; ``select`` picks one. Which formats exist, how each is
recognized, read, written and run is one registry, :mod:`equivalence.files.registry`.
The ``equivalence inspect`` and ``equivalence convert`` commands live in
:mod:`equivalence.cli.files`; ``convert_file`` and ``verify`` are the same from Python
(:mod:`equivalence.cli.files_api`). Each module imports its framework lazily.

* keras: reads Keras 3 ``.keras``/``.weights.h5`` and legacy Keras HDF5 models or weights
  (``CuDNNLSTM`` and ``CuDNNGRU`` too); writes ``.keras``, ``.weights.h5`` or a tf_keras
  ``.h5`` model.
* tf1: reads TF checkpoints (``Saver``, ``tf.train.Checkpoint``); writes a checkpoint with
  TF1 cell variable names.
* torch: reads ``torch.save`` files, TorchScript archives (both without executing their
  pickles) and safetensors; writes an ``nn.LSTM`` state_dict.
* onnx: reads ``LSTM`` nodes of ONNX models, in subgraphs too, with weights folded from
  constant-only subgraphs; writes one ``LSTM`` node per layer.
* neoml: reads and writes equivalence case files (``.npz``) for the NeoML environment.

Every reader works under :mod:`equivalence.files.limits`: nothing from a file is
executed, no reference out of it is followed, declared sizes are checked first.
"""

from __future__ import annotations

from typing import Any

from equivalence.files._base import FileFormatError, FoundLSTM, StoredInputs, select
from equivalence.files.registry import FAMILIES, KINDS, detect_kind, read

__all__ = ["FAMILIES", "KINDS", "FileConversion", "FileFormatError", "FoundLSTM",
           "StoredInputs", "Verification", "convert_file", "detect_kind", "read", "select",
           "verify"]

# ``convert_file`` and ``verify`` are the ``convert`` command's own code called from Python;
# that code sits above the readers (it judges through ``equivalence.artefacts``), so the
# names are bound on first use rather than imported here, which would make a circle.
_FROM_THE_COMMAND = ("FileConversion", "Verification", "convert_file", "verify")


def __getattr__(name: str) -> Any:
    if name not in _FROM_THE_COMMAND:
        raise AttributeError(f"module 'equivalence.files' has no attribute {name!r}")
    from equivalence.cli import files_api

    value = getattr(files_api, name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FROM_THE_COMMAND))
