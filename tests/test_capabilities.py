"""The feature vocabulary: one set of names for specs, formats, runtimes and inputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import cells, formats, reference, table
from equivalence.capabilities import (
    INPUT_FEATURES,
    VOCABULARY,
    Capabilities,
    input_requirements,
    joint_capabilities,
    requirements,
)
from equivalence.errors import SpecError
from equivalence.spec import LSTMSpec
from equivalence.strategies import lstm_cases

pytestmark = pytest.mark.cpu


def test_a_misspelt_name_is_an_error_not_a_silent_non_claim() -> None:
    with pytest.raises(SpecError, match=r"unknown feature names \['peephole'\]"):
        Capabilities.of("peephole")
    with pytest.raises(SpecError, match="dtype=float8"):
        Capabilities.of(dtypes=("float8",))


@pytest.mark.parametrize("name", sorted(formats.FORMATS))
def test_every_format_declares_names_of_the_vocabulary(name: str) -> None:
    supported = set(formats.get(name).supported)
    assert supported <= VOCABULARY, sorted(supported - VOCABULARY)


def test_every_cell_feature_and_input_feature_is_in_the_vocabulary() -> None:
    for cell in cells.CELLS.values():
        assert cell.features <= VOCABULARY
    assert set(INPUT_FEATURES) <= VOCABULARY


@settings(max_examples=60, deadline=None, database=None)
@given(st.data())
def test_what_a_spec_and_its_inputs_need_is_named_in_the_vocabulary(data: st.DataObject
                                                                     ) -> None:
    cell = data.draw(st.sampled_from(cells.NAMES))
    case = data.draw(lstm_cases(capabilities=reference.CAPABILITIES, cell=cell))
    needed = set(requirements(case.spec)) | set(input_requirements(case.inputs))
    assert needed <= VOCABULARY
    assert reference.CAPABILITIES.refusal(case.spec) is None
    assert set(case.spec.features()) - {f"cell={cell}"} <= cells.cell(cell).features | {
        n for n in VOCABULARY if "=" in n}


def test_a_refusal_is_the_first_name_the_spec_needs_that_the_set_lacks() -> None:
    spec = LSTMSpec(2, 3, peepholes=True, dtype="float16")
    assert Capabilities.of().refusal(spec) == "peepholes"
    assert Capabilities.of("peepholes").refusal(spec) == "dtype=float16"
    assert Capabilities.of("peepholes", dtypes=("float16",)).refusal(spec) is None
    assert Capabilities.of(max_layers=1).refusal(spec.replace(layers=2, peepholes=False,
                                                              dtype="float32")) == (
        "2 layers (max 1)")


def test_joint_capabilities_are_the_intersection() -> None:
    rows = [table.entry("torch").capabilities, table.entry("onnxruntime").capabilities]
    joint = joint_capabilities(rows)
    assert joint.names == rows[0].names & rows[1].names
    assert "projection" not in joint and "peepholes" not in joint  # one side each
    assert joint.cells == {"lstm", "gru"} and joint.dtypes == {"float16", "float32"}


def test_input_features_are_refused_by_name() -> None:
    import numpy as np

    from equivalence.io_types import LSTMInputs

    inputs = LSTMInputs(np.zeros((1, 2, 2), np.float32), lengths=np.array([2]))
    assert table.entry("opencv").capabilities.input_refusal(inputs) == "sequence lengths"
    assert table.entry("onnxruntime").capabilities.input_refusal(inputs) is None
