"""OpenVINO ignores an LSTM's ``sequence_lens`` when X has dynamic dimensions and the
weights are initializers (the usual exported model).

Runtime: openvino 2026.4.1 (PyPI), CPU plugin, x86_64 Linux; with
INFERENCE_PRECISION_HINT=f32 (grid row openvino) and with the default precision (row
openvino_default).
Grid cells: none. The conformance grid feeds the weights as graph inputs and matches
there; this path (constant weights, symbolic time and batch) is outside it. The same
node with fixed dimensions, or with W/R/B as graph inputs, matches.
Exporter: ``openvino.convert_model`` of a torch ``nn.LSTM`` packed by lengths, shapes
left dynamic, writes such an IR (LSTMSequence, constant weights, dynamic X): its
``lengths`` probe is this finding (EXPECTED_PROBES).
Upstream: not reported upstream (searched openvinotoolkit/openvino issues for LSTM
sequence_lens, 2026-12-02). Issue ready to file:

    Title: [Bug]: CPU: ONNX LSTM with dynamic time/batch and constant weights ignores
    sequence_lens (silently wrong outputs)

    OpenVINO Version: 2026.4.1 (PyPI wheel). Operating System: Linux x86_64.
    Device: CPU (INFERENCE_PRECISION_HINT=f32 and default). Framework: ONNX (onnx
    1.23.2, opset 14).

    Steps: run this script. It builds one LSTM node (hidden_size=3, X of shape
    (time, batch, 2) with symbolic time and batch, sequence_lens input, W/R/B as
    initializers, initial_h/initial_c inputs), compiles it for CPU, feeds T=3, B=2,
    sequence_lens=[1, 3], and compares with the ONNX spec equations in float64 numpy.

    Expected: batch entry 0 stops after one step: Y[1:, :, 0] is 0 and Y_h/Y_c[:, 0]
    its state after step 0 (ONNX Runtime 1.32.0 agrees with the equations to 1e-7).

    Actual: entry 0 runs all 3 steps (max abs diff about 0.9). Declaring T and B as
    fixed dimensions, or passing W/R/B as graph inputs, gives the right numbers.

Exits 1 while the bug reproduces, 0 once fixed, 2 when openvino is missing or refuses.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    import onnx
    import openvino
    from onnx import helper, numpy_helper
except ImportError as exc:
    print(f"not installed: {exc}")
    sys.exit(2)

CELLS: list = []  # not a grid cell (see the docstring)
# (exporter, configuration, probe) of the exporters' expected Known this script stands for
EXPECTED_PROBES = [("openvino.convert_model (torch)", "lengths (packed), dynamic shapes",
                    "lengths")]
TOLERANCE = 1e-4  # a float32 engine against the float64 reference; the bugs are ~0.1 to 2
IN, H, T, B = 2, 3, 3, 2  # input size, hidden size, time steps, batch
STATE_SCALE = 1.0  # initial states N(0, 1)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm(x, w, r, b, h, c, *, p=None, clip=None, input_forget=False, reverse=False,
         lens=None, f=sigmoid, g=np.tanh, hh=np.tanh):
    """ONNX LSTM, one direction, layout 0, float64: Y (T, 1, B, H), Y_h and Y_c (1, B, H)."""
    x, w, r, b, h, c = (np.asarray(a, np.float64) for a in (x, w[0], r[0], b[0], h[0], c[0]))
    steps, size = x.shape[0], h.shape[-1]
    pi, po, pf = np.split(np.zeros(3 * size) if p is None else np.asarray(p, np.float64)[0], 3)
    lens = np.full(x.shape[1], steps) if lens is None else np.asarray(lens)
    cut = (lambda z: z) if clip is None else (lambda z: np.clip(z, -clip, clip))
    y = np.zeros((steps, 1, *h.shape))
    for t in (reversed(range(steps)) if reverse else range(steps)):
        zi, zo, zf, zc = np.split(x[t] @ w.T + h @ r.T + b[:4 * size] + b[4 * size:], 4, -1)
        i = f(cut(zi + pi * c))
        forget = 1 - i if input_forget else f(cut(zf + pf * c))
        c_new = forget * c + i * g(cut(zc))
        h_new = f(cut(zo + po * c_new)) * hh(c_new)
        live = (t < lens)[:, None]  # sequence_lens: padded steps keep the state, Y is 0
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        y[t, 0] = np.where(live, h_new, 0)
    return y, h[None], c[None]


def make_model(weights: dict, *, lens: bool = False, peepholes: bool = False,
               dynamic: bool = False, dtype=np.float32, **attributes) -> bytes:
    """One LSTM node: X, [sequence_lens L], h0, c0 in; W, R, B[, P] initializers.

    ``dynamic``: time and batch are symbolic dimensions (as exported models have them).
    """
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    t, b = ("time", "batch") if dynamic else (T, B)
    inputs = [helper.make_tensor_value_info("X", elem, [t, b, IN])]
    if lens:
        inputs.append(helper.make_tensor_value_info("L", onnx.TensorProto.INT32, [b]))
    inputs += [helper.make_tensor_value_info(n, elem, [1, b, H]) for n in ("h0", "c0")]
    outputs = [helper.make_tensor_value_info("Y", elem, [t, 1, b, H])]
    outputs += [helper.make_tensor_value_info(n, elem, [1, b, H]) for n in ("Y_h", "Y_c")]
    names = ["X", "W", "R", "B", "L" if lens else "", "h0", "c0", "P" if peepholes else ""]
    while not names[-1]:
        names.pop()
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], hidden_size=H, **attributes)
    initializers = [numpy_helper.from_array(v.astype(dtype), k) for k, v in weights.items()
                    if k != "P" or peepholes]
    graph = helper.make_graph([node], "lstm", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def draw() -> tuple[dict, dict]:
    """Weights and inputs, N(0, 1) float32: large enough that a wrong equation shows."""
    rng = np.random.default_rng(0)
    shapes = {"W": (1, 4 * H, IN), "R": (1, 4 * H, H), "B": (1, 8 * H), "P": (1, 3 * H)}
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    shapes = {"X": (T, B, IN), "h0": (1, B, H), "c0": (1, B, H)}
    feeds = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    feeds["h0"], feeds["c0"] = feeds["h0"] * STATE_SCALE, feeds["c0"] * STATE_SCALE
    return weights, feeds | {"L": np.array([1, T][:B], np.int32)}


def max_abs_diff(expected, actual) -> float:
    if len(actual) != len(expected) or any(
            np.shape(a) != e.shape for e, a in zip(expected, actual, strict=True)):
        print(f"  shapes {[np.shape(a) for a in actual]}, expected {[e.shape for e in expected]}")
        return float("inf")
    return max(float(np.max(np.abs(e - a))) for e, a in zip(expected, actual, strict=True))


def run_openvino(model: bytes, feeds: dict, hint: str | None) -> list:
    """CPU plugin; ``hint`` the INFERENCE_PRECISION_HINT (None: the plugin's default)."""
    core = openvino.Core()
    # one thread, as the grid's rows run (layout=1 with initial states raises instead of
    # returning an empty Y when the plugin picks its own thread count)
    config: dict = {"INFERENCE_NUM_THREADS": 1}
    config |= {"INFERENCE_PRECISION_HINT": hint} if hint else {}
    compiled = core.compile_model(core.read_model(model), "CPU", config)
    # feed the inputs the compiled model has, as a deployment does
    fed = {port.get_any_name(): feeds[port.get_any_name()] for port in compiled.inputs}
    outputs = compiled.create_infer_request().infer(fed)
    return [outputs[port] for port in compiled.outputs]


_VERSION = openvino.__version__.split("-")[0]
RUNS = {f"OpenVINO {_VERSION} CPU, f32 hint (row openvino)":
        lambda m, f: run_openvino(m, f, "f32")}
# The plugin's default precision is bf16 on CPUs with AVX512-BF16 or AMX: there even the
# layout=0 control misses the f32 tolerance (about 4e-3), so the default-precision run is
# judged only where that default is f32 (the f32 row carries the finding everywhere).
_DEFAULT = str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
if "f32" in _DEFAULT or "float32" in _DEFAULT:
    RUNS[f"OpenVINO {_VERSION} CPU, default precision (row openvino_default)"] = (
        lambda m, f: run_openvino(m, f, None))
else:
    print(f"OpenVINO {_VERSION} CPU default precision is {_DEFAULT} here: the row "
          "openvino_default is not judged by this script on this CPU")

CASES = {  # name -> (graph attributes, the reference's semantics)
    "control": ({"lens": True}, {}),  # fixed dimensions: right
    "dynamic time and batch, sequence_lens=[1, 3]": ({"lens": True, "dynamic": True}, {}),
}


def main() -> int:
    """Each case in each run; the control (no attribute) must match for the finding to count."""
    weights, feeds = draw()
    reproduced = False
    for label, run in RUNS.items():
        for name, (attributes, semantics) in CASES.items():
            model = make_model(weights, **attributes)
            try:
                actual = run(model, feeds)
            except Exception as exc:  # a refusal is not this finding
                print(f"{label} refused {name}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                return 2
            expected = lstm(feeds["X"], weights["W"], weights["R"], weights["B"], feeds["h0"],
                            feeds["c0"], p=weights["P"] if attributes.get("peepholes") else None,
                            lens=feeds["L"] if attributes.get("lens") else None, **semantics)
            diff = max_abs_diff(expected, actual)
            print(f"{label}: {name}: max abs diff {diff:.3g} (tolerance {TOLERANCE:g})")
            if name == "control" and diff > TOLERANCE:
                print("the control is off too: not this finding")
                return 2
            reproduced |= name != "control" and diff > TOLERANCE
    print("REPRODUCED" if reproduced else "FIXED: update equivalence/known.py, findings/README.md")
    return 1 if reproduced else 0


if __name__ == "__main__":
    sys.exit(main())
