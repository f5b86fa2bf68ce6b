"""The mutation self-test: realistic conversion bugs the harness must catch and name.

Each entry takes the project's correct conversion (or a runtime adapter) and
breaks it the way people do (the pitfalls in FORMATS.md), alone or two
mistakes at once (the bugs are in :mod:`equivalence.mutations.bugs`).
``run_catalogue`` checks each bug with the same machinery as
``check_conversion``: real frameworks on both sides where they run here,
Hypothesis examples, shrinking, and the diagnosis, which reads the converted
weights back and names every mistake. Every bug must be caught and named
completely: each of its ``names`` in the diagnosis, nothing left unexplained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from equivalence.convert import convert
from equivalence.diagnosis.explain import diagnose, rerun
from equivalence.formats._common import permute_gates
from equivalence.harness import judge as harness
from equivalence.harness.check import Side, choose_side, judge
from equivalence.harness.explore import explore
from equivalence.io_types import LSTMResult
from equivalence.mutations import bugs
from equivalence.spec import LSTMSpec
from equivalence.strategies import Case, joint_capabilities, lstm_cases

FG = "f and g blocks swapped in kernel, recurrent kernel and bias"


@dataclass(frozen=True)
class Mutation:
    """One known bug: where it lives, how it breaks things, what the diagnosis must name."""

    name: str
    source: str
    target: str
    bug: bugs.Bug | None = None  # applied to the correctly converted native weights
    adapter: Callable[[LSTMResult], LSTMResult] | None = None  # applied to the target's result
    target_spec: Callable[[LSTMSpec], LSTMSpec] | None = None  # the target built wrongly
    needs: Callable[[Case], bool] = lambda case: True
    names: tuple[str, ...] = ()  # every one must appear in the diagnosis
    cell: str = "lstm"

    @property
    def compound(self) -> bool:
        return len(self.names) > 1


def _single(case: Case) -> bool:
    return case.spec.layers == 1 and case.spec.directions == 1


def _float32(case: Case) -> bool:
    return case.spec.dtype == "float32"


def _some_layout(case: Case) -> bool:
    """A reshape that is not a transpose changes something: not every matrix is a vector."""
    return case.spec.input_size > 1 or case.spec.units > 1


SINGLE_BUGS: tuple[Mutation, ...] = (
    Mutation("f and g gate blocks swapped (TF1's i, j, f, o order kept)", "torch", "keras",
             bugs.keras_arrays(lambda a: permute_gates(a, (0, 2, 1, 3), axis=-1)), names=(FG,)),
    Mutation("TF1 i, j, f, o columns read as i, f, g, o", "tf1", "torch",
             lambda moved, spec, original: {
                 k: permute_gates(np.asarray(v), (0, 2, 1, 3), axis=0)
                 for k, v in moved.items() if "hr" not in k},
             needs=lambda case: case.spec.projection_size is None, names=(FG,)),
    Mutation("ONNX written in i, f, g, o instead of i, o, f, c", "keras", "onnx",
             bugs.onnx_in_canonical_order,
             names=("gate blocks permuted to i, g, o, f (ONNX's i, o, f, c order not converted) "
                    "in kernel, recurrent kernel and bias",)),
    Mutation("TF1 forget_bias not folded into the Keras bias", "tf1", "keras",
             bugs.keras_forget_offset,
             names=("-1.0 added to the f block of the bias (forget_bias not folded in)",)),
    Mutation("forget_bias not subtracted when writing TF1", "keras", "tf1",
             bugs.tf1_forget_not_subtracted,
             names=("+1.0 added to the f block of the bias (forget_bias folded twice",)),
    Mutation("PyTorch bias_hh dropped instead of summed", "torch", "keras",
             bugs.torch_bias_ih_only, needs=_single,
             names=("recurrent bias dropped (only the input bias kept)",)),
    Mutation("PyTorch -> MLX: bias_hh not summed into MLX's one bias", "torch", "mlx",
             bugs.mlx_bias_ih_only, needs=_single,
             names=("recurrent bias dropped (only the input bias kept)",)),
    Mutation("Keras -> MLX: kernels reshaped instead of transposed", "keras", "mlx",
             bugs.keras_to_mlx_reshaped, needs=lambda case: _single(case) and _some_layout(case),
             names=("reshaped instead of transposed in",)),
    Mutation("CuDNNLSTM bias: first half kept instead of the sum", "cudnn", "keras",
             bugs.cudnn_first_half, needs=_single,
             names=("recurrent bias dropped (only the input bias kept)",)),
    Mutation("PyTorch kernels reshaped instead of transposed", "torch", "keras",
             bugs.torch_reshaped, needs=lambda case: _single(case) and _some_layout(case),
             names=("reshaped instead of transposed in",)),
    Mutation("CuDNNLSTM kernels written in Keras's layout (no flat reshape)", "keras", "cudnn",
             bugs.cudnn_as_keras, needs=lambda case: case.spec.units > 1,
             names=("gate blocks reshaped instead of transposed in",)),
    Mutation("TF1 kernel split at row H instead of row I", "tf1", "keras",
             bugs.tf1_split_at_units,
             needs=lambda case: _single(case) and case.spec.input_size != case.spec.units,
             names=("cannot be read back as keras", "the right numbers in arrays of the wrong "
                    "shapes")),
    Mutation("TF1 state tuple (c, h) read as (h, c)", "torch", "tf1", adapter=bugs.swap_h_c,
             needs=lambda case: case.spec.projection_size is None,
             names=("converted weights agree with the source's; h and c swapped",)),
    Mutation("go_backwards output not reversed back", "torch", "keras",
             adapter=bugs.reverse_outputs, needs=lambda case: case.inputs.steps > 1,
             names=("converted weights agree with the source's; output sequence reversed",)),
    Mutation("Bidirectional forward and backward weights swapped", "torch", "keras",
             bugs.bidirectional_swapped, needs=lambda case: case.spec.directions == 2,
             names=("forward and backward directions swapped",)),
    Mutation("TF1 projection kernel reshaped instead of transposed", "torch", "tf1",
             bugs.projection_reshaped,
             needs=lambda case: (case.spec.projection_size or 0) > 1
             and case.spec.projection_size != case.spec.units and case.spec.units > 1,
             names=("reshaped instead of transposed in projection",)),
    Mutation("ONNX peepholes written in i, f, o order instead of i, o, f", "tf1", "onnx",
             bugs.peepholes_ifo, needs=lambda case: case.spec.peepholes,
             names=("f and o blocks swapped in peepholes",)),
    Mutation("weights rounded through float16", "torch", "keras",
             bugs.keras_arrays(lambda a: a.astype(np.float16).astype(a.dtype)),
             needs=_float32, names=("all weights rounded through float16",)),
    Mutation("one weight off by 1e-3", "torch", "keras", bugs.one_weight_off, needs=_float32,
             names=("kernel[g, unit 0, input 0] off by +0.001",)),
    Mutation("Keras -> TF1: kernel stacked [recurrent; input]", "keras", "tf1",
             bugs.tf1_recurrent_rows_first,
             needs=lambda case: _single(case) and case.spec.input_size != case.spec.output_size,
             names=("kernel and recurrent kernel concatenated in the wrong order",)),
    Mutation("Keras 3 hard sigmoid built where sigmoid was meant", "torch", "keras",
             target_spec=lambda spec: spec.replace(recurrent_activation="hard_sigmoid_keras3"),
             names=("recurrent activation hard_sigmoid_keras3 where sigmoid was meant",)),
)

GRU_BUGS: tuple[Mutation, ...] = (
    Mutation("GRU: Keras's z, r, h order kept (PyTorch's r, z, n not converted)", "torch", "keras",
             bugs.gru_zr_swapped, cell="gru",
             names=("r and z blocks swapped in kernel, recurrent kernel and bias",)),
    Mutation("GRU: b_hn summed into the input bias (an LSTM's one-bias habit)", "torch", "keras",
             bugs.gru_recurrent_bias_summed, cell="gru", needs=_single,
             names=("the candidate's recurrent bias b_hn summed into the input bias",)),
    Mutation("GRU: linear_before_reset=0 built where reset_after=True was meant", "torch", "onnx",
             target_spec=lambda spec: spec.replace(reset_after=False), cell="gru",
             names=("reset_after=False (the reset gate before the recurrent matmul: ONNX "
                    "linear_before_reset=0, Keras reset_after=False) where reset_after=True "
                    "was meant",)),
)

COMPOUND_BUGS: tuple[Mutation, ...] = (
    Mutation("TF1 -> Keras: i, j, f, o not reordered, forget_bias added at Keras's f slot",
             "tf1", "keras", bugs.tf1_unordered_forget_at_keras_f, needs=_single,
             names=(FG, "+1.0 added to the g block of the bias instead of the f block (forget_bias "
                        "folded into the wrong block)")),
    Mutation("PyTorch -> Keras: f/g swapped and bias_hh dropped", "torch", "keras",
             bugs.torch_fg_swapped_bias_hh_dropped, needs=_single,
             names=(FG, "recurrent bias dropped (only the input bias kept)")),
    Mutation("Keras -> ONNX: i, f, g, o kept and stored through float16", "keras", "onnx",
             bugs.onnx_unordered_float16, needs=_float32,
             names=("gate blocks permuted to i, g, o, f (ONNX's i, o, f, c order not converted)",
                    "all weights rounded through float16")),
    Mutation("CuDNNLSTM -> Keras: cuDNN layout kept and only the first bias half", "cudnn",
             "keras", bugs.cudnn_layout_kept_first_half,
             needs=lambda case: _single(case) and case.spec.units > 1,
             names=("gate blocks reshaped instead of transposed in",
                    "recurrent bias dropped (only the input bias kept)")),
    Mutation("Bidirectional: directions swapped and f/g swapped", "torch", "keras",
             bugs.bidirectional_and_fg_swapped, needs=lambda case: case.spec.directions == 2,
             names=("forward and backward directions swapped", FG)),
    Mutation("float16 rounding and one weight off by 1e-3", "torch", "keras",
             bugs.float16_then_one_weight_off, needs=lambda case: _single(case) and _float32(case),
             names=("all weights rounded through float16",
                    "kernel[g, unit 0, input 0] off by +0.001")),
    Mutation("two weights off (1e-3 and -2e-3)", "torch", "keras", bugs.two_weights_off,
             needs=lambda case: _single(case) and _float32(case),
             names=("kernel[g, unit 0, input 0] off by +0.001",
                    "recurrent kernel[f, unit 0, h 0] off by -0.002")),
    Mutation("Keras -> TF1: kernel stacked [recurrent; input], forget_bias not subtracted",
             "keras", "tf1", bugs.tf1_recurrent_rows_first_forget_kept,
             needs=lambda case: _single(case) and case.spec.input_size != case.spec.output_size,
             names=("kernel and recurrent kernel concatenated in the wrong order",
                    "+1.0 added to the f block of the bias (forget_bias folded twice")),
    Mutation("Keras -> PyTorch: kernels reshaped, summed bias written into both biases",
             "keras", "torch", bugs.keras_to_torch_reshaped_bias_twice,
             needs=lambda case: _single(case) and _some_layout(case),
             names=("reshaped instead of transposed in",
                    "bias counted twice (the sum kept in both biases)")),
)

GRU_COMPOUND_BUGS: tuple[Mutation, ...] = (
    Mutation("GRU: z, r, h kept and b_hn summed into the input bias", "torch", "keras",
             bugs.gru_zr_swapped_bias_summed, cell="gru", needs=_single,
             names=("r and z blocks swapped in kernel, recurrent kernel and bias",
                    "the candidate's recurrent bias b_hn summed into the input bias")),
)

CATALOGUE: tuple[Mutation, ...] = SINGLE_BUGS + GRU_BUGS + COMPOUND_BUGS + GRU_COMPOUND_BUGS


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
    expected_names: tuple[str, ...]
    runtimes: str

    @property
    def missing(self) -> tuple[str, ...]:
        """Names the diagnosis owes but does not give."""
        return tuple(n for n in self.expected_names if n not in (self.diagnosis or ""))

    @property
    def named_completely(self) -> bool:
        return not self.missing and "unexplained" not in (self.diagnosis or "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "bug": self.bug,
            "caught": self.caught,
            "examples": self.examples,
            "seconds": round(self.seconds, 2),
            "diagnosis": self.diagnosis,
            "expected_diagnosis": "; ".join(self.expected_names) or None,
            "named_completely": self.named_completely,
            "compound": len(self.expected_names) > 1,
            "runtimes": self.runtimes,
        }


def run_mutation(mutation: Mutation, *, max_examples: int = 25, seed: int = 0) -> MutationResult:
    """Check one bug like check_conversion checks a user's converter."""
    source = choose_side(mutation.source, mutation.cell)
    target = choose_side(mutation.target, mutation.cell)
    target = _BuggySide(target.format, target.entry, target.why_reference, mutation)
    caps = joint_capabilities([source.capabilities, target.capabilities])
    cases = lstm_cases(capabilities=caps, dtypes=("float32",), cell=mutation.cell).filter(
        mutation.needs)
    start = time.perf_counter()
    found = explore(cases, lambda case: judge(_buggy(mutation, source, target, case), source,
                                              target, case),
                    max_examples=max_examples, seed_value=seed)
    diagnosis = None
    if found.failure is not None:
        case = found.failure.case
        converted = rerun(_buggy(mutation, source, target, case), case, source=source.format,
                          target=target.format, source_options=source.options(),
                          target_options=target.options())
        diagnosis = diagnose(case, found.failure.actual, converted)
    return MutationResult(
        mutation.name,
        not found.passed,
        found.examples,
        time.perf_counter() - start,
        diagnosis,
        mutation.names,
        f"{source.label} -> {target.label}",
    )


def _buggy(mutation: Mutation, source: Side, target: Side, case: Case) -> Callable[[Any], Any]:
    """The project's converter for this pair, with the mutation's bug applied to its output."""
    def convert_with_bug(native: Any) -> Any:
        moved = convert(
            native,
            source=source.format,
            target=target.format,
            source_options=harness.reader_options(source.format, case.spec, source.options()),
            target_options=harness.writer_options(target.format, target.options()),
        )
        return mutation.bug(moved, case.spec, native) if mutation.bug else moved

    return convert_with_bug


def run_catalogue(*, max_examples: int = 25, seed: int = 0) -> list[MutationResult]:
    return [run_mutation(m, max_examples=max_examples, seed=seed) for m in CATALOGUE]
