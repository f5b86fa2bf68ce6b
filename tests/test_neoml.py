"""NeoML, in its own environment (``tox -e neoml``; ``.ci/run`` runs it).

* NeoML against the float64 reference (Hypothesis, as for every runtime);
* cases exported by the main environment (Keras, PyTorch, TF1, ONNX Runtime
  outputs on random weights, ``python -m equivalence.exchange export``) whose
  native weights are converted to NeoML here and run for real.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from equivalence import exchange, harness, table
from equivalence.compare import Tolerance, compare
from equivalence.convert import convert
from equivalence.strategies import lstm_cases

from .runtime_support import record, replay_command, require

pytestmark = pytest.mark.neoml
NEOML = table.entry("neoml")


@given(data=st.data())
def test_neoml_matches_reference(data, request) -> None:
    runtime = require(NEOML)
    case = data.draw(lstm_cases(capabilities=runtime.capabilities))
    outcome = harness.check_against_reference(NEOML, case)
    record(request, outcome)
    assert outcome.ok, outcome.message(replay_command(request))


def exchange_files() -> list[Path]:
    folder = os.environ.get("EQUIVALENCE_EXCHANGE_DIR")
    files = sorted(Path(folder).glob("*.npz")) if folder else []
    if not files and os.environ.get("EQUIVALENCE_REQUIRE_EXCHANGE") == "1":
        raise RuntimeError(f"EQUIVALENCE_REQUIRE_EXCHANGE=1 but no case files in {folder!r}")
    return files


@pytest.mark.parametrize("path", exchange_files() or [None], ids=lambda p: p.stem if p else "none")
def test_exchanged_case_runs_the_same_in_neoml(path: Path | None) -> None:
    if path is None:
        pytest.skip(
            "no case files: run `python -m equivalence.exchange export --out DIR` in the "
            "main environment and set EQUIVALENCE_EXCHANGE_DIR=DIR"
        )
    runtime = require(NEOML)
    case = exchange.load(path)
    source_options = harness.reader_options(case.format, case.spec, case.format_options)
    native = convert(case.native, source=case.format, target="neoml", source_options=source_options)
    actual = runtime.run(case.spec, native, case.inputs)
    comparison = compare(
        case.expected, actual, Tolerance.for_case(case.spec.dtype, case.inputs.x.shape[1])
    )
    assert comparison.ok, f"{case.source} -> neoml ({path.name}):\n{comparison.describe()}"
