"""Real files: find the LSTMs in framework files, and write converted weights as files.

``read(path)`` sniffs the file's content (not only its name) and returns every
:class:`FoundLSTM`; ``select`` picks one. Which formats exist, how each is
recognized, read, written and run is one registry, :mod:`equivalence.files.registry`.
The ``equivalence inspect`` and ``equivalence convert`` commands live in
:mod:`equivalence.files.cli`; ``convert_file`` and ``verify`` are the same from Python
(:mod:`equivalence.files.api`). Each module imports its framework lazily.

* keras: reads Keras 3 ``.keras``/``.weights.h5`` and legacy Keras HDF5 models or weights
  (``CuDNNLSTM`` too); writes ``.keras``, ``.weights.h5`` or a tf_keras ``.h5`` model.
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

from ._base import FileFormatError, FoundLSTM, StoredInputs, select

# ``verify`` here is the function (the module stays equivalence.files.verify in
# sys.modules: ``from equivalence.files.verify import ...`` still reaches it).
from .api import FileConversion, Verification, convert_file, verify
from .registry import FAMILIES, KINDS, detect_kind, read

__all__ = ["FAMILIES", "KINDS", "FileConversion", "FileFormatError", "FoundLSTM",
           "StoredInputs", "Verification", "convert_file", "detect_kind", "read", "select",
           "verify"]
