"""PyTorch files: ``torch.save`` state_dicts (zip or legacy pickle) and safetensors.

Reading: the pickle is read by :mod:`equivalence.files.torch.unpickler`, which
rebuilds tensors from their storage bytes and runs nothing (a pickled
``nn.Module`` or any other Python object is refused by name), so torch is not
needed to read. Every tensor in the file (nested dicts such as
``{"model_state_dict": {...}, "epoch": 3}`` are walked) whose key ends in
``weight_ih_l{k}[_reverse]``, ``weight_hh_...``, ``bias_ih_...``,
``bias_hh_...`` or ``weight_hr_...`` is grouped by the prefix before it, so
``encoder.lstm.weight_ih_l0`` belongs to the LSTM ``encoder.lstm``. An
``nn.LSTMCell``'s keys (``weight_ih`` without ``_l0``) count as a one-layer
LSTM. A group whose ``weight_hh`` is (3H, H) is an ``nn.GRU`` (``nn.GRUCell``
without ``_l0``), read with ``cell="gru"``; other groups (not (4H, H) or (4H, P):
plain RNNs) are skipped; layer numbers must run 0..L-1 (at most
:data:`~equivalence.files.limits.MAX_LAYERS`). Only the tensors of found LSTMs
are materialized. safetensors files are read with ``safetensors.numpy``; MLX's
LSTM keys in them are found too (:mod:`equivalence.files.mlx`).

Writing: a state_dict for ``nn.LSTM(I, H, num_layers=L, bidirectional=...,
batch_first=True[, proj_size=P])`` (``nn.GRU`` for a GRU; ``batch_first`` changes no
weight), via
``torch.save`` or, for a ``.safetensors`` name, ``safetensors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.files._base import FileFormatError, FoundLSTM, atomic_output
from equivalence.files.limits import MAX_LAYERS, open_zip
from equivalence.files.torch.unpickler import LazyTensor, flatten, load_archive, load_legacy
from equivalence.formats import get as get_format

_KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<key>(?:weight|bias)_(?:ih|hh|hr)(?:_l(?P<layer>\d{1,9})(?:_reverse)?)?)$")


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, LazyTensor):
        return value.array()
    return np.asarray(value)


def read_torch(path: Path) -> list[FoundLSTM]:
    """LSTMs in a ``torch.save`` file (zip archive or legacy stream), read without torch."""
    with open(path, "rb") as handle:
        zipped = handle.read(4) == b"PK\x03\x04"
    if zipped:
        with open_zip(path, "torch archive") as archive:
            tree, _ = load_archive(archive, path, "data.pkl")
    else:
        tree = load_legacy(path)
    tensors = flatten(tree, str(path))
    if not tensors:
        raise FileFormatError(path, f"no tensors in this torch file (it holds a "
                                    f"{type(tree).__name__})")
    return found_in(tensors, path, "torch.save file")


def read_safetensors(path: Path) -> list[FoundLSTM]:
    """LSTMs in a safetensors file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, ValueError) as exc:
        raise FileFormatError(path, f"corrupted or truncated safetensors file ({exc})") from exc
    except TypeError as exc:  # e.g. bfloat16, which numpy cannot hold
        raise FileFormatError(path, f"safetensors dtype numpy cannot read ({exc})") from exc
    from equivalence.files import mlx  # MLX's save_weights writes safetensors too

    return found_in(tensors, path, "safetensors file") + mlx.found_in(
        tensors, path, "safetensors file")


def found_in(tensors: Mapping[str, Any], path: Path, kind: str) -> list[FoundLSTM]:
    """One FoundLSTM per group of LSTM keys (see the module docstring)."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match:
            groups.setdefault(match.group("prefix"), {})[match.group("key")] = value
    found = []
    for prefix, group in groups.items():
        entry = _entry(prefix, group, path, kind)
        if entry is not None:
            found.append(entry)
    return found


def _layer_problem(group: Mapping[str, Any]) -> str | None:
    """Why the layer numbers in ``group``'s keys are not 0..L-1, if they are not."""
    layers = {int(m.group("layer")) for k in group if (m := _KEY.match(k)) and m.group("layer")}
    if not layers:
        return None
    if max(layers) >= MAX_LAYERS:
        return f"layer number {max(layers)} in a key, over the {MAX_LAYERS}-layer cap"
    if layers != set(range(len(layers))):
        return f"layer numbers {sorted(layers)[:8]} are not 0..L-1"
    return None


def _entry(prefix: str, lazy: dict[str, Any], path: Path, kind: str) -> FoundLSTM | None:
    notes, cell = [], "weight_ih" in lazy
    if cell:  # nn.LSTMCell: the same arrays as a one-layer nn.LSTM, without the _l0 suffix
        lazy = {f"{k}_l0": v for k, v in lazy.items()
                if (m := _KEY.match(k)) is not None and not m.group("layer")}
    name = prefix[:-1] if prefix.endswith(".") else (prefix or "lstm")
    problem = _layer_problem(lazy)
    if problem:  # said before anything else looks at (or enumerates) the layers
        return FoundLSTM(name=name, format="torch", native={}, source=str(path), kind=kind,
                         problem=problem)
    hh, hr = lazy.get("weight_hh_l0"), lazy.get("weight_hr_l0")
    if hh is None or len(hh.shape) != 2:
        return None
    units = hr.shape[1] if hr is not None and len(hr.shape) == 2 else hh.shape[1]
    gru = hr is None and hh.shape[0] == 3 * units
    if hh.shape[0] != 4 * units and not gru:
        return None  # an RNN (H rows)
    layer = "GRU" if gru else "LSTM"
    name = "gru" if gru and not prefix else name
    if cell:
        notes.append(f"nn.{layer}Cell keys (read as a one-layer {layer})")
    group = {key: _numpy(value) for key, value in lazy.items()}
    biases = "two (bias_ih + bias_hh)"
    if not any(k.startswith("bias_") for k in group):
        notes.append("bias=False: biases read as zeros")
        biases = "none (bias=False)"
        for key in [k for k in group if k.startswith("weight_ih_")]:
            suffix = key[len("weight_ih_"):]
            zeros = np.zeros(group[key].shape[0], group[key].dtype)
            group[f"bias_ih_{suffix}"], group[f"bias_hh_{suffix}"] = zeros, zeros.copy()
    return FoundLSTM(name=name, format="torch", native=group, source=str(path),
                     kind=f"{kind}, nn.{layer}{'Cell' if cell else ''} state_dict",
                     biases=biases, notes=tuple(notes),
                     read_options={"cell": "gru"} if gru else {})


# ---------------------------------------------------------------- writing


def constructor(weights: LSTMWeights) -> str:
    spec = weights.spec
    args = [f"input_size={spec.input_size}", f"hidden_size={spec.units}",
            f"num_layers={spec.layers}"]
    if spec.directions == 2:
        args.append("bidirectional=True")
    if spec.projection_size:
        args.append(f"proj_size={spec.projection_size}")
    args.append("batch_first=True")
    return f"torch.nn.{'GRU' if spec.cell == 'gru' else 'LSTM'}({', '.join(args)})"


def write_torch(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    """Write a state_dict (torch.save, or safetensors for a .safetensors name)."""
    import torch

    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in get_format("torch").from_canonical(weights).items()}
    with atomic_output(path, job.replace) as temporary:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(state, str(temporary))
        else:
            torch.save(state, temporary)
    load = ("safetensors.torch.load_file" if path.name.endswith(".safetensors")
            else "torch.load")
    return [f"wrote {path} (state_dict, {len(state)} tensors)",
            f"lstm = {constructor(weights)}",
            f'lstm.load_state_dict({load}("{path}"))']
