"""The activations every cell's float64 step uses, by the names the spec gives them.

The recurrent activation squashes gates (LSTM i, f, o; GRU r, z); the cell
activation shapes the candidate (LSTM g and the output's c, GRU n).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def hard_sigmoid_tf_keras(x: np.ndarray) -> np.ndarray:
    """tf_keras / Keras 2: clip(0.2 x + 0.5, 0, 1)."""
    return np.clip(0.2 * x + 0.5, 0.0, 1.0)


def hard_sigmoid_keras3(x: np.ndarray) -> np.ndarray:
    """Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1)."""
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


RECURRENT_ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": sigmoid,
    "hard_sigmoid_tf_keras": hard_sigmoid_tf_keras,
    "hard_sigmoid_keras3": hard_sigmoid_keras3,
}


def elu(x: np.ndarray) -> np.ndarray:
    """Keras ``elu`` and ONNX ``Elu`` at their default alpha 1: x, or exp(x) - 1 below 0."""
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), overflow-free."""
    return np.logaddexp(0.0, x)


ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "sigmoid": sigmoid,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "softplus": softplus,
    "elu": elu,
}


def gate_clip(z: np.ndarray, bound: float | None) -> np.ndarray:
    """ONNX ``clip``: bound a pre-activation before its activation."""
    return z if bound is None else np.clip(z, -bound, bound)
