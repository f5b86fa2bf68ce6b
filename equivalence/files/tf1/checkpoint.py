"""TF checkpoints: ``tf.compat.v1.train.Saver`` files and ``tf.train.Checkpoint`` files.

Read with numpy alone (:mod:`equivalence.files.tf1.bundle`: no TensorFlow import, no
graph built). LSTMs are found by variable name:

* TF1 cells, ``.../lstm_cell/{kernel,bias,w_*_diag,projection/kernel}``
  (``basic_lstm_cell`` too, same layout), grouped into one LSTM per scope:
  ``MultiRNNCell`` layers (``cell_{k}``) and ``fw``/``bw`` halves of a
  bidirectional RNN join their scope's LSTM; optimizer slots are ignored.
  ``GRUCell``s the same way, ``.../gru_cell/{gates,candidate}/{kernel,bias}``,
  one GRU per scope (``reset_after=False``, the only variant GRUCell has).
* Keras LSTM layers saved by ``tf.train.Checkpoint``
  (``.../cell/{kernel,recurrent_kernel,bias}/.ATTRIBUTES/VARIABLE_VALUE``,
  ``forward_layer``/``backward_layer`` for Bidirectional): Keras format.

A checkpoint does not record ``forget_bias`` (LSTMCell's default 1.0 is
assumed unless the caller says otherwise), ``cell_clip`` or ``proj_clip``.

Writing: the standard variable names of :func:`equivalence.formats.tf1.variable_name`,
as ``PREFIX.index`` and ``PREFIX.data-00000-of-00001`` laid out as ``SaveV2`` (what
``Saver`` uses) lays them out, written with numpy; ``Saver.restore`` and
``load_checkpoint`` read it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.errors import UnsupportedFeatureError
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    checkpoint_prefix,
    publish,
    remove_stale_temporaries,
)
from equivalence.files.tf1.bundle import read_tensors, write_bundle
from equivalence.formats import tf1 as tf1_format

OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_STACK_SEGMENT = re.compile(r"cell_\d+$")


def read_checkpoint(path: Path, forget_bias: float = tf1_format.DEFAULT_FORGET_BIAS
                    ) -> list[FoundLSTM]:
    """Every LSTM in the checkpoint ``path`` (a prefix, its .index, or a folder)."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise FileFormatError(path, "not a TF checkpoint (no PREFIX.index)")
    variables = _load(prefix, path)
    found = _tf1_cells(variables, prefix, forget_bias) + _keras_layers(variables, prefix)
    return found


def _load(prefix: Path, path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's numeric variables, read with numpy (no TensorFlow import)."""
    try:
        return read_tensors(prefix, path)
    except OSError as exc:
        raise FileFormatError(path, f"corrupted, truncated or unreadable checkpoint ({exc})"
                              ) from exc


def _scope(name: str) -> tuple[str, tuple[int, int, str]] | None:
    """(LSTM scope, (layer, direction, part)) for a TF1 cell variable, else None."""
    clean = name[: -len(OBJECT_SUFFIX)] if name.endswith(OBJECT_SUFFIX) else name
    clean = re.sub(r"(^|/)basic_lstm_cell(?=/)", r"\1lstm_cell", clean)
    cell_type = "gru" if "gru_cell/" in clean else "lstm"
    parsed = tf1_format.parse_name(clean, cell_type)
    if parsed is None:
        return None
    segments = clean.split("/")
    cell = next(i for i, s in enumerate(segments) if s.startswith(f"{cell_type}_cell"))
    kept, inside_stack = [], False
    for segment in segments[:cell]:
        if _STACK_SEGMENT.match(segment):
            inside_stack = True
            continue
        if segment in ("multi_rnn_cell", "fw", "bw") or (inside_stack and
                                                        segment == "bidirectional_rnn"):
            continue
        kept.append(segment)
    # a GRU and an LSTM in one scope are two networks: the cell type is part of the key
    return f"{'/'.join(kept) or segments[cell]}\0{cell_type}", parsed


def _tf1_cells(variables: dict[str, np.ndarray], prefix: Path, forget_bias: float
               ) -> list[FoundLSTM]:
    groups: dict[str, list[tuple[str, tuple[int, int, str], np.ndarray]]] = {}
    for name, value in variables.items():
        scoped = _scope(name)
        if scoped is not None:
            groups.setdefault(scoped[0], []).append((name, scoped[1], value))
    found = []
    for key, items in groups.items():
        scope, cell = key.split("\0")
        found.append(_tf1_gru(scope, items, prefix) if cell == "gru"
                     else _tf1_entry(scope, items, prefix, forget_bias))
    return found


def _shape_of(items: list[tuple[str, tuple[int, int, str], np.ndarray]]
              ) -> tuple[int, int, str | None]:
    """Layers and directions of one scope's cells, and why they are not one stack."""
    layers = 1 + max(layer for _, (layer, _, _), _ in items)
    directions = 1 + max(direction for _, (_, direction, _), _ in items)
    problem = None
    if directions == 2 and layers > 1 and any("multi_rnn_cell" in n for n, _, _ in items):
        problem = ("independent forward/backward MultiRNNCell stacks (bidirectional_dynamic_rnn "
                   "over MultiRNNCell): not a layer-wise bidirectional stack")
    return layers, directions, problem


def _tf1_gru(scope: str, items: list[tuple[str, tuple[int, int, str], np.ndarray]],
             prefix: Path) -> FoundLSTM:
    layers, directions, problem = _shape_of(items)
    native = {tf1_format.variable_name(layer, direction, part, layers, directions, "gru"): value
              for _, (layer, direction, part), value in items}
    notes = ["GRUCell: the reset gate on h before the matmul (reset_after=False)"]
    if any(n.endswith(OBJECT_SUFFIX) for n, _, _ in items):
        notes.append("object-based tf.train.Checkpoint names")
    return FoundLSTM(name=scope, format="tf1", native=native, source=str(prefix),
                     kind="TF checkpoint, TF1 GRUCell", read_options={"cell": "gru"},
                     biases="one per gate (gates 2H, candidate H)", notes=tuple(notes),
                     problem=problem)


def _tf1_entry(scope: str, items: list[tuple[str, tuple[int, int, str], np.ndarray]],
               prefix: Path, forget_bias: float) -> FoundLSTM:
    layers, directions, problem = _shape_of(items)
    # Standard names, so the tf1 format reads the stack whatever scope it lived in.
    native = {tf1_format.variable_name(layer, direction, part, layers, directions): value
              for _, (layer, direction, part), value in items}
    parts = {part for _, (_, _, part), _ in items}
    notes = [f"forget_bias={forget_bias} assumed (a checkpoint does not record it; "
             "pass --forget-bias if the cells were built with another)"]
    if any(n.endswith(OBJECT_SUFFIX) for n, _, _ in items):
        notes.append("object-based tf.train.Checkpoint names")
    if any("basic_lstm_cell" in n for n, _, _ in items):
        notes.append("BasicLSTMCell variables (same layout as LSTMCell)")
    return FoundLSTM(
        name=scope,
        format="tf1",
        native=native,
        source=str(prefix),
        kind="TF checkpoint, TF1 LSTMCell"
        + (" with peepholes" if "w_i_diag" in parts else "")
        + (" with projection" if "projection/kernel" in parts else ""),
        read_options={"forget_bias": forget_bias},
        run_options={"forget_bias": forget_bias},
        biases=f"one (4H), + forget_bias {forget_bias} at run time",
        notes=tuple(notes),
        problem=problem,
    )


def _keras_layers(variables: dict[str, np.ndarray], prefix: Path) -> list[FoundLSTM]:
    """Keras LSTM layers in an object-based checkpoint (``.../cell/kernel/.ATTRIBUTES/...``)."""
    layers: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # layer -> side -> part -> array
    for name, value in variables.items():
        if not name.endswith(OBJECT_SUFFIX) or ".OPTIMIZER_SLOT" in name:
            continue
        path = name[: -len(OBJECT_SUFFIX)].split("/")
        if len(path) < 2 or path[-2] != "cell" or path[-1] not in (
                "kernel", "recurrent_kernel", "bias"):
            continue
        owner = path[:-2]
        side = "forward"
        if owner and owner[-1] in ("forward_layer", "backward_layer"):
            side = owner[-1].split("_")[0]
            owner = owner[:-1]
        cells = layers.setdefault("/".join(owner) or "layer", {})
        cells.setdefault(side, {})[path[-1]] = value
    found = []
    for name, cells in layers.items():
        directions = len(cells)
        native: list[np.ndarray | None] = []
        for side in ("forward", "backward"):
            if side not in cells:
                continue
            cell = cells[side]
            if "bias" not in cell and "recurrent_kernel" in cell:
                cell["bias"] = np.zeros(cell["recurrent_kernel"].shape[1], np.float32)
            native += [cell.get("kernel"), cell.get("recurrent_kernel"), cell.get("bias")]
        problem = None if all(a is not None for a in native) else "a cell lacks its kernels"
        found.append(FoundLSTM(
            name=name, format="keras", native=native, source=str(prefix),
            kind="TF checkpoint, Keras LSTM layer",
            read_options={"directions": directions, "recurrent_activation": "sigmoid"},
            notes=("tf.train.Checkpoint of a Keras layer: sigmoid recurrent activation assumed",),
            problem=problem))
    return found


# ---------------------------------------------------------------- writing


def output_prefix(path: Path) -> Path:
    """The checkpoint prefix for ``-o`` (a trailing .index is dropped)."""
    return path.with_name(path.name[: -len(".index")]) if path.name.endswith(".index") else path


def output_files(prefix: Path) -> list[Path]:
    """Files a checkpoint at ``prefix`` consists of (existing data shards included)."""
    shards = sorted(prefix.parent.glob(glob.escape(prefix.name) + ".data-*"))
    return [Path(f"{prefix}.index"), *shards]


def output_files_for(path: Path) -> list[Path]:
    """The files a checkpoint written for ``-o path`` consists of."""
    return output_files(output_prefix(path))


def write_job(path: Path, weights: LSTMWeights, job: Any) -> list[str]:
    """The registry's writer: the cells' forget_bias and --force come from the job."""
    return write_checkpoint(path, weights, job.forget_bias, job.replace)


def write_checkpoint(path: Path, weights: LSTMWeights, forget_bias: float,
                     replace: bool = False) -> list[str]:
    """Write a TF1-named checkpoint for cells built with ``forget_bias``; return lines to print."""
    cell_class = "GRUCell" if weights.spec.cell == "gru" else "LSTMCell"
    if weights.spec.activation != "tanh":  # before anything is written
        raise UnsupportedFeatureError(
            "a TF checkpoint", f"activation={weights.spec.activation}",
            f"it holds the variables only, and {cell_class}(activation=) is not one of them: "
            "read back, it would run tanh")
    prefix = output_prefix(path)
    variables = tf1_format.from_canonical(weights, forget_bias=forget_bias, layout="variables")
    assert isinstance(variables, dict)  # layout="variables" gives the name -> array dict
    remove_stale_temporaries(prefix.parent, prefix.name)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", suffix=f"-{prefix.name}",
                                    dir=prefix.parent))
    try:
        staged = staging / prefix.name
        write_bundle(staged, variables)  # the bytes SaveV2 writes, without TensorFlow
        written = sorted(staging.iterdir(), key=lambda p: p.name.endswith(".index"))
        new_names = {item.name for item in written}
        # Data shards first, the index last: the index is what makes the checkpoint visible.
        for item in written[:-1]:
            publish(item, prefix.parent / item.name, replace)
        # Shards of a replaced checkpoint that this one does not have would confuse readers.
        for old in prefix.parent.glob(glob.escape(prefix.name) + ".data-*"):
            if old.name not in new_names:
                old.unlink()
        publish(written[-1], prefix.parent / written[-1].name, replace)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    spec = weights.spec
    return [f"wrote TF checkpoint {prefix} (.index + .data), variables:",
            *[f"  {n} {tuple(variables[n].shape)}" for n in sorted(variables)],
            _cells_line(spec, forget_bias)]


def _cells_line(spec: Any, forget_bias: float) -> str:
    """The cells a graph must build to restore the checkpoint."""
    if spec.cell == "gru":
        cell = f"GRUCell({spec.units})"
    else:
        cell = (f"LSTMCell({spec.units}, forget_bias={forget_bias}"
                + (", use_peepholes=True" if spec.peepholes else "")
                + (f", num_proj={spec.projection_size}" if spec.projection_size else "") + ")")
    return (f"cells: {cell}"
            + (f" x {spec.layers} in MultiRNNCell" if spec.layers > 1 and spec.directions == 1
               else "")
            + (" in bidirectional_dynamic_rnn" if spec.directions == 2 else "")
            + "; restore with tf.compat.v1.train.Saver().restore(sess, PREFIX)")
