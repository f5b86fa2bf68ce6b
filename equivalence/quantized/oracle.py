"""The quantized oracle: the float64 reference on dequantized weights, and the bound it implies.

A quantized LSTM is judged against :func:`equivalence.reference.lstm_cell_step` run
on the weights the quantized model really holds (read back, dequantized to
float64), with the matmul inputs fake-quantized the way the scheme documents
(:class:`Scheme.emulate`). Around that oracle output sits an elementwise bound
propagated step by step; an output beyond it is "silently wrong", one within it
"matches its quantization".

Derivation of the bound (all quantities elementwise and non-negative; ``d*`` is
a bound on |runtime - oracle| of the quantity ``*``; W, U, b the dequantized
weights, exact in both):

1. Matmul inputs. A dynamic scheme rounds x (and h) to a grid of step s chosen
   from the data; the runtime and the emulation each round to within s/2 of the
   same value, so they differ by at most s per element, plus the difference dv
   already carried by the value: ``a = s + dv``. :meth:`Scheme.step` gives an s
   at least as coarse as every granularity the scheme may use (per row or per
   tensor, symmetric or asymmetric), widened by the carried error because the
   runtime picks its grid from its own values. A static (full-integer) scheme
   is not emulated: ``a = s/2 + dv``.
2. Pre-activations. ``dz = |W| a_x + |U| a_h + f32`` where ``f32 = 1e-5 (|W||x| + |U||h|
   + |b|) + 1e-6`` covers float32 accumulation (int32 products are exact), plus the
   steps of any quantized intermediate (``Allowance.z``, full-integer only).
3. Gates. For a = act(z) with slope act' the Lipschitz constant on [z - dz, z + dz] is
   act' at the point of that interval closest to 0 (sigmoid and tanh are steepest
   there), so ``da = min(L dz, span) + Allowance.gate``.
4. Cell. ``|f~c~ - fc| <= f dc + (|c| + dc) df`` and likewise for ``i g``:
   ``dc' = f dc + (|c| + dc) df + i dg + (|g| + dg) di + Allowance.c``.
5. Output. ``dh = o dt + (|tanh c'| + dt) do + Allowance.h`` with ``dt`` from step 3
   applied to tanh at c'.
6. Layers and time. dh feeds the next step's recurrent matmul and the next layer's
   input matmul through step 1.

Nothing in the bound is taken from the runtime's output. It is checked elementwise,
so the early steps, where it is small, carry most of its power: for the dynamic
schemes a scale off by 2x or two gates swapped exceed it by 5-80x (the must-fail
tests). It is worst-case and grows with each step through the recurrent matmul, so
it is loose for long sequences and for full-integer int8, whose static steps are
coarse: there a swap of g and o is caught, a swap of i and f in a two-layer stack is
not. The emulation is exact for torch (errors ~1e-7), close for ONNX Runtime and
LiteRT dynamic (~1e-3, whose exact input rounding is not reproduced).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from equivalence.canonical import CellWeights, LSTMWeights
from equivalence.errors import SpecError
from equivalence.reference import lstm as float_reference
from equivalence.reference import lstm_cell_step, sigmoid

MATCHES = "matches its quantization"
WRONG = "silently wrong"


@dataclass(frozen=True)
class Allowance:
    """Per-element rounding allowances of statically quantized tensors (full-integer schemes)."""

    x: float = 0.0  # the input's quantization
    h_in: float = 0.0  # h as the recurrent matmul reads it
    z: float = 0.0  # quantized intermediates of a pre-activation
    gate: float = 0.0  # sigmoid/tanh outputs
    c: float = 0.0
    h: float = 0.0


def _asymmetric(levels: int) -> Callable[[np.ndarray], np.ndarray]:
    """Per-tensor asymmetric fake-quantization to ``levels`` steps; the range holds 0."""

    def emulate(v: np.ndarray) -> np.ndarray:
        low, high = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
        if high == low:
            return v
        scale = (high - low) / levels
        zero = np.clip(np.rint(-low / scale), 0, levels)
        return (np.clip(np.rint(v / scale) + zero, 0, levels) - zero) * scale

    return emulate


def _symmetric_rows(v: np.ndarray) -> np.ndarray:
    """Per-row symmetric int8 fake-quantization (TFLite's hybrid FULLY_CONNECTED)."""
    scale = np.abs(v).max(axis=-1, keepdims=True) / 127.0
    scale = np.where(scale == 0, 1.0, scale)
    return np.rint(v / scale) * scale


@dataclass(frozen=True)
class Scheme:
    """How a path quantizes the matmul inputs.

    ``emulate`` fake-quantizes one matmul input as the runtime does (None: not
    emulated, the bound takes half a step); ``step_levels`` turns a range into the
    coarsest step the runtime may use (``2 max|v| / step_levels``); ``whole_sequence``:
    the input matmul quantizes all time steps together (torch, ONNX Runtime) rather
    than one step at a time.
    """

    name: str
    emulate: Callable[[np.ndarray], np.ndarray] | None
    step_levels: float = 0.0
    whole_sequence: bool = False
    static: Allowance = field(default_factory=Allowance)

    def step(self, v: np.ndarray, carried: float) -> float:
        """A grid step at least as coarse as the runtime's for ``v`` (carried error included)."""
        if self.step_levels == 0.0:
            return 0.0
        return 2.0 * (float(np.abs(v).max(initial=0.0)) + carried) / self.step_levels

    def input_allowance(self, v: np.ndarray, carried: float) -> float:
        """Step 1 of the derivation: the per-element allowance of a matmul input."""
        step = self.step(v, carried)
        return step if self.emulate is not None else step / 2.0

    def quantize(self, v: np.ndarray) -> np.ndarray:
        """``v`` as the runtime's matmul sees it (unchanged where not emulated)."""
        return v if self.emulate is None else self.emulate(v)


# torch dynamic (fbgemm, reduce_range): asymmetric uint8 on 7 bits; range <= 2 max|v|.
TORCH_DYNAMIC = Scheme("torch dynamic qint8", _asymmetric(127), 127.0, whole_sequence=True)
# ONNX Runtime DynamicQuantizeLSTM: asymmetric uint8 on 8 bits.
ORT_DYNAMIC = Scheme("onnxruntime dynamic int8", _asymmetric(255), 255.0, whole_sequence=True)
# TFLite hybrid FULLY_CONNECTED: symmetric int8 per batch row; 2 max|v| / 254 per tensor
# covers every granularity (per row <= per tensor, asymmetric (max-min)/255 < 2max/254).
LITERT_DYNAMIC = Scheme("litert dynamic-range int8", _symmetric_rows, 254.0)


@dataclass(frozen=True)
class Judged:
    """The oracle's verdict on one runtime output."""

    verdict: str
    error: float  # max |runtime - quantized oracle|
    bound: float  # max of the elementwise bound
    worst_ratio: float  # max over elements of error / bound
    float_error: float  # max |runtime - float reference on the original weights|


def oracle(weights: LSTMWeights, x: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """The quantized oracle's outputs (B, T, H) and their elementwise bound, batch-first ``x``."""
    spec = weights.spec
    if spec.directions != 1 or spec.peepholes or spec.projection_size is not None:
        raise SpecError(f"quantized oracle: plain one-direction stacks only, got {spec}")
    values = np.asarray(x, dtype=np.float64)
    errors = np.zeros_like(values)
    for per_direction in weights.cells:
        cell = CellWeights(**{k: np.asarray(v, np.float64)
                              for k, v in per_direction[0].arrays().items()})
        values, errors = _layer(cell, weights, values, errors, scheme)
    return values, errors


def _layer(cell: CellWeights, weights: LSTMWeights, x: np.ndarray, dx: np.ndarray,
           scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """One layer over the sequence: outputs and their bound."""
    batch, steps = x.shape[:2]
    units = weights.spec.units
    h, c = np.zeros((batch, units)), np.zeros((batch, units))
    dh, dc = np.zeros_like(h), np.zeros_like(c)
    whole = scheme.quantize(x) if scheme.whole_sequence else None
    whole_a = scheme.input_allowance(x, float(dx.max(initial=0.0))) if whole is not None else 0.0
    outputs, bounds = np.zeros((batch, steps, units)), np.zeros((batch, steps, units))
    for t in range(steps):
        xt = whole[:, t] if whole is not None else scheme.quantize(x[:, t])
        ax = (whole_a if whole is not None
              else scheme.input_allowance(x[:, t], float(dx[:, t].max(initial=0.0))))
        ah = scheme.input_allowance(h, float(dh.max(initial=0.0)))
        hq = scheme.quantize(h)
        # The bound is centred on the oracle's own (fake-quantized) matmul inputs.
        dz = _preactivation_bound(cell, xt, hq, dx[:, t] + ax + scheme.static.x,
                                  dh + ah + scheme.static.h_in, scheme.static.z)
        dh, dc = _state_bound(cell, xt, hq, c, dz, dc, scheme.static)
        h, c = lstm_cell_step(cell, weights.spec, xt, hq, c)
        outputs[:, t], bounds[:, t] = h, dh
    return outputs, bounds


def _preactivation_bound(cell: CellWeights, x: np.ndarray, h: np.ndarray, ax: np.ndarray,
                         ah: np.ndarray, static_z: float) -> np.ndarray:
    """Step 2: |W| a_x + |U| a_h + float32 slack + quantized intermediates."""
    w, u = np.abs(cell.w_input), np.abs(cell.w_recurrent)
    magnitude = np.abs(x) @ w.T + np.abs(h) @ u.T + np.abs(cell.b_input + cell.b_recurrent)
    return ax @ w.T + ah @ u.T + 1e-5 * magnitude + 1e-6 + static_z


def _slope(z: np.ndarray, dz: np.ndarray, derivative: Callable[[np.ndarray], np.ndarray]
           ) -> np.ndarray:
    """Step 3's Lipschitz constant: the derivative at the point of [z-dz, z+dz] nearest 0."""
    nearest = np.where(np.abs(z) <= dz, 0.0, np.abs(z) - dz)
    return derivative(nearest)


def _sigmoid_slope(z: np.ndarray) -> np.ndarray:
    s = sigmoid(z)
    return s * (1.0 - s)


def _tanh_slope(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _state_bound(cell: CellWeights, x: np.ndarray, h: np.ndarray, c: np.ndarray,
                 dz: np.ndarray, dc: np.ndarray, static: Allowance
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-5: the bounds of the new h and c from the pre-activation bound."""
    z = x @ cell.w_input.T + cell.b_input + h @ cell.w_recurrent.T + cell.b_recurrent
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    di, df, dg, do = np.split(dz, 4, axis=-1)
    i, f, g, o = sigmoid(zi), sigmoid(zf), np.tanh(zg), sigmoid(zo)
    di = np.minimum(_slope(zi, di, _sigmoid_slope) * di, 1.0) + static.gate
    df = np.minimum(_slope(zf, df, _sigmoid_slope) * df, 1.0) + static.gate
    do = np.minimum(_slope(zo, do, _sigmoid_slope) * do, 1.0) + static.gate
    dg = np.minimum(_slope(zg, dg, _tanh_slope) * dg, 2.0) + static.gate
    c_new = f * c + i * g
    dc_new = f * dc + (np.abs(c) + dc) * df + i * dg + (np.abs(g) + dg) * di + static.c
    dt = np.minimum(_slope(c_new, dc_new, _tanh_slope) * dc_new, 2.0) + static.gate
    dh = o * dt + (np.abs(np.tanh(c_new)) + dt) * do + static.h
    return dh, dc_new


def judge(runtime: np.ndarray, dequantized: LSTMWeights, original: LSTMWeights,
          x: np.ndarray, scheme: Scheme) -> Judged:
    """The verdict on ``runtime`` outputs (B, T, H) for batch-first ``x``."""
    expected, bound = oracle(dequantized, x, scheme)
    runtime = np.asarray(runtime, dtype=np.float64)
    if runtime.shape != expected.shape:
        raise SpecError(f"runtime outputs: shape {runtime.shape}, expected {expected.shape}")
    error = np.abs(runtime - expected)
    plain = float_reference(original, x).outputs
    return Judged(
        verdict=MATCHES if bool(np.all(error <= bound)) else WRONG,
        error=float(error.max()),
        bound=float(bound.max()),
        worst_ratio=float((error / bound).max()),
        float_error=float(np.abs(runtime - plain).max()),
    )


def with_swapped_gates(weights: LSTMWeights, first: int = 0, second: int = 1) -> LSTMWeights:
    """A deliberately wrong dequantization: two gate blocks exchanged (must-fail tests)."""
    units = weights.spec.units
    order = np.arange(4 * units).reshape(4, units)
    order[[first, second]] = order[[second, first]]
    rows = order.ravel()

    def swap(_layer: int, _direction: int, cell: CellWeights) -> CellWeights:
        return replace(cell, w_input=cell.w_input[rows], w_recurrent=cell.w_recurrent[rows],
                       b_input=cell.b_input[rows], b_recurrent=cell.b_recurrent[rows])

    return weights.map_cells(swap)


def with_scaled_weights(weights: LSTMWeights, factor: float) -> LSTMWeights:
    """A deliberately wrong dequantization: every weight matrix's scale times ``factor``."""

    def scale(_layer: int, _direction: int, cell: CellWeights) -> CellWeights:
        return replace(cell, w_input=cell.w_input * factor,
                       w_recurrent=cell.w_recurrent * factor)

    return weights.map_cells(scale)
