"""CoreML protobuf messages written as wire bytes for the CoreML tests, and an interpreter that
has coremltools (its own proto modules and builder) when one is at hand."""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest


def key(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def message(*fields: tuple[int, bytes | int]) -> bytes:
    out = b""
    for number, value in fields:
        if isinstance(value, int):
            out += key(number, 0) + varint(value)
        else:
            out += key(number, 2) + varint(len(value)) + value
    return out


def floats(values: np.ndarray) -> bytes:
    return message((1, np.asarray(values, "<f4").tobytes()))


def coremltools_python() -> str:
    """An interpreter with coremltools: this one, or $COREMLTOOLS_PYTHON; else skip."""
    if importlib.util.find_spec("coremltools") is not None:
        return sys.executable
    other = os.environ.get("COREMLTOOLS_PYTHON")
    if other:
        return other
    pytest.skip("coremltools is not installed here (set COREMLTOOLS_PYTHON to an interpreter "
                "that has it, e.g. a venv made with `pip install coremltools`)")
