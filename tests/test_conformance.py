"""The conformance grid: bugs are found by generated cases, known ones keep reproducing.

tract's reverse and clip bugs must come out ``silently wrong`` from the grid's
own Hypothesis search (nothing is declared into the verdict), ONNX Runtime
must only match or refuse, every known finding must still reproduce (the
suite fails when one stops), and the probes must be able to fail: the
reference for each ONNX-only attribute differs from the plain forward one on
the very cases where engines are found wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from equivalence import capabilities, table
from equivalence.canonical import random_weights
from equivalence.capabilities import Capabilities
from equivalence.case import Case
from equivalence.compare import compare
from equivalence.harness import conformance as cf
from equivalence.harness import conformance_features as columns
from equivalence.harness import judge as harness
from equivalence.harness.known import KNOWN, VERDICTS, known_finding
from equivalence.io_types import LSTMInputs
from equivalence.report import conformance_plot
from equivalence.runtimes._onnx_family import OnnxRuntimeSessions
from equivalence.spec import LSTMSpec
from tests.runtime_support import require

pytestmark = pytest.mark.cpu
EXAMPLES = 4  # per cell (every OpenVINO example compiles a model: about 0.15 s)
SHRINK_RUNS = 20  # further runs a silently wrong cell may spend on shrinking

def _row(name: str) -> table.Entry:
    """The table's row; one that cannot run here fails (skips under EQUIVALENCE_ALLOW_MISSING)."""
    row = table.BY_NAME[name]
    require(row)
    return row


@pytest.fixture(scope="module")
def grid() -> list[dict[str, Any]]:
    """One run of the ONNX family's grid, shared by the checks below."""
    rows = [_row(name) for name in ("onnxruntime", "tract", "openvino", "opencv")]
    return cf.run_conformance(rows, max_examples=EXAMPLES, seed=0, shrink_runs=SHRINK_RUNS)


def _cell(cells: list[dict[str, Any]], runtime: str, feature: str) -> dict[str, Any]:
    return next(c for c in cells if c["runtime"] == runtime and c["feature"] == feature)


def test_cells_are_well_formed_and_json_ready(grid: list[dict[str, Any]]) -> None:
    json.dumps(grid, allow_nan=False)
    for cell in grid:
        assert cell["verdict"] in VERDICTS, cell
        assert cell["runs"] >= 1, cell
        if cell["verdict"] != cf.MATCH:
            assert cell["minimal_case"] and cell["detail"], cell
    features = {c["feature"] for c in grid if c["runtime"] == "tract"}
    assert features == {f.name for f in columns.ONNX_FEATURES + columns.GRU_ONNX_FEATURES}


def test_tract_reverse_and_clip_are_found_silently_wrong(grid: list[dict[str, Any]]) -> None:
    for feature, marker in (("reverse", "direction=reverse"), ("gate_clip", "gate_clip=")):
        cell = _cell(grid, "tract", feature)
        assert cell["verdict"] == cf.WRONG, cell
        assert marker in cell["minimal_case"], cell
        assert cell["max_abs_diff"] > 1e-3, cell  # far outside any float32 tolerance
    # the reverse half of a bidirectional node is right: only direction="reverse" alone is wrong
    assert _cell(grid, "tract", "bidirectional")["verdict"] == cf.MATCH


def test_onnxruntime_matches_or_refuses(grid: list[dict[str, Any]]) -> None:
    cells = [c for c in grid if c["runtime"] == "onnxruntime"]
    assert {c["verdict"] for c in cells} <= {cf.MATCH, cf.REFUSED}
    refused = {c["feature"] for c in cells if c["verdict"] == cf.REFUSED}
    assert refused == {"layout=1", "float64"}
    # ORT implements the ONNX-only attributes the other engines get wrong
    cell_activations = tuple(f.name for f in columns.CELL_ACTIVATION_FEATURES)
    for feature in ("reverse", "input_forget", "activations", "gate_clip", *cell_activations):
        assert _cell(cells, "onnxruntime", feature)["verdict"] == cf.MATCH
    # tract runs Tanh whatever the activations say: the grid finds it, not the table
    assert {_cell(grid, "tract", f)["verdict"] for f in cell_activations} == {cf.WRONG}
    # GRU nodes: ORT matches every GRU column, both linear_before_reset values included
    for feature in columns.GRU_ONNX_FEATURES:
        assert _cell(cells, "onnxruntime", feature.name)["verdict"] == cf.MATCH, feature.name


def test_tract_gru_reverse_clip_and_activations_are_found_silently_wrong(
    grid: list[dict[str, Any]],
) -> None:
    """The GRU node's forms of tract's LSTM bugs come out of the grid's own search."""
    wrong = ("GRU reverse", "GRU gate_clip", "GRU activations",
             *(f.name for f in columns.GRU_CELL_ACTIVATION_FEATURES))
    for feature in wrong:
        cell = _cell(grid, "tract", feature)
        assert cell["verdict"] == cf.WRONG and "cell=gru" in cell["minimal_case"], cell
    assert "direction=reverse" in _cell(grid, "tract", "GRU reverse")["minimal_case"]
    # both variants and a bidirectional node are right: only the attributes are ignored
    for feature in ("GRU forward", "GRU reset_after=False", "GRU bidirectional"):
        assert _cell(grid, "tract", feature)["verdict"] == cf.MATCH, feature


def test_known_findings_reproduce_and_nothing_else_is_off(grid: list[dict[str, Any]]) -> None:
    """The suite fails when a known finding stops reproducing, or a new one appears."""
    assert cf.unexpected(grid) == []
    checked = {(c["runtime"], c["feature"]) for c in grid}
    for key in KNOWN:
        known = known_finding(*key)
        if key in checked and known is not None:
            cell = _cell(grid, *key)
            assert cell["verdict"] == known.verdict and cell["known"] == known.reason, cell


def test_claimed_features_match(grid: list[dict[str, Any]]) -> None:
    for cell in grid:
        assert cell["claimed_off"] is None, cell
        if cell["claimed"]:
            assert cell["verdict"] == cf.MATCH, cell


def test_a_false_claim_is_named() -> None:
    """A row claiming sequence lengths on OpenCV (which ignores them) is caught by its cells."""
    row = _row("opencv")
    claiming = table.Entry("opencv_claims_lengths", row.runtime, "onnx",
                           Capabilities.of("time-major input"))
    cell = cf.judge(claiming, columns.LENGTHS, max_examples=EXAMPLES, seed=0, shrink_runs=5)
    assert cell["verdict"] == cf.WRONG and cell["claimed_off"], cell
    assert any("opencv_claims_lengths / sequence lengths: claimed by the row" in p
               for p in cf.unexpected([cell]))


def test_unexpected_names_changed_findings_new_bugs_and_false_claims() -> None:
    base = {"max_abs_diff": 0.1, "minimal_case": "case", "detail": "d", "claimed_off": None}
    cells = [
        {**base, "runtime": "tract", "feature": "reverse", "verdict": cf.MATCH},  # stopped
        {**base, "runtime": "x", "feature": "forward", "verdict": cf.WRONG},  # new bug
        {**base, "runtime": "x", "feature": "float16", "verdict": cf.REFUSED,
         "claimed_off": "B=1: refused: no kernel"},  # the row claims what the runtime refuses
        {**base, "runtime": "x", "feature": "float64", "verdict": cf.REFUSED},  # fine
    ]
    problems = cf.unexpected(cells)
    assert len(problems) == 3, problems
    assert "tract / reverse: known silently wrong" in problems[0]
    assert "x / forward: silently wrong" in problems[1]
    assert "x / float16: claimed by the row, but B=1: refused" in problems[2]


def _case(spec: LSTMSpec, steps: int = 5, batch: int = 2) -> Case:
    rng = np.random.default_rng(3)
    weights = random_weights(spec, rng).astype(spec.dtype)
    x = rng.normal(size=(batch, steps, spec.input_size)).astype(np.float32)
    return Case(spec, weights, LSTMInputs(x))


@pytest.mark.parametrize(("onnx", "cell"), [({"direction": "reverse"}, "lstm"),
                                           ({"input_forget": True}, "lstm"),
                                           ({"direction": "reverse"}, "gru")])
def test_onnx_only_references_differ_from_forward(onnx: dict[str, Any], cell: str) -> None:
    """Each ONNX-only probe's reference is not the plain cell (else ignoring it would match)."""
    case = _case(LSTMSpec(3, 4, cell=cell))
    plain = harness.reference_result(case)
    intended = cf.expected_result(cf.Probe("f", case, onnx))
    assert compare(plain, intended, harness.tolerance(case)).max_abs_diff > 1e-2


def test_coupled_reference_is_what_onnxruntime_computes() -> None:
    """input_forget: ORT matches f = 1 - i (the grid's reference), and not the uncoupled LSTM."""
    row = _row("onnxruntime")
    case = _case(LSTMSpec(3, 4))
    coupled = cf.Probe("input_forget", case, {"input_forget": True})
    actual = cf.run_probe(row, coupled, cf.onnx_runner(row))
    tol = harness.tolerance(case, row)
    assert compare(cf.expected_result(coupled), actual, tol).ok
    assert not compare(harness.reference_result(case), actual, tol).ok


def test_a_runtime_through_the_contract_refuses_what_its_row_does_not_claim() -> None:
    """Rows without ONNX-level access are probed through the contract (refusals included)."""
    row = _row("onnxruntime")
    narrow = table.Entry("ort_narrow", "equivalence.runtimes.onnxruntime:OnnxRuntime", "onnx",
                         Capabilities.of("time-major input"))
    assert cf.onnx_runner(row) is not None
    probe = cf.Probe("peepholes", _case(LSTMSpec(2, 3, peepholes=True)))
    refused = cf.observe(narrow, probe, None)
    assert refused.verdict == cf.REFUSED and "peepholes" in refused.detail
    assert cf.observe(row, probe, None).verdict == cf.MATCH


def test_the_grid_renders_as_markdown_and_png(grid: list[dict[str, Any]], tmp_path: Path) -> None:
    lines = conformance_plot.markdown_lines(grid)
    assert lines[0].startswith("| runtime | forward | reverse")
    tract_line = next(line for line in lines if line.startswith("| tract |"))
    assert "**WRONG**" in tract_line
    assert any(line.startswith("- **tract / reverse: silently wrong**") for line in lines)
    png = conformance_plot.draw(grid, tmp_path / "conformance.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_the_grid_is_the_same_whatever_the_number_of_worker_processes() -> None:
    """The report's --jobs: each row is judged in a fresh process, so one worker and two
    give the same cells (the diffs to the last bit and the shrunk minimal cases)."""
    names = ["onnxruntime", "tract"]
    for name in names:
        require(table.BY_NAME[name])
    options: dict[str, Any] = {"features": ["reverse", "gate_clip"], "max_examples": 2,
                               "seed": 3, "shrink_runs": 4}

    def comparable(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "seconds"} for c in cells]

    one = cf.run_conformance(names, jobs=1, **options)
    two = cf.run_conformance(names, jobs=2, **options)
    assert {c["verdict"] for c in one} >= {cf.WRONG}  # tract computes reverse as forward
    assert json.dumps(comparable(one)) == json.dumps(comparable(two))


class FlippedLinearBeforeReset(OnnxRuntimeSessions):
    """ONNX Runtime fed every GRU node with linear_before_reset flipped: the classic GRU
    variant mix-up (PyTorch's reset_after run as ONNX's default), in a real engine."""

    def compile(self, model: bytes, feeds: Any) -> Any:
        import onnx

        graph = onnx.load_from_string(model)
        for node in graph.graph.node:
            for attribute in node.attribute:
                if node.op_type == "GRU" and attribute.name == "linear_before_reset":
                    attribute.i = 1 - attribute.i
        return super().compile(graph.SerializeToString(), feeds)


def test_a_wrong_gru_runtime_is_found_silently_wrong_and_named() -> None:
    """Must-fail: a GRU runtime that computes the other variant is a silently wrong cell
    (shrunk, with its case), its row's claim is named false, and its LSTM cells still match."""
    row = _row("onnxruntime")
    flipped = table.Entry("ort_flipped_gru", f"{__name__}:FlippedLinearBeforeReset", "onnx",
                          row.capabilities)
    assert cf.onnx_runner(flipped) is not None
    for feature in (columns.GRU_FORWARD, columns.GRU_RESET_BEFORE):
        cell = cf.judge(flipped, feature, max_examples=EXAMPLES, seed=0, shrink_runs=5)
        assert cell["verdict"] == cf.WRONG and cell["claimed_off"], cell
        assert "cell=gru" in cell["minimal_case"] and cell["max_abs_diff"] > 1e-3, cell
        assert any(f"ort_flipped_gru / {feature.name}: claimed by the row" in p
                   for p in cf.unexpected([cell]))
    assert cf.judge(flipped, columns.FORWARD, max_examples=2, seed=0)["verdict"] == cf.MATCH


def test_gru_contract_columns_follow_what_the_format_holds() -> None:
    """Rows probed through the contract get GRU columns where their format holds a GRU, and
    reset_after=False only where it holds that variant (torch: nn.GRU has none)."""
    gru_names = {f.name for f in columns.GRU_CONTRACT_FEATURES}

    def gru_columns_of(name: str) -> set[str]:
        supported = cf.get_format(table.BY_NAME[name].format).supported
        return {f.name for f in columns.GRU_CONTRACT_FEATURES
                if f.holds is None or f.holds(supported)}

    assert gru_columns_of("keras") == gru_names
    one_variant = gru_names - {"GRU reset_after=False"}
    assert gru_columns_of("torch") == gru_columns_of("mlx") == gru_columns_of("flax") == one_variant
    # TF1 GRUCell holds the reset-before variant (its row refuses the other by name)
    assert gru_columns_of("tf1") == gru_names


def test_a_gru_contract_cell_runs_the_runtime_and_refuses_what_the_row_does_not_claim() -> None:
    """torch's nn.GRU through the contract: GRU forward matches; a row without GRU refuses."""
    row = _row("torch")
    assert cf.onnx_runner(row) is None
    cell = cf.judge(row, columns.GRU_FORWARD, max_examples=EXAMPLES, seed=0)
    assert cell["verdict"] == cf.MATCH and cell["claimed"], cell
    lstm_only = table.Entry("torch_lstm_only", row.runtime, "torch",
                            Capabilities.of("projection", capabilities.TIME_MAJOR))
    refused = cf.judge(lstm_only, columns.GRU_FORWARD, max_examples=2, seed=0)
    assert refused["verdict"] == cf.REFUSED and "cell=gru" in refused["detail"], refused
