"""onnx2tf, litert-torch and IREE's ONNX import, judged: real conversions probed as deployed.

Each converter really converts (a torch.onnx export through onnx2tf or IREE, an
``nn.LSTM`` through litert-torch) and its artefact really runs (TensorFlow, the LiteRT
interpreter, IREE's CPU runtime) under every probe. A converter that cannot run here
must say why. The must-fail cases: an IREE side whose h and c are swapped must be
unexpected and silently wrong; litert-torch's dynamic time axis must still fail to
convert (litert-torch#1062: once it converts, this test fails and a configuration is due);
an onnx2tf ``-cotof`` report that found a mismatch must say so in the notes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from equivalence.converters.exporter import (
    AS_CLAIMED,
    EXPORTERS,
    KNOWN,
    UNEXPECTED,
    draw_cases,
    judge_exporter,
    load_exporter,
)
from equivalence.converters.iree_onnx import IreeOnnx, vmfb_side
from equivalence.converters.litert_torch_convert import (
    DYNAMIC_TIME_ISSUE,
    LiteRtTorch,
    convert_dynamic_time,
)
from equivalence.converters.onnx2tf_convert import Onnx2Tf, cotof_note

pytestmark = pytest.mark.cpu

CLASSES = (Onnx2Tf, LiteRtTorch, IreeOnnx)
CONFIGS = [(cls, config) for cls in CLASSES for config in cls.configurations]


@pytest.mark.parametrize(("cls", "config"), CONFIGS,
                         ids=[f"{cls.name}: {config.name}" for cls, config in CONFIGS])
def test_each_configuration_is_as_claimed_or_says_why_it_cannot_run(cls, config):
    exporter = cls()
    run = judge_exporter(exporter, config, cases=1, probe_examples=2)
    reason = exporter.unavailable_reason()
    if reason:
        assert run.unavailable == reason and "failed" in reason and not run.probes
        return
    assert run.cases == 1 and not run.errors, run.errors
    statuses = {p.name: p.status for p in run.probes.values()}
    assert set(statuses.values()) <= {AS_CLAIMED, KNOWN}, statuses
    for (configuration, probe), expected in exporter.expected.items():
        if configuration == config.name:
            assert run.probes[probe].verdict == expected.verdict, (probe, run.probes[probe])
    assert {"exported shape", "initial states", "streaming"} <= set(statuses)
    assert run.version.startswith(cls.packages[0] + " ")
    if cls is Onnx2Tf:  # its own -cotof check, recorded beside our probes
        assert len(run.notes) == 1 and "-cotof" in run.notes[0], run.notes
        assert all(f"{name} " in run.notes[0] for name in ("output", "h_n", "c_n"))
        assert run.to_dict()["notes"] == run.notes


def test_a_cotof_mismatch_is_kept_in_the_note():
    printed = ("\x1b[32mINFO:\x1b[0m onnx_output_name: h_n shape: (1, 2, 5) dtype: float32 "
               "validate_result: \x1b[07m Unmatched \x1b[0m max_abs_error: 0.25\n"
               "INFO: onnx_output_name: output shape: (2, 4, 5) dtype: float32 "
               "validate_result:  Matches \n")
    note = cotof_note(printed)
    assert "h_n Unmatched max_abs_error: 0.25" in note and "output Matches" in note
    assert "c_n" not in note
    assert "no verdict printed" in cotof_note("nothing checked")


def test_unavailable_converters_say_why():
    class Missing(LiteRtTorch):
        imports = ("no_such_converter_module",)

    run = judge_exporter(Missing(), Missing.configurations[0], cases=1)
    assert "no_such_converter_module" in run.unavailable and run.cases == 0


class _SwappedStates(IreeOnnx):
    """IREE's module with its h and c outputs read the wrong way round."""

    def open_artefact(self, path: Path):
        side = vmfb_side(path, path.with_suffix(".onnx"))
        run = side.run

        def swapped(feed):
            returned = run(feed)
            return dataclasses.replace(returned, h=returned.c, c=returned.h)

        side.run = swapped
        return side


def test_swapped_iree_states_are_unexpected_and_silently_wrong():
    exporter = _SwappedStates()
    if exporter.unavailable_reason():
        pytest.skip(exporter.unavailable_reason())
    run = judge_exporter(exporter, exporter.configurations[1], cases=1, probe_examples=2)
    exported = run.probes["exported shape"]
    assert exported.verdict == "silently wrong" and exported.status == UNEXPECTED


def test_litert_torch_dynamic_time_still_fails_as_reported(tmp_path):
    exporter = LiteRtTorch()
    if exporter.unavailable_reason():
        pytest.skip(exporter.unavailable_reason())
    from equivalence.harness.judge import native_weights

    config = exporter.configurations[0]
    case = draw_cases(exporter, config, 1, 0)[0]
    native = native_weights(exporter.source_entry(config), case)
    with pytest.raises(Exception, match="specialized it to be a constant"):
        convert_dynamic_time(case, native, tmp_path)
    assert DYNAMIC_TIME_ISSUE in exporter.not_claimed


def test_the_three_are_registered_and_state_what_they_do_not_claim():
    names = {load_exporter(path).name for path in EXPORTERS}
    assert {cls.name for cls in CLASSES} <= names
    assert Onnx2Tf.not_claimed and LiteRtTorch.not_claimed
