"""The framework's own objects at a user's function's edges: what it is given, what it returns.

A user's converter is written against what their framework hands them:
``state_dict()`` gives torch tensors, Flax a tree of jax arrays. So by default
the function under check is given those (:func:`as_given`), and may return
tensors, tf Variables or jax arrays, which :func:`to_numpy` turns into numpy
before the target runs: bounded (sized by shape before a copy), and a failure
is a WeightValueError naming the array (a failed example, never a crash).
Frameworks are imported here only when their objects are asked for.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from equivalence.errors import WeightValueError, describe
from equivalence.formats._common import as_weight
from equivalence.spec import MAX_ELEMENTS

NATIVE_KINDS = ("framework", "numpy")


def as_given(native: Any, fmt: str, kind: str = "framework") -> Any:
    """``native`` (numpy, as the format writer gives it) as the source framework gives it.

    torch: an OrderedDict of tensors, as ``state_dict()``; flax: the params tree
    of jax arrays; keras (``get_weights()``), tf1 (the checkpoint reader) and
    onnx (``numpy_helper``) already give numpy arrays.
    """
    if kind == "numpy":
        return native
    if fmt == "torch":
        return OrderedDict((name, _tensor(value)) for name, value in native.items())
    if fmt == "flax":
        import jax.numpy as jnp

        return _map_leaves(native, jnp.asarray)
    return native


def _tensor(array: np.ndarray) -> Any:
    import torch

    if array.dtype.name == "bfloat16":  # torch has no numpy bfloat16: through float32, exact
        return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(array))


def _map_leaves(tree: Any, fn: Any) -> Any:
    if isinstance(tree, Mapping):
        return {key: _map_leaves(value, fn) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map_leaves(value, fn) for value in tree)
    return fn(tree)


def to_numpy(native: Any, where: str = "weights") -> Any:
    """``native`` with every framework array (torch, TensorFlow, jax) as a numpy array.

    Containers keep their kind (dicts stay dicts, in order); anything else is
    left as it is, for the target format's reader to judge. The nest is assumed
    bounded (check.py walks it first); each array is sized by its shape first.
    """
    if isinstance(native, Mapping):
        return {key: to_numpy(value, f"{where}[{key!r}]") for key, value in native.items()}
    if isinstance(native, (list, tuple)):
        return type(native)(to_numpy(v, f"{where}[{k}]") for k, v in enumerate(native))
    family = type(native).__module__.split(".")[0]
    if family == "torch":
        return as_weight(native, where)  # detached, CPU, bfloat16 kept; meta refused by name
    if family in ("tensorflow", "keras", "tf_keras", "jax", "jaxlib"):
        return _array(native, where)
    return native


def _array(value: Any, where: str) -> np.ndarray:
    try:
        shape = tuple(int(n) for n in value.shape)
    except Exception as exc:  # an object of a framework's module that has no sized shape
        raise WeightValueError(f"{where}: {type(value).__name__} has no shape "
                               f"({describe(exc)})") from exc
    if math.prod(shape) > MAX_ELEMENTS:
        raise WeightValueError(f"{where}: {shape} holds more than {MAX_ELEMENTS:.3g} elements")
    try:
        read = getattr(value, "numpy", None)  # tf Variables and eager tensors
        return np.asarray(read() if callable(read) else value)
    except Exception as exc:  # symbolic tensors, deleted jax buffers, ...
        raise WeightValueError(f"{where}: {type(value).__name__} cannot be read as numpy "
                               f"({describe(exc)})") from exc
