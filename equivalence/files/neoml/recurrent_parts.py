"""What NeoML's recurrent layers share in a network file: their fully connected layers' blobs,
read and checked; their inner layers and back links checked against the wiring NeoML's
``buildLayer`` makes; and the exception that says why a layer is not read (it is still
listed)."""

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


def check_wiring(found: dict[str, Any], expected: dict[str, Any], kind: str) -> None:
    """Inner layer name -> (class, inputs), found against ``kind``'s (Lstm, Gru) own: the
    first difference, by name."""
    for name in sorted(set(found) | set(expected)):
        if found.get(name) != expected.get(name):
            raise Unreadable(f"inner layer {name!r} is {found.get(name, 'missing')}, NeoML's "
                             f"{kind} has {expected.get(name, 'no such layer')}")


def check_back_link(link: Any, name: str, state_input: tuple[str, int],
                    captured: tuple[str, int], kind: str) -> None:
    """A back link that takes the initial state from ``state_input`` (or nothing) and
    captures ``captured`` each step."""
    if link is None or link.cls != "FmlCnnBackLink" or link.inputs not in ([], [state_input]):
        what = "missing" if link is None else (link.cls, link.inputs)
        raise Unreadable(f"back link {name!r} is {what}, NeoML's {kind} has "
                         f"('FmlCnnBackLink', [{state_input}])")
    sink = link.layers[0]
    if sink.cls != "FmlCnnCaptureSink" or sink.inputs != [captured]:
        raise Unreadable(f"back link {name!r} captures {sink.inputs}, expected [{captured}]")


def check_back_links(listed: list[str], expected: list[str]) -> None:
    """The layer's list of back links: exactly those its wiring has."""
    if sorted(listed) != sorted(expected):
        raise Unreadable(f"back links {listed}, expected {sorted(expected)}")
