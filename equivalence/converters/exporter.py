"""Exporters people deploy LSTMs with, judged the way deployment breaks: compare's probes.

An :class:`Exporter` writes a deployable artefact (an ONNX model, a SavedModel,
a ``.tflite``, an OpenVINO IR) from a network built in its source framework.
:func:`judge_exporter` draws the harness's own cases within what a
:class:`~.base.Configuration` claims, exports each, opens the artefact as a
compare side (:func:`equivalence.artefacts.command.open_side`: it runs as the
file defines itself) and compares it with the source row's runtime running
the case's weights, under every probe (:mod:`equivalence.artefacts.probes`).

Per configuration and probe, the worst verdict over the cases (silently wrong,
then refused, then match) and the first failure's minimal case. Known
failures sit on the exporter as :class:`Known` entries, keyed by
(configuration, probe), each with its upstream issue: a probe that fails as
expected is *known*; one that fails otherwise, or fails where nothing is
expected, is *unexpected*; an expected failure that does not show is a
*surprise pass*, so a bug fixed upstream is seen.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from equivalence.case import Case
from equivalence.converters.base import Configuration, Converter, error_text, quiet
from equivalence.known import BY_DESIGN, Known

ORDER = {"match": 0, "refused": 1, "silently wrong": 2}
KNOWN, UNEXPECTED, SURPRISE, AS_CLAIMED = "known", "unexpected", "surprise pass", "as claimed"
NOT_RUN = "not run"
SHAPE_PROBES = ("time 1", "shorter time", "longer time", "batch 1", "larger batch")


class Exporter(Converter):
    """A converter whose output is an artefact file, judged through the compare probes."""

    expected: ClassVar[dict[tuple[str, str], Known]] = {}

    def export(self, config: Configuration, case: Case, native: Any, folder: Path) -> Path:
        """Write the artefact for ``case`` (``native``: the source row's weights) into
        ``folder``; return the path ``equivalence compare`` opens (a file or a folder)."""
        raise NotImplementedError

    def open_artefact(self, path: Path) -> Any:
        """The compare side of an exported artefact (a format compare opens, by default)."""
        from equivalence.artefacts.command import open_side

        return open_side(path)

    def take_notes(self) -> list[str]:
        """What the exporter said about its last exports (a peer check's verdict), cleared."""
        return []


@dataclass
class ProbeSummary:
    """One probe over every case of a configuration."""

    name: str
    verdict: str = "match"
    cases: int = 0
    max_abs_diff: float = 0.0
    minimal_case: dict[str, Any] | None = None
    reason: str = ""
    expected: Known | None = None

    @property
    def status(self) -> str:
        if self.cases == 0:  # every export failed: nothing was judged, no pass of any kind
            return NOT_RUN
        if self.expected is None:
            return AS_CLAIMED if self.verdict == "match" else UNEXPECTED
        if self.verdict == "match":
            return SURPRISE
        if self.verdict != self.expected.verdict:
            return UNEXPECTED
        return AS_CLAIMED if self.expected.by_design else KNOWN

    def add(self, result: dict[str, Any]) -> None:
        self.cases += 1
        if ORDER[result["verdict"]] > ORDER[self.verdict]:
            self.verdict = result["verdict"]
            self.minimal_case, self.reason = result["minimal_case"], result["reason"] or ""
        diff = result["max_abs_diff"]
        if isinstance(diff, float):
            self.max_abs_diff = max(self.max_abs_diff, diff)

    def to_dict(self) -> dict[str, Any]:
        expected = None if self.expected is None else vars(self.expected)
        return {"name": self.name, "verdict": self.verdict, "status": self.status,
                "cases": self.cases, "max_abs_diff": self.max_abs_diff,
                "minimal_case": self.minimal_case, "reason": self.reason or None,
                "expected": expected}


@dataclass
class ExporterRun:
    """One exporter configuration's judgement."""

    exporter: str
    version: str
    configuration: str
    cases: int = 0
    probes: dict[str, ProbeSummary] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # exports or opens that failed
    unavailable: str = ""
    notes: list[str] = field(default_factory=list)  # the exporter's own checks, beside ours

    def to_dict(self) -> dict[str, Any]:
        return {"exporter": self.exporter, "version": self.version,
                "configuration": self.configuration, "cases": self.cases,
                "unavailable": self.unavailable or None, "errors": self.errors[:5],
                "notes": self.notes, "probes": [p.to_dict() for p in self.probes.values()]}


def draw_cases(exporter: Exporter, config: Configuration, count: int, seed: int) -> list[Case]:
    """``count`` of the harness's cases within the configuration's claims (seeded)."""
    cases: list[Case] = []

    @settings(max_examples=count, database=None, deadline=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck))
    @given(case=exporter.cases(config))
    def collect(case: Case) -> None:
        cases.append(case)

    hypothesis_seed(seed)(collect)()
    return cases[:count]


def judge_exporter(exporter: Exporter, config: Configuration, *, cases: int = 3,
                   probe_examples: int = 3, seed: int = 0) -> ExporterRun:
    """Export ``cases`` drawn cases, compare each artefact with its source under every probe."""
    run = ExporterRun(exporter.name, exporter.version(), config.name)
    reason = exporter.unavailable_reason()
    if reason:
        run.unavailable = reason
        return run
    for case in draw_cases(exporter, config, cases, seed):
        _judge_case(exporter, config, case, run, probe_examples, seed)
        run.notes.extend(exporter.take_notes())
    for (configuration, probe), expected in exporter.expected.items():
        if configuration == config.name:
            run.probes.setdefault(probe, ProbeSummary(probe)).expected = expected
    return run


def _judge_case(exporter: Exporter, config: Configuration, case: Case, run: ExporterRun,
                probe_examples: int, seed: int) -> None:
    from equivalence.artefacts.command import compare_sides
    from equivalence.artefacts.runtime_side import runtime_side
    from equivalence.harness.judge import native_weights

    source = exporter.source_entry(config)
    with tempfile.TemporaryDirectory(prefix="equivalence-export-") as folder:
        try:
            with quiet():
                path = exporter.export(config, case, native_weights(source, case), Path(folder))
                outcome = compare_sides(runtime_side(source.name, case.weights),
                                        exporter.open_artefact(path), examples=probe_examples,
                                        seed=seed, say=lambda _line: None)
        except Exception as exc:  # an export that fails, or an artefact nothing runs
            run.errors.append(error_text(exc))
            return
    run.cases += 1
    for result in outcome.results:
        summary = run.probes.setdefault(result.probe.name, ProbeSummary(result.probe.name))
        summary.add(result.to_dict())


def fixed_shape_refusals(configuration: str, why: str) -> dict[tuple[str, str], Known]:
    """The refusals a fixed-shape configuration claims: every other shape (``why``: which)."""
    return {(configuration, probe): Known("refused", why, upstream=BY_DESIGN)
            for probe in SHAPE_PROBES}


# The exporters, one module each ("module:Class"); adding one is a module and a row here.
EXPORTERS: tuple[str, ...] = (
    "equivalence.converters.torch_onnx_probed:TorchOnnxProbed",
    "equivalence.converters.onnx_rewriters:OnnxSlim",
    "equivalence.converters.onnx_rewriters:OnnxSim",
    "equivalence.converters.onnx_rewriters:OnnxOptimizer",
    "equivalence.converters.openvino_convert:OpenVinoConvert",
    "equivalence.converters.onnx2tf_convert:Onnx2Tf",
    "equivalence.converters.litert_torch_convert:LiteRtTorch",
    "equivalence.converters.iree_onnx:IreeOnnx",
    "equivalence.converters.keras_export:KerasExport",
    "equivalence.converters.openvino_from_keras:OpenVinoFromKeras",
)


def load_exporter(path: str) -> Exporter:
    import importlib

    module, _, name = path.partition(":")
    exporter = getattr(importlib.import_module(module), name)()
    assert isinstance(exporter, Exporter)
    return exporter


def run_exporters(*, cases: int = 2, probe_examples: int = 3, seed: int = 0,
                  only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every registered exporter's configurations (``only``: these exporter names)."""
    runs = []
    for path in EXPORTERS:
        exporter = load_exporter(path)
        if not only or exporter.name in only:
            runs += run_exporter(exporter, cases=cases, probe_examples=probe_examples, seed=seed)
    return runs


def run_exporter(exporter: Exporter | str, *, cases: int, probe_examples: int,
                 seed: int) -> list[dict[str, Any]]:
    """One exporter's configurations, in order (``exporter``: an instance or its
    ``EXPORTERS`` path)."""
    if isinstance(exporter, str):
        exporter = load_exporter(exporter)
    return [judge_exporter(exporter, config, cases=cases, probe_examples=probe_examples,
                           seed=seed).to_dict()
            for config in exporter.configurations]
