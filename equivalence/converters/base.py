"""What a third-party converter is, and how one of its examples is judged: by the harness.

A converter module declares a :class:`Converter`: the table row whose native
weights go in (``source``), the row that stands for what comes out
(``target``), its :class:`Configuration` list (what it claims, as
:class:`~equivalence.capabilities.Capabilities`), and :meth:`Converter.convert`.
Nothing here compares or draws on its own:

* cases come from :func:`equivalence.strategies.lstm_cases`, drawn from the
  :func:`~equivalence.capabilities.joint_capabilities` of the claim and both rows;
* each case is :func:`equivalence.harness.judge.check_pair`: the source row runs the
  case, the third party converts the source's native weights, and the target
  row runs the result, or :meth:`Converter.run_converted` does when the result
  is a whole model (an ONNX graph, a torch or Keras module); the outcome is a
  :class:`~equivalence.harness.judge.Outcome` with the float64 recheck and diagnosis.

A converter that raises, or a converted model that refuses the inputs, is a
failed example with the error as its problem, so Hypothesis shrinks it like any
mismatch.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, ClassVar

import numpy as np

from equivalence.capabilities import Capabilities, joint_capabilities
from equivalence.case import Case
from equivalence.compare import Comparison, TensorDiff
from equivalence.harness.judge import Outcome, check_pair, tolerance
from equivalence.io_types import LSTMResult
from equivalence.known import Known
from equivalence.table import Entry, entry

MAIN, SIDE = "main", "thirdparty"  # where a converter runs: the main venv or the side one
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some converters put in their errors


@dataclass(frozen=True)
class Configuration:
    """One claimed configuration.

    ``claims``: what the converter claims to handle here (cases are drawn from
    its joint with the source and target rows). ``requires``: features every
    case must exercise (names of :func:`equivalence.harness.explore.case_features`),
    so a configuration about initial states always has them. ``source`` and
    ``target`` override the converter's rows; ``options`` go to the converter.
    """

    name: str
    claims: Capabilities = field(default_factory=Capabilities)
    requires: frozenset[str] = frozenset()
    source: str | None = None
    target: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    # A third-party bug (equivalence.known.Known, with the signature its failure shows)
    known_failure: Known | None = None

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


def claims(*features: str, max_layers: int = 2, lacks: Iterable[str] = ()) -> Capabilities:
    """What a converter claims: float32, sigmoid, 1-2 layers, 1-2 directions, states and
    lengths by default, plus ``features``, less ``lacks`` (names of the vocabulary)."""
    return Capabilities.of(*features, max_layers=max_layers, lacks=lacks)


def requires(*features: str) -> frozenset[str]:
    return frozenset(features)


class Converter:
    """A third-party converter: its rows, configurations, and the conversion itself."""

    name: ClassVar[str]
    environment: ClassVar[str] = MAIN
    packages: ClassVar[tuple[str, ...]]  # distributions whose versions identify the run
    imports: ClassVar[tuple[str, ...]]  # modules that must import for it to run here
    source: ClassVar[str]  # table row whose native weights the converter takes
    target: ClassVar[str]  # table row that stands for the converted model (label, tolerance)
    configurations: ClassVar[tuple[Configuration, ...]]
    not_claimed: ClassVar[str] = ""  # configurations left out, and why
    runs_model: ClassVar[bool] = True  # False: convert() returns the target row's native weights
    cell: ClassVar[str] = "lstm"  # the cell type its cases are drawn with (one per converter)

    def unavailable_reason(self) -> str | None:
        """None when it can run in this interpreter, else why not."""
        for module in self.imports:
            try:
                with quiet():
                    importlib.import_module(module)
            except Exception as exc:  # any import failure means "not runnable here"
                return f"import {module} failed: {error_text(exc)}"
        return None

    def version(self) -> str:
        """``name version`` of each package (``a|b``: the first of the two installed)."""
        return ", ".join(_version(p) for p in self.packages)

    def source_entry(self, config: Configuration) -> Entry:
        return entry(config.source or self.source)

    def target_entry(self, config: Configuration) -> Entry:
        """The target row, named after the converter (so messages say whose model ran)."""
        row = entry(config.target or self.target)
        return replace(row, name=f"{row.name} ({self.name})")

    def cases(self, config: Configuration) -> Any:
        """Hypothesis strategy: the harness's cases both rows and the claim cover."""
        from equivalence.harness.explore import case_features
        from equivalence.strategies import lstm_cases

        rows = (self.source_entry(config), self.target_entry(config))
        joint = joint_capabilities([config.claims, *(r.capabilities for r in rows)])
        drawn = lstm_cases(capabilities=joint, max_layers=config.claims.max_layers or 2,
                           cell=self.cell)
        if not config.requires:
            return drawn
        return drawn.filter(lambda case: config.requires <= case_features(case))

    def convert(self, config: Configuration, case: Case, native: Any) -> Any:
        """The third party's conversion of the source's ``native`` weights for ``case``."""
        raise NotImplementedError

    def run_converted(self, config: Configuration, case: Case, converted: Any) -> LSTMResult:
        """Run a converted whole model on the case's inputs (the contract's layout)."""
        raise NotImplementedError

    def judge(self, config: Configuration, case: Case) -> Outcome:
        """One example through :func:`~equivalence.harness.judge.check_pair`; errors fail it."""
        source, target = self.source_entry(config), self.target_entry(config)
        target_run = None
        if self.runs_model:
            target_run = lambda case, model: self.run_converted(config, case, model)  # noqa: E731
        try:
            with quiet():
                return check_pair(source, target, case,
                                  converter=lambda native: self.convert(config, case, native),
                                  target_run=target_run)
        except Exception as exc:  # the converter or its output failing is the finding
            return failed(f"{source.name} -> {target.name}", case, error_text(exc),
                          tolerance(case, source, target))


def failed(label: str, case: Case, problem: str, tol: Any) -> Outcome:
    """A failed example whose converted model could not be made or run (``problem`` says why)."""
    diff = TensorDiff("output", math.inf, (), 0, 0, problem)
    return Outcome(label, case, Comparison((diff,), tol))


def error_text(exc: BaseException) -> str:
    text = " ".join(_ANSI.sub("", str(exc)).split())
    return f"{type(exc).__name__}: {text[:400]}"


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' warnings, progress prints and graph dumps while they run."""
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        yield


def _version(package: str) -> str:
    names = package.split("|")
    for name in names:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"{names[0]} not installed"


def run_onnx(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run a serialized ONNX model in ONNX Runtime's CPU provider on the inputs it declares."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    return session.run(None, {name: feeds[name] for name in wanted})


def flatten(value: Any) -> list[Any]:
    """Nested lists/tuples of tensors -> a flat list (converted models return them nested)."""
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in flatten(item)]
    return [value]
