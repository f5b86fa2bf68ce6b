"""What NeoML's recurrent layers share in a network file: their fully connected layers' blobs,
read and checked, and the exception that says why a layer is not read (it is still listed)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Unreadable(Exception):
    """Why one Lstm or Gru layer of a network cannot be converted (it is still listed)."""


def fully_connected(fc: Any, name: str, multiple: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``FullyConnected`` layer's weights (rows, columns) and free term (rows): float32, as
    many objects as its ``elements``, a multiple of ``multiple`` (the gates per unit)."""
    rows = fc.fields["elements"]
    blobs = list(fc.blobs) + [None, None]
    if blobs[0] is None:
        raise Unreadable(f"{name} has no weights stored (saved before its weights were set "
                         "or the network first ran)")
    dims = blobs[0].dims
    stored, columns = int(np.prod(dims[:3])), int(np.prod(dims[3:]))
    if stored != rows or rows % multiple or blobs[0].data.dtype != np.float32:
        per = f" = {multiple} x units" if multiple > 1 else ""
        raise Unreadable(f"{name} weights: blob dims {dims} ({blobs[0].data.dtype}), expected "
                         f"float32 with {rows}{per} objects")
    weights = blobs[0].data.reshape(rows, columns)
    if fc.fields["zero_free_term"]:
        return weights, np.zeros(rows, np.float32)
    if blobs[1] is None or blobs[1].data.size != rows:
        found = "none" if blobs[1] is None else f"{blobs[1].data.size} elements"
        raise Unreadable(f"{name} free term: {found}, expected {rows} elements")
    return weights, blobs[1].data.reshape(rows).astype(np.float32)
