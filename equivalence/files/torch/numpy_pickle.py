"""numpy arrays in pickles (``pickle.dump`` of a dict of arrays), rebuilt without numpy's code.

A pickled ``ndarray`` is ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``
followed by a BUILD with ``(version, shape, dtype, is_fortran, raw bytes)``, its
dtype ``numpy.dtype(code, False, True)`` with a BUILD of its byte order. These
stand-ins accept exactly that and nothing more: numeric dtypes only (an object
array would pickle arbitrary objects), raw bytes that match the declared shape,
checked against the caps before any copy. The result is a
:class:`~equivalence.files.torch.tensor_records.LazyTensor`, so a dict of arrays named
like ``nn.LSTM`` parameters (g2pM's ``np_ckpt.pkl``) reads as a state_dict does.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

from equivalence.files.limits import check_declared
from equivalence.files.torch.tensor_records import LazyTensor, Storage, StorageType

# numpy's pickling path, under both the numpy 1 and numpy 2 module names.
RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}
NUMERIC_CODES = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}


class NumpyDtype:
    """``numpy.dtype(code, align, copy)`` as data: the code, then the byte order BUILD sets."""

    def __init__(self, code: Any, _align: Any = False, _copy: Any = True) -> None:
        if not isinstance(code, str) or code not in NUMERIC_CODES:
            raise pickle.UnpicklingError(f"a numpy array of dtype {str(code)[:40]!r}: only "
                                         f"numeric dtypes are read ({sorted(NUMERIC_CODES)})")
        self.code, self.order = code, "<"

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "<"
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"a numpy dtype with byte order {str(order)[:20]!r}")
        self.order = "<" if order in ("|", "=") else order

    @property
    def text(self) -> str:
        return "?" if self.code == "b1" else f"{self.order}{self.code}"

    @property
    def itemsize(self) -> int:
        return int(self.code[1:])


class NdarrayClass:
    """Stands for ``numpy.ndarray`` as ``_reconstruct``'s first argument; never instantiated."""


def codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol-2 pickles spell raw bytes."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode other than of a str to latin1")
    return text.encode("latin1")


def reconstruct_factory(source: str, file_bytes: int) -> Any:
    """``_reconstruct`` for one file: returns an empty record the BUILD then fills."""
    class NumpyArray(LazyTensor):
        def __init__(self) -> None:  # filled by __setstate__ (pickle's BUILD)
            self.storage = Storage("numpy array", StorageType("ndarray", "<f4"), 0)
            self.offset, self.shape, self.stride, self.source = 0, (0,), (1,), source

        def __setstate__(self, state: Any) -> None:
            if not isinstance(state, tuple) or len(state) != 5:
                raise pickle.UnpicklingError("a numpy array state that is not (version, "
                                             "shape, dtype, is_fortran, data)")
            _version, shape, dtype, fortran, data = state
            if isinstance(data, str):  # a Python 2 pickle read with encoding="latin1"
                data = data.encode("latin1")
            if not isinstance(dtype, NumpyDtype) or not isinstance(data, bytes):
                raise pickle.UnpicklingError("a numpy array without a numeric dtype and raw "
                                             "bytes (object arrays are not read)")
            if not isinstance(shape, tuple) or len(shape) > 64 or not all(
                    isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
                raise pickle.UnpicklingError(f"numpy array shape {str(shape)[:80]}")
            check_declared(source, "numpy array", shape, dtype.itemsize, file_bytes)
            count = math.prod(shape)
            if len(data) != count * dtype.itemsize:
                raise pickle.UnpicklingError(f"a numpy array of shape {shape} ({dtype.text}) "
                                             f"holds {len(data):,} bytes, expected "
                                             f"{count * dtype.itemsize:,}")
            self.storage = Storage("numpy array", StorageType("ndarray", dtype.text), count,
                                   data)
            self.shape, self.stride = shape, _strides(shape, bool(fortran))

    def reconstruct(cls: Any, _shape: Any = (0,), _code: Any = b"b") -> Any:
        if cls is not NdarrayClass:
            raise pickle.UnpicklingError("numpy _reconstruct of a class other than ndarray")
        return NumpyArray()

    return reconstruct


def _strides(shape: tuple[int, ...], fortran: bool) -> tuple[int, ...]:
    """Element strides of a contiguous array (C order, or Fortran's reversed)."""
    order = list(range(len(shape)))
    if not fortran:
        order.reverse()
    strides, step = [0] * len(shape), 1
    for axis in order:
        strides[axis] = step
        step *= max(shape[axis], 1)
    return tuple(strides)


def find(module: str, name: str, source: str, file_bytes: int) -> Any:
    """The stand-in for a numpy name a pickle of arrays uses, or None."""
    if (module, name) in RECONSTRUCT:
        return reconstruct_factory(source, file_bytes)
    if module == "numpy" and name == "ndarray":
        return NdarrayClass
    if module == "numpy" and name == "dtype":
        return NumpyDtype
    if module == "_codecs" and name == "encode":
        return codecs_encode
    return None
