"""The mutation self-test: realistic conversion bugs the harness must catch.

Each entry takes the project's correct conversion (or a runtime adapter) and
breaks it the way people do (the pitfalls in FORMATS.md). ``run_catalogue``
checks each bug with the same machinery as ``check_conversion``: real
frameworks on both sides where they run here, Hypothesis examples, shrinking,
and the diagnosis. Every bug must be caught; the diagnosable ones must be
diagnosed as what they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import harness
from .check import Side, choose_side, judge
from .convert import convert
from .diagnose import diagnose
from .explore import explore
from .formats import onnx, tf1
from .formats._common import inverse_order, permute_gates
from .io_types import LSTMResult
from .spec import LSTMSpec
from .strategies import Case, joint_capabilities, lstm_cases

Bug = Callable[[Any, LSTMSpec, Any], Any]  # (correctly moved weights, spec, source native)


@dataclass(frozen=True)
class Mutation:
    """One known bug: where it lives, how it breaks things, what diagnosis it deserves."""

    name: str
    source: str
    target: str
    bug: Bug | None = None  # applied to the correctly converted native weights
    adapter: Callable[[LSTMResult], LSTMResult] | None = None  # applied to the target's result
    target_spec: Callable[[LSTMSpec], LSTMSpec] | None = None  # the target built wrongly
    needs: Callable[[Case], bool] = lambda case: True
    diagnosis: str | None = None  # a substring the diagnosis must contain (None: any)


def _keras_arrays(fn: Callable[[np.ndarray], np.ndarray]) -> Bug:
    return lambda moved, spec, original: [fn(a) for a in moved]


def _f_slice(bias: np.ndarray, offset: float, position: int) -> np.ndarray:
    bias = np.array(bias, copy=True)
    units = bias.shape[0] // 4
    bias[position * units : (position + 1) * units] += offset
    return bias


def _keras_forget_offset(moved: list, spec: LSTMSpec, original: Any) -> list:
    return [a if n % 3 != 2 else _f_slice(a, -1.0, 1) for n, a in enumerate(moved)]


def _tf1_forget_not_subtracted(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    def fix(name: str, a: np.ndarray) -> np.ndarray:
        return _f_slice(a, 1.0, 2) if name.endswith("lstm_cell/bias") else a  # f is block 2

    if isinstance(moved, dict):
        return {k: fix(k, v) for k, v in moved.items()}
    return [fix("lstm_cell/bias" if n == 1 else "", a) for n, a in enumerate(moved)]


def _torch_bias_ih_only(moved: list, spec: LSTMSpec, original: dict) -> list:
    return [*moved[:2], np.asarray(original["bias_ih_l0"])]


def _torch_reshaped(moved: list, spec: LSTMSpec, original: dict) -> list:
    w_ih, w_hh = (np.asarray(original[k]) for k in ("weight_ih_l0", "weight_hh_l0"))
    return [w_ih.reshape(w_ih.shape[::-1]), w_hh.reshape(w_hh.shape[::-1]), moved[2]]


def _onnx_in_canonical_order(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    if isinstance(moved, list):
        return [_onnx_in_canonical_order(node, spec, original) for node in moved]
    back = inverse_order(onnx.GATE_ORDER)
    units = spec.units
    bias = moved["B"]
    return {
        **moved,
        "W": permute_gates(moved["W"], back, axis=1),
        "R": permute_gates(moved["R"], back, axis=1),
        "B": np.concatenate(
            [
                permute_gates(bias[:, : 4 * units], back, axis=1),
                permute_gates(bias[:, 4 * units :], back, axis=1),
            ],
            axis=1,
        ),
    }


def _cudnn_as_keras(moved: list, spec: LSTMSpec, original: list) -> list:
    """Keras kernels copied into CuDNNLSTM unchanged (only the bias doubled)."""
    return [
        a if n % 3 != 2 else np.tile(0.5 * np.asarray(original[n]), 2)
        for n, a in enumerate(original)
    ]


def _cudnn_first_half(moved: list, spec: LSTMSpec, original: list) -> list:
    return [*moved[:2], np.asarray(original[2])[: 4 * spec.units]]


def _tf1_split_at_units(moved: list, spec: LSTMSpec, original: list) -> list:
    kernel, bias = np.asarray(original[0]), np.asarray(original[1])
    split = spec.units  # should be the input size
    permuted = permute_gates(kernel, inverse_order(tf1.GATE_ORDER), axis=1)
    folded = _f_slice(permute_gates(bias, inverse_order(tf1.GATE_ORDER)), 1.0, 1)
    return [permuted[:split], permuted[split:], folded]


def _bidirectional_swapped(moved: list, spec: LSTMSpec, original: Any) -> list:
    groups = [moved[k : k + 3] for k in range(0, len(moved), 3)]
    swapped = [g for k in range(0, len(groups), 2) for g in (groups[k + 1], groups[k])]
    return [a for g in swapped for a in g]


def _projection_reshaped(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    if isinstance(moved, list):  # the single-cell list form: the projection is last
        return [*moved[:-1], np.ascontiguousarray(moved[-1].T).reshape(moved[-1].shape)]
    out = dict(moved)
    for key, value in moved.items():
        if key.endswith("projection/kernel"):
            out[key] = np.ascontiguousarray(value.T).reshape(value.shape)
    return out


def _peepholes_ifo(moved: Any, spec: LSTMSpec, original: Any) -> Any:
    nodes = moved if isinstance(moved, list) else [moved]
    fixed = []
    for node in nodes:
        rows = list(inverse_order(onnx.PEEPHOLE_ORDER))
        p = node["P"].reshape(node["P"].shape[0], 3, -1)[:, rows]
        fixed.append({**node, "P": p.reshape(node["P"].shape)})
    return fixed if isinstance(moved, list) else fixed[0]


def _one_weight_off(moved: list, spec: LSTMSpec, original: Any) -> list:
    kernel = np.array(moved[0], copy=True)
    kernel[0, 2 * spec.units] += np.float32(1e-3)  # input 0 into the g gate of unit 0
    return [kernel, *moved[1:]]


def _swap_h_c(result: LSTMResult) -> LSTMResult:
    return LSTMResult(result.outputs, result.c, result.h)


def _reverse_outputs(result: LSTMResult) -> LSTMResult:
    return LSTMResult(result.outputs[:, ::-1], result.h, result.c)


def _single(case: Case) -> bool:
    return case.spec.layers == 1 and case.spec.directions == 1


CATALOGUE: tuple[Mutation, ...] = (
    Mutation(
        "f and g gate blocks swapped (TF1's i, j, f, o order kept)",
        "torch",
        "keras",
        _keras_arrays(lambda a: permute_gates(a, (0, 2, 1, 3), axis=-1)),
        diagnosis="f and g swapped",
    ),
    Mutation(
        "TF1 i, j, f, o columns read as i, f, g, o",
        "tf1",
        "torch",
        lambda moved, spec, original: {
            k: permute_gates(np.asarray(v), (0, 2, 1, 3), axis=0)
            for k, v in moved.items()
            if "hr" not in k
        },
        needs=lambda case: case.spec.projection_size is None,
        diagnosis="f and g swapped",
    ),
    Mutation(
        "ONNX written in i, f, g, o instead of i, o, f, c",
        "keras",
        "onnx",
        _onnx_in_canonical_order,
        diagnosis="permuted",
    ),
    Mutation(
        "TF1 forget_bias not folded into the Keras bias",
        "tf1",
        "keras",
        _keras_forget_offset,
        diagnosis="off by -1",
    ),
    Mutation(
        "forget_bias not subtracted when writing TF1",
        "keras",
        "tf1",
        _tf1_forget_not_subtracted,
        diagnosis="off by +1",
    ),
    Mutation(
        "PyTorch bias_hh dropped instead of summed",
        "torch",
        "keras",
        _torch_bias_ih_only,
        needs=_single,
        diagnosis="only the input bias kept",
    ),
    Mutation(
        "CuDNNLSTM bias: first half kept instead of the sum",
        "cudnn",
        "keras",
        _cudnn_first_half,
        needs=_single,
        diagnosis="only the input bias kept",
    ),
    Mutation(
        "PyTorch kernels reshaped instead of transposed",
        "torch",
        "keras",
        _torch_reshaped,
        needs=_single,
        diagnosis="reshaped instead of transposed",
    ),
    Mutation(
        "CuDNNLSTM kernels written in Keras's layout (no flat reshape)",
        "keras",
        "cudnn",
        _cudnn_as_keras,
        diagnosis="reshaped instead of transposed",
    ),
    Mutation(
        "TF1 kernel split at row H instead of row I",
        "tf1",
        "keras",
        _tf1_split_at_units,
        needs=lambda case: _single(case) and case.spec.input_size != case.spec.units,
    ),
    Mutation(
        "TF1 state tuple (c, h) read as (h, c)",
        "torch",
        "tf1",
        adapter=_swap_h_c,
        needs=lambda case: case.spec.projection_size is None,
        diagnosis="h and c swapped",
    ),
    Mutation(
        "go_backwards output not reversed back",
        "torch",
        "keras",
        adapter=_reverse_outputs,
        needs=lambda case: case.inputs.steps > 1,
        diagnosis="reversed",
    ),
    Mutation(
        "Bidirectional forward and backward weights swapped",
        "torch",
        "keras",
        _bidirectional_swapped,
        needs=lambda case: case.spec.directions == 2,
    ),
    Mutation(
        "TF1 projection kernel reshaped instead of transposed",
        "torch",
        "tf1",
        _projection_reshaped,
        needs=lambda case: (case.spec.projection_size or 0) > 1,
    ),
    Mutation(
        "ONNX peepholes written in i, f, o order instead of i, o, f",
        "tf1",
        "onnx",
        _peepholes_ifo,
        needs=lambda case: case.spec.peepholes,
    ),
    Mutation(
        "weights rounded through float16",
        "torch",
        "keras",
        _keras_arrays(lambda a: a.astype(np.float16).astype(a.dtype)),
        needs=lambda case: case.spec.dtype == "float32",
        diagnosis="float16",
    ),
    Mutation(
        "one weight off by 1e-3",
        "torch",
        "keras",
        _one_weight_off,
        needs=lambda case: case.spec.dtype == "float32",
    ),
    Mutation(
        "Keras 3 hard sigmoid built where sigmoid was meant",
        "torch",
        "keras",
        target_spec=lambda spec: spec.replace(recurrent_activation="hard_sigmoid_keras3"),
        diagnosis="hard_sigmoid_keras3 where sigmoid",
    ),
)


@dataclass(frozen=True)
class _BuggySide(Side):
    """A target side whose adapter has a known bug."""

    mutation: Mutation | None = None

    def run(self, case: Case, native: Any) -> LSTMResult:
        mutation = self.mutation
        if mutation is not None and mutation.target_spec is not None:
            case = replace(case, spec=mutation.target_spec(case.spec))
        result = super().run(case, native)
        return mutation.adapter(result) if mutation and mutation.adapter else result


@dataclass(frozen=True)
class MutationResult:
    bug: str
    caught: bool
    examples: int
    seconds: float
    diagnosis: str | None
    expected_diagnosis: str | None
    runtimes: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "bug": self.bug,
            "caught": self.caught,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
            "diagnosis": self.diagnosis,
            "expected_diagnosis": self.expected_diagnosis,
            "runtimes": self.runtimes,
        }


def run_mutation(mutation: Mutation, *, max_examples: int = 25, seed: int = 0) -> MutationResult:
    """Check one bug like check_conversion checks a user's converter."""
    source, target = choose_side(mutation.source), choose_side(mutation.target)
    target = _BuggySide(target.format, target.entry, target.why_reference, mutation)
    caps = joint_capabilities([source.capabilities, target.capabilities])
    cases = lstm_cases(capabilities=caps, dtypes=("float32",)).filter(mutation.needs)
    start = time.perf_counter()

    def judged(case: Case) -> harness.Outcome:
        def fn(native: Any) -> Any:
            options = harness.reader_options(source.format, case.spec, source.options())
            moved = convert(
                native,
                source=source.format,
                target=target.format,
                source_options=options,
                target_options=harness.writer_options(target.format, target.options()),
            )
            return mutation.bug(moved, case.spec, native) if mutation.bug else moved

        return judge(fn, source, target, case)

    found = explore(cases, judged, max_examples=max_examples, seed_value=seed)
    diagnosis = None
    if found.failure is not None and found.failure.actual is not None:
        diagnosis = diagnose(found.failure.case, found.failure.actual)
    return MutationResult(
        mutation.name,
        not found.passed,
        found.examples,
        time.perf_counter() - start,
        diagnosis,
        mutation.diagnosis,
        f"{source.label} -> {target.label}",
    )


def run_catalogue(*, max_examples: int = 25, seed: int = 0) -> list[MutationResult]:
    return [run_mutation(m, max_examples=max_examples, seed=seed) for m in CATALOGUE]
