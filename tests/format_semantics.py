"""Single-cell numpy LSTMs written in each native format's OWN conventions.

Independent of the converters: each reads native weights the way its
framework's documentation describes and runs the recurrence directly. The
core tests check ``reference(canonical) == semantics[fmt](from_canonical(...))``,
so a converter bug shows as a numeric difference, not as a layout comparison.
"""

from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# Keras ``activation=`` / ONNX g = h, written from the frameworks' documented definitions.
CELL_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "linear": lambda z: z,
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "softsign": lambda z: z / (1.0 + np.abs(z)),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "elu": lambda z: np.where(z > 0, z, np.exp(np.minimum(z, 0.0)) - 1.0),
}


def _scan(step, x, state):
    outputs = []
    for t in range(x.shape[1]):
        h, state = step(x[:, t], state)
        outputs.append(h)
    return np.stack(outputs, axis=1), state


def _zeros(batch, size):
    return np.zeros((batch, size))


def keras(native, x, spec):
    kernel, recurrent, bias = (np.asarray(a, np.float64) for a in native)
    units = recurrent.shape[0]
    act = CELL_ACTIVATIONS[getattr(spec, "activation", "tanh")]  # Keras LSTM(activation=)

    def step(xt, state):
        h, c = state
        i, f, g, o = np.split(xt @ kernel + h @ recurrent + bias, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * act(g)
        h = sigmoid(o) * act(c)
        return h, (h, c)

    out, (h, c) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def tf1(native, x, spec, forget_bias=1.0):
    """``LSTMCell``: [x, h] @ kernel + bias, columns i j f o, forget_bias at run time."""
    names = ("kernel", "bias", "w_f_diag", "w_i_diag", "w_o_diag", "projection/kernel")
    if isinstance(native, dict):
        parts = {k.split("lstm_cell/")[1]: np.asarray(v, np.float64) for k, v in native.items()}
    else:
        counts = {2: names[:2], 3: (names[0], names[1], names[5]), 5: names[:5], 6: names}
        parts = dict(
            zip(counts[len(native)], (np.asarray(a, np.float64) for a in native), strict=True)
        )
    units = parts["bias"].shape[0] // 4
    act = CELL_ACTIVATIONS[spec.activation]  # LSTMCell(activation=): on j and on c
    proj = parts.get("projection/kernel")
    out_size = units if proj is None else proj.shape[1]

    def step(xt, state):
        c, m = state  # TF1 keeps (c, h)
        i, j, f, o = np.split(
            np.concatenate([xt, m], axis=1) @ parts["kernel"] + parts["bias"], 4, axis=-1
        )
        if "w_f_diag" in parts:
            f, i = f + parts["w_f_diag"] * c, i + parts["w_i_diag"] * c
        c = sigmoid(f + forget_bias) * c + sigmoid(i) * act(j)
        if spec.cell_clip is not None:
            c = np.clip(c, -spec.cell_clip, spec.cell_clip)
        if "w_o_diag" in parts:
            o = o + parts["w_o_diag"] * c
        m = sigmoid(o) * act(c)
        if proj is not None:
            m = m @ proj
            if spec.projection_clip is not None:
                m = np.clip(m, -spec.projection_clip, spec.projection_clip)
        return m, (c, m)

    out, (c, h) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), out_size)))
    return out, h, c


def torch(native, x, spec):
    w_ih, w_hh, b_ih, b_hh = (
        np.asarray(native[k], np.float64)
        for k in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    w_hr = native.get("weight_hr_l0")
    units = w_ih.shape[0] // 4
    out_size = units if w_hr is None else w_hr.shape[0]

    def step(xt, state):
        h, c = state
        i, f, g, o = np.split(xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        if w_hr is not None:
            h = h @ np.asarray(w_hr, np.float64).T
        return h, (h, c)

    out, (h, c) = _scan(step, x, (_zeros(len(x), out_size), _zeros(len(x), units)))
    return out, h, c


def onnx(native, x, spec):
    """ONNX LSTM: rows i o f c, B = [Wb, Rb], P = i o f, clip on activation inputs.

    ``input_forget=1``: f = 1 - i. ``direction="reverse"``: X read from the last step back,
    Y written at each step's own position.
    """
    w, r, b = (np.asarray(native[k], np.float64)[0] for k in ("W", "R", "B"))
    p = np.asarray(native["P"], np.float64)[0] if "P" in native else None
    units = w.shape[0] // 4
    act = CELL_ACTIVATIONS[spec.activation]  # the node's activations g = h (f stays Sigmoid)
    clip = (
        (lambda z: np.clip(z, -spec.gate_clip, spec.gate_clip)) if spec.gate_clip else (lambda z: z)
    )

    def step(xt, state):
        h, c = state
        i, o, f, g = np.split(xt @ w.T + h @ r.T + b[: 4 * units] + b[4 * units :], 4, axis=-1)
        if p is not None:
            pi, po, pf = np.split(p, 3)
            i, f = i + pi * c, f + pf * c
        input_gate = sigmoid(clip(i))
        forget_gate = 1.0 - input_gate if spec.input_forget else sigmoid(clip(f))
        c = forget_gate * c + input_gate * act(clip(g))
        if p is not None:
            o = o + po * c
        h = sigmoid(clip(o)) * act(c)
        return h, (h, c)

    xs = x[:, ::-1] if spec.reverse else x
    out, (h, c) = _scan(step, xs, (_zeros(len(x), units), _zeros(len(x), units)))
    return (out[:, ::-1] if spec.reverse else out), h, c


def neoml(native, x, spec):
    """NeoML: rows g f i o ("main, forget, input, reset"), two free terms."""
    w, r, bw, br = (
        np.asarray(native[k], np.float64)
        for k in ("input_weights", "recurrent_weights", "input_free_term", "recurrent_free_term")
    )
    units = w.shape[0] // 4

    def step(xt, state):
        h, c = state
        g, f, i, o = np.split(xt @ w.T + bw + h @ r.T + br, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, (h, c)

    out, (h, c) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def mlx(native, x, spec):
    """mlx.nn.LSTM: x @ Wx.T + bias, then + h @ Wh.T; gates i f g o; one bias (may be absent)."""
    wx, wh = (np.asarray(native[k], np.float64) for k in ("Wx", "Wh"))
    units = wh.shape[1]
    bias = np.asarray(native.get("bias", np.zeros(4 * units)), np.float64)

    def step(xt, state):
        h, c = state
        i, f, g, o = np.split(xt @ wx.T + bias + h @ wh.T, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, (h, c)

    out, (h, c) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def flax(native, x, spec):
    """linen LSTMCell: one dense per gate, bias on the hidden side; nnx: two fused denses."""
    if "dense_i" in native:
        kin = np.asarray(native["dense_i"]["kernel"], np.float64)
        kh = np.asarray(native["dense_h"]["kernel"], np.float64)
        bias = np.asarray(native["dense_h"]["bias"], np.float64)
        dense = {
            g: (a, b, d)
            for g, a, b, d in zip(
                "ifgo", np.split(kin, 4, 1), np.split(kh, 4, 1), np.split(bias, 4), strict=True
            )
        }
    else:
        dense = {
            g: (
                np.asarray(native[f"i{g}"]["kernel"], np.float64),
                np.asarray(native[f"h{g}"]["kernel"], np.float64),
                np.asarray(native[f"h{g}"]["bias"], np.float64),
            )
            for g in "ifgo"
        }
    units = dense["i"][1].shape[0]

    def step(xt, state):
        c, h = state  # flax carry is (c, h)
        z = {g: xt @ a + h @ b + d for g, (a, b, d) in dense.items()}
        c = sigmoid(z["f"]) * c + sigmoid(z["i"]) * np.tanh(z["g"])
        h = sigmoid(z["o"]) * np.tanh(c)
        return h, (c, h)

    out, (c, h) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def cudnn(native, x, spec):
    """CuDNNLSTM: each (in, H) kernel block is cuDNN's row-major (H, in) matrix laid flat."""
    kernel, recurrent, bias = (np.asarray(a, np.float64) for a in native)
    units = recurrent.shape[0]
    w = [np.ascontiguousarray(k).reshape(units, kernel.shape[0]) for k in np.split(kernel, 4, 1)]
    r = [np.ascontiguousarray(k).reshape(units, units) for k in np.split(recurrent, 4, 1)]
    b = np.split(bias[: 4 * units] + bias[4 * units :], 4)

    def step(xt, state):
        h, c = state
        i, f, g, o = (xt @ w[k].T + h @ r[k].T + b[k] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        return h, (h, c)

    out, (h, c) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def flat_state_dict(vector, spec, matrices_first):
    """Parse a flat vector into an nn.LSTM (or nn.GRU: 3 gate blocks) state_dict by explicit
    offsets (any stack)."""
    units, directions, rows = spec.units, spec.directions, spec.gate_count * spec.units
    sizes = [
        (spec.layer_input_size(k), k, d) for k in range(spec.layers) for d in range(directions)
    ]
    matrix_total = sum(rows * (width + units) for width, _, _ in sizes)
    state, offset, bias_offset = {}, 0, matrix_total
    for width, layer, direction in sizes:
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        for name, cols in (("weight_ih", width), ("weight_hh", units)):
            state[f"{name}_{suffix}"] = vector[offset : offset + rows * cols].reshape(rows, cols)
            offset += rows * cols
        where = bias_offset if matrices_first else offset
        for name in ("bias_ih", "bias_hh"):
            state[f"{name}_{suffix}"] = vector[where : where + rows]
            where += rows
        if matrices_first:
            bias_offset = where
        else:
            offset = where
    return state


def cudnn_params(native, x, spec):
    return torch(flat_state_dict(np.asarray(native, np.float64), spec, False), x, spec)


def madmom(layer, x, activation="tanh"):
    """madmom ``LSTMLayer.activate`` (madmom/ml/nn/layers.py), batched; row vectors, ``x @ W``.

    ``layer``: ``input_gate``, ``forget_gate``, ``cell``, ``output_gate``, each a dict of
    ``weights`` (I, H), ``bias`` (H,), ``recurrent_weights`` (H, H) and the gates'
    ``peephole_weights`` (H,) or None. ``Gate.activate``: sigmoid(x W + b + state * p + h R),
    given the previous state for i and f and the new one for o; ``Cell``: the activation
    (tanh) without peepholes; ``state = cell * ig + state * fg``; ``out = act(state) * og``.
    """
    act = CELL_ACTIVATIONS[activation]

    def gate(name, xt, prev, state, fn=sigmoid):
        g = {k: None if v is None else np.asarray(v, np.float64) for k, v in layer[name].items()}
        out = xt @ g["weights"] + g["bias"]
        if g.get("peephole_weights") is not None:
            out = out + state * g["peephole_weights"]
        return fn(out + prev @ g["recurrent_weights"])

    def step(xt, carried):
        prev, state = carried
        ig = gate("input_gate", xt, prev, state)
        fg = gate("forget_gate", xt, prev, state)
        cell = gate("cell", xt, prev, None, act)
        state = cell * ig + state * fg
        og = gate("output_gate", xt, prev, state)
        out = act(state) * og
        return out, (out, state)

    units = np.asarray(layer["cell"]["bias"]).size
    out, (h, c) = _scan(step, x, (_zeros(len(x), units), _zeros(len(x), units)))
    return out, h, c


def madmom_bidirectional(fwd, bwd, x, activation="tanh"):
    """``BidirectionalLayer.activate``: bwd on the reversed frames, ``hstack((fwd, bwd[::-1]))``."""
    forward = madmom(fwd, x, activation)[0]
    backward = madmom(bwd, x[:, ::-1], activation)[0][:, ::-1]
    return np.concatenate([forward, backward], axis=-1)


def jax_rnn(native, x, spec):
    return torch(flat_state_dict(np.asarray(native, np.float64), spec, True), x, spec)


SEMANTICS = {
    "keras": keras,
    "tf1": tf1,
    "torch": torch,
    "onnx": onnx,
    "neoml": neoml,
    "flax": flax,
    "mlx": mlx,
    "cudnn": cudnn,
    "cudnn_params": cudnn_params,
    "jax_rnn": jax_rnn,
}
