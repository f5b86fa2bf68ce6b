"""PyTorch files: ``torch.save`` state_dicts (zip or legacy pickle) and safetensors.

Reading: every tensor in the file (nested dicts such as
``{"model_state_dict": {...}, "epoch": 3}`` are walked) whose key ends in
``weight_ih_l{k}[_reverse]``, ``weight_hh_...``, ``bias_ih_...``,
``bias_hh_...`` or ``weight_hr_...`` is grouped by the prefix before it, so
``encoder.lstm.weight_ih_l0`` belongs to the LSTM ``encoder.lstm``. An
``nn.LSTMCell``'s keys (``weight_ih`` without ``_l0``) count as a one-layer
LSTM. Groups whose ``weight_hh`` is not (4H, H) or (4H, P) are GRUs or plain
RNNs and are skipped. ``torch.load`` runs with ``weights_only=True``: a pickled
``nn.Module`` is refused rather than executed. safetensors files are read with
``safetensors.numpy`` (no torch needed).

Writing: a state_dict for ``nn.LSTM(I, H, num_layers=L, bidirectional=...,
batch_first=True[, proj_size=P])`` (``batch_first`` changes no weight), via
``torch.save`` or, for a ``.safetensors`` name, ``safetensors``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..canonical import LSTMWeights
from ..formats import get as get_format
from ._base import FileFormatError, FoundLSTM, atomic_output

_KEY = re.compile(r"^(?P<prefix>.*?)(?P<key>(?:weight|bias)_(?:ih|hh|hr)(?:_l\d+(?:_reverse)?)?)$")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys -> tensors for every tensor in nested dicts/lists."""
    if isinstance(tree, Mapping):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, (list, tuple)):
        out = {}
        for index, value in enumerate(tree):
            out.update(_flatten(value, f"{prefix}{index}."))
        return out
    if hasattr(tree, "detach") or isinstance(tree, np.ndarray):
        return {prefix[:-1]: tree}
    return {}


def _last_line(exc: Exception) -> str:
    """The informative line of a framework error (torch's are paragraphs), shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    telling = [line for line in lines if "error" in line.lower() or "unsupported" in line.lower()]
    return ((telling or lines or [type(exc).__name__])[-1])[:200]


def read_torch(path: Path) -> list[FoundLSTM]:
    """LSTMs in a ``torch.save`` file."""
    import pickle

    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FileFormatError(path, "cannot be loaded as tensors: corrupted, or a pickle of "
                                    "Python objects (a whole nn.Module? save model.state_dict()"
                                    f" instead) ({_last_line(exc)})") from exc
    except Exception as exc:  # a damaged pickle stream can fail in any way (IndexError, ...)
        raise FileFormatError(path, f"corrupted or truncated torch file ({_last_line(exc)})"
                              ) from exc
    tensors = _flatten(loaded)
    if not tensors:
        raise FileFormatError(path, f"no tensors in this torch file (it holds a "
                                    f"{type(loaded).__name__})")
    return _found(tensors, path, "torch.save file")


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
    return _found(tensors, path, "safetensors file")


def _found(tensors: Mapping[str, Any], path: Path, kind: str) -> list[FoundLSTM]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match:
            groups.setdefault(match.group("prefix"), {})[match.group("key")] = _numpy(value)
    found = []
    for prefix, group in groups.items():
        entry = _entry(prefix, group, path, kind)
        if entry is not None:
            found.append(entry)
    return found


def _entry(prefix: str, group: dict[str, np.ndarray], path: Path, kind: str) -> FoundLSTM | None:
    notes, cell = [], "weight_ih" in group
    if cell:  # nn.LSTMCell: the same arrays as a one-layer nn.LSTM, without the _l0 suffix
        group = {f"{k}_l0": v for k, v in group.items()}
        notes.append("nn.LSTMCell keys (read as a one-layer LSTM)")
    hh, hr = group.get("weight_hh_l0"), group.get("weight_hr_l0")
    if hh is None or hh.ndim != 2:
        return None
    units = hr.shape[1] if hr is not None and hr.ndim == 2 else hh.shape[1]
    if hh.shape[0] != 4 * units:
        return None  # a GRU (3H rows) or an RNN (H rows)
    biases = "two (bias_ih + bias_hh)"
    if not any(k.startswith("bias_") for k in group):
        notes.append("bias=False: biases read as zeros")
        biases = "none (bias=False)"
        for key in [k for k in group if k.startswith("weight_ih_")]:
            suffix = key[len("weight_ih_"):]
            zeros = np.zeros(group[key].shape[0], group[key].dtype)
            group[f"bias_ih_{suffix}"], group[f"bias_hh_{suffix}"] = zeros, zeros.copy()
    name = prefix[:-1] if prefix.endswith(".") else (prefix or "lstm")
    return FoundLSTM(name=name, format="torch", native=group, source=str(path),
                     kind=f"{kind}, nn.{'LSTMCell' if cell else 'LSTM'} state_dict",
                     biases=biases, notes=tuple(notes))


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
    return f"torch.nn.LSTM({', '.join(args)})"


def write_torch(path: Path, weights: LSTMWeights) -> list[str]:
    """Write a state_dict (torch.save, or safetensors for a .safetensors name)."""
    import torch

    state = {k: torch.from_numpy(np.ascontiguousarray(v))
             for k, v in get_format("torch").from_canonical(weights).items()}
    with atomic_output(path) as temporary:
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
