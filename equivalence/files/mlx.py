"""MLX weight files: safetensors as ``mlx.nn.Module.save_weights`` writes them.

Keys are a module's parameter paths joined by dots, and ``load_weights`` turns
a number in a path into a list index. An ``nn.LSTM`` holds ``Wx``, ``Wh`` and
``bias`` (none with ``bias=False``); an ``nn.GRU`` holds ``Wx`` (3H, I), ``Wh``
(3H, H), ``b`` and ``bhn`` (none with ``bias=False``). A prefix is a GRU when it
has ``b`` or ``bhn``, or, biasless, when its ``Wh`` has 3H rows for its H columns
(an LSTM's has 4H). MLX has no stacked or bidirectional LSTM or GRU, so this
module reads and writes the layout such a model has:

* one LSTM: ``<prefix>Wx``, ``<prefix>Wh``, ``<prefix>bias``;
* a stack (a module whose list ``layers`` holds one ``nn.LSTM`` per layer):
  ``<prefix>layers.<k>.Wx`` ...;
* bidirectional (each item of ``layers`` holds two ``nn.LSTM``, ``forward``
  and ``backward``, the backward one run on the reversed sequence):
  ``<prefix>layers.<k>.forward.Wx`` ....

Reading groups keys by prefix, as the PyTorch reader does; layer numbers
must run 0..L-1 (at most :data:`~equivalence.files.limits.MAX_LAYERS`), and
every layer of a bidirectional stack needs both directions. The arrays are
read with ``safetensors.numpy`` (the same reader as PyTorch's safetensors
files, which run nothing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.files._base import FileFormatError, FoundLSTM, atomic_output
from equivalence.files.limits import MAX_LAYERS
from equivalence.formats import get as get_format

_KEY = re.compile(r"^(?P<prefix>.*?)(?:layers\.(?P<layer>\d{1,9})\.)?"
                  r"(?:(?P<direction>forward|backward)\.)?(?P<key>Wx|Wh|bias|bhn|b)$")
_DIRECTIONS = ("forward", "backward")


def found_in(tensors: Mapping[str, Any], path: Path, kind: str) -> list[FoundLSTM]:
    """One FoundLSTM per prefix whose keys are an MLX LSTM's or GRU's (the module docstring)."""
    groups: dict[str, dict[tuple[int | None, str | None], dict[str, Any]]] = {}
    for key, value in tensors.items():
        match = _KEY.match(key)
        if match:
            layer = match.group("layer")
            where = (None if layer is None else int(layer), match.group("direction"))
            groups.setdefault(match.group("prefix"), {}).setdefault(where, {})[
                match.group("key")] = value
    found = []
    for prefix, cells in groups.items():
        if not any("Wx" in arrays or "Wh" in arrays for arrays in cells.values()):
            continue  # a lone "bias" or "b" is some other layer's
        native, problem = _native(cells)
        cell_type, mixed = _cell(cells)
        name = prefix[:-1] if prefix.endswith(".") else (prefix or cell_type)
        found.append(FoundLSTM(
            name=name, format="mlx", native=native, source=str(path),
            kind=f"{kind}, mlx.nn.{cell_type.upper()} weights", problem=problem or mixed,
            biases=_biases(cells, cell_type),
            read_options={"cell": "gru"} if cell_type == "gru" else {}))
    return found


def _cell(cells: Mapping[Any, Mapping[str, Any]]) -> tuple[str, str | None]:
    """"gru" or "lstm" for one prefix's cells, and why not one of them when they disagree."""
    kinds = {_cell_of(arrays) for arrays in cells.values()}
    if len(kinds) > 1:
        return "lstm", "some cells hold nn.GRU keys (b, bhn) or shapes and others nn.LSTM's"
    return kinds.pop(), None


def _cell_of(arrays: Mapping[str, Any]) -> str:
    if "b" in arrays or "bhn" in arrays:
        return "gru"
    shape = tuple(getattr(arrays.get("Wh"), "shape", ()))
    # biasless: Wh's rows are gates x H for its H columns (3 for a GRU, 4 for an LSTM)
    three_gates = len(shape) == 2 and shape[0] == 3 * shape[1] > 0
    return "gru" if three_gates and "bias" not in arrays else "lstm"


def _biases(cells: Mapping[Any, Mapping[str, Any]], cell: str) -> str:
    names, shown = (("b", "bhn"), "b (3H) and bhn (H)") if cell == "gru" else (("bias",),
                                                                               "one (4H)")
    with_bias = sum(any(n in arrays for n in names) for arrays in cells.values())
    if with_bias == len(cells):
        return shown
    return "none (bias=False)" if with_bias == 0 else f"{shown}, none in some (bias=False)"


def _native(cells: dict[tuple[int | None, str | None], dict[str, Any]]) -> tuple[Any, str | None]:
    """The mlx native form of one prefix's cells, or why they are not one LSTM."""
    layers = {layer for layer, _ in cells}
    directions = {direction for _, direction in cells}
    if layers == {None}:
        if directions == {None}:
            return cells[(None, None)], None
        return {}, "forward/backward keys without a layers.<k> part"
    numbers = sorted(k for k in layers if k is not None)
    if len(numbers) != len(layers):
        return {}, "keys both with and without a layers.<k> part"
    if numbers[-1] >= MAX_LAYERS:
        return {}, f"layer number {numbers[-1]} in a key, over the {MAX_LAYERS}-layer cap"
    if numbers != list(range(len(numbers))):
        return {}, f"layer numbers {numbers[:8]} are not 0..L-1"
    if directions == {None}:
        return [[cells[(k, None)]] for k in numbers], None
    if set(cells) != {(k, d) for k in numbers for d in _DIRECTIONS}:
        return {}, "a bidirectional stack needs layers.<k>.forward and .backward in every layer"
    return [[cells[(k, d)] for d in _DIRECTIONS] for k in numbers], None


# ---------------------------------------------------------------- writing


def keys(weights: LSTMWeights) -> dict[str, np.ndarray]:
    """The arrays under the names ``load_weights`` gives the layout above."""
    native = get_format("mlx").from_canonical(weights)
    if isinstance(native, Mapping):
        return dict(native)
    spec = weights.spec
    named = {}
    for k, per_direction in enumerate(native):
        for d, cell in enumerate(per_direction):
            where = f"layers.{k}." + (f"{_DIRECTIONS[d]}." if spec.directions == 2 else "")
            named.update({f"{where}{key}": value for key, value in cell.items()})
    return named


def check_output(path: Path) -> None:
    if not path.name.endswith(".safetensors"):
        raise FileFormatError(path, "an mlx output must end in .safetensors "
                                    "(what mlx.nn.Module.load_weights reads)")


def write_mlx(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    """Write the weights as safetensors and say which MLX module loads them."""
    from safetensors.numpy import save_file

    named = {k: np.ascontiguousarray(v) for k, v in keys(weights).items()}
    with atomic_output(path, job.replace) as temporary:
        save_file(named, str(temporary))
    layer = weights.spec.cell.upper()
    return [f"wrote {path} (mlx.nn.{layer} weights, {len(named)} arrays)",
            *_loading(weights, path)]


def _loading(weights: LSTMWeights, path: Path) -> list[str]:
    spec = weights.spec
    layer, variable = f"nn.{spec.cell.upper()}", spec.cell
    if spec.layers == 1 and spec.directions == 1:
        return [f"{variable} = mlx.{layer}({spec.input_size}, {spec.units})",
                f'{variable}.load_weights("{path}")']
    sizes = ", ".join(str(spec.layer_input_size(k)) for k in range(spec.layers))
    item = (f"a module with {layer} attributes forward and backward (the backward one run on "
            "the reversed sequence)" if spec.directions == 2 else f"an {layer}")
    return [f"model.load_weights(\"{path}\"), where model.layers is a list of {spec.layers} "
            f"items, each {item}, H={spec.units}, input sizes {sizes}"]
