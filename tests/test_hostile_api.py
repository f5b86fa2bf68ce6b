"""The Python API under hostile calls (issue 24): typed errors, bounded work, nothing escapes.

Each call of the corpus is what a careless or hostile caller might pass: sizes far
beyond any LSTM, broadcast views of 4e12 elements that take no memory, objects
whose ``__array__``, ``__getitem__`` or ``__str__`` raise, lists that contain
themselves, meta tensors. Each must raise the library's own error naming the
argument (or, inside ``check_conversion``, give a failed result with the reason),
within :data:`LIMIT_S` seconds and :data:`LIMIT_BYTES` of traced allocations.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import equivalence as eq
from equivalence import check_conversion, files, strategies
from equivalence.files._base import FileFormatError, atomic_output, temporary_name
from equivalence.harness.check import CheckResult

try:  # imported here, not inside a timed call
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.cpu

LIMIT_S = 10.0
LIMIT_BYTES = 2**30
HUGE = (2_000_000, 2_000_000)  # 4e12 elements


def bounded(call: Callable[[], Any]) -> Any:
    """``call()``'s value or the exception it raised, asserting the time and memory bounds."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        value = call()
    except Exception as exc:
        value = exc
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < LIMIT_S, f"took {elapsed:.1f} s"
    assert peak < LIMIT_BYTES, f"allocated {peak / 2**20:.0f} MiB"
    return value


class RaisingArray:
    """An array-like that refuses to hand over its values."""

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise RuntimeError("no values here")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message either")


class UnprintableArray:
    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise UnprintableError


class RaisingMapping(Mapping):
    """Keys that look right, values that raise."""

    def __init__(self, keys: Any, error: type[Exception] = RuntimeError) -> None:
        self._keys, self._error = list(keys), error

    def __getitem__(self, key: Any) -> Any:
        raise self._error(f"no item {key}")

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class UnprintableRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def loop() -> list:
    items: list = []
    items.append(items)
    return items


def huge(shape: tuple[int, ...] = HUGE, dtype: Any = np.float32) -> np.ndarray:
    return np.broadcast_to(np.asarray(0.5, dtype=dtype), shape)


def native(fmt: str, spec: eq.LSTMSpec | None = None) -> Any:
    weights = eq.random_weights(spec or eq.LSTMSpec(3, 4), np.random.default_rng(0))
    return eq.from_canonical(weights, fmt)


def torch_expand(dtype_name: str) -> dict:
    if torch is None:
        pytest.skip("torch is not installed")
    sd = {k: torch.from_numpy(v) for k, v in native("torch").items()}
    sd["weight_ih_l0"] = torch.zeros((), dtype=getattr(torch, dtype_name)).expand(*HUGE)
    return sd


def meta_state_dict() -> dict:
    if torch is None:
        pytest.skip("torch is not installed")
    return {k: torch.empty(v.shape, device="meta") for k, v in native("torch").items()}


def example(strategy: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return strategy.example()


SPEC = eq.LSTMSpec(3, 4)
RNG = np.random.default_rng(0)
ONNX_KEYS = ("W", "R", "B")

# id -> (call, expected type, text the message must contain)
API_CORPUS: dict[str, tuple[Callable[[], Any], type[Exception], str]] = {
    "torch: an empty dict": (lambda: eq.to_canonical({}, "torch"), eq.MissingKeyError,
                             "weight_ih_l0"),
    "keras: I = H = 1e5, broadcast so the shapes agree": (
        lambda: eq.to_canonical([huge((10**5, 4 * 10**5)), huge((10**5, 4 * 10**5)),
                                 huge((4 * 10**5,))], "keras"),
        eq.ShapeError, "MAX_ELEMENTS"),
    "keras: a 4e12-element kernel": (
        lambda: eq.to_canonical([huge(), *native("keras")[1:]], "keras"), eq.ShapeError,
        "weights[0]"),
    "torch: a 4e12-element numpy view": (
        lambda: eq.to_canonical(native("torch") | {"weight_ih_l0": huge()}, "torch"),
        eq.ShapeError, "weight_ih_l0"),
    "torch: a 4e12-element expand()": (lambda: eq.to_canonical(torch_expand("float32"), "torch"),
                                       eq.ShapeError, "weight_ih_l0"),
    "torch: a 4e12-element bfloat16 expand()": (
        lambda: eq.to_canonical(torch_expand("bfloat16"), "torch"), eq.ShapeError,
        "weight_ih_l0"),
    "onnx: a 4e12-element W": (
        lambda: eq.to_canonical(native("onnx") | {"W": huge((1, 2_000_000, 2_000_000))}, "onnx"),
        eq.ShapeError, "W"),
    "convert: a 4e12-element view": (
        lambda: eq.convert(native("torch") | {"weight_hh_l0": huge()}, source="torch",
                           target="keras"), eq.ShapeError, "weight_hh_l0"),
    "random_weights: I = H = 1e5": (
        lambda: eq.random_weights(eq.LSTMSpec(10**5, 10**5), RNG), eq.SpecError, "MAX_ELEMENTS"),
    "random_weights: 1e9 layers": (
        lambda: eq.random_weights(eq.LSTMSpec(1, 1, layers=10**9), RNG), eq.SpecError,
        "layers"),
    "random_weights: no generator": (lambda: eq.random_weights(SPEC, None), eq.ConversionError,
                                     "rng"),
    "random_weights: a NaN scale": (lambda: eq.random_weights(SPEC, RNG, scale=math.nan),
                                    eq.SpecError, "scale"),
    "random_weights: not a spec": (lambda: eq.random_weights("spec", RNG), eq.SpecError, "spec"),
    "cudnn_params: 1e8 layers, 56 elements": (
        lambda: eq.to_canonical(np.zeros(56), "cudnn_params", input_size=1, units=1,
                                layers=10**8), eq.SpecError, "layers"),
    "jax_rnn: 1e8 layers, 56 elements": (
        lambda: eq.to_canonical(np.zeros(56), "jax_rnn", input_size=1, units=1, layers=10**8),
        eq.SpecError, "layers"),
    "jax_rnn: 1e4 layers, 56 elements": (
        lambda: eq.to_canonical(np.zeros(56), "jax_rnn", input_size=1, units=1, layers=10**4),
        eq.ShapeError, "jax_rnn vector"),
    "cudnn_params: I = 1e12": (
        lambda: eq.to_canonical(np.zeros(56), "cudnn_params", input_size=10**12, units=1),
        eq.SpecError, "input_size=1000000000000"),
    "torch: a Mapping whose __getitem__ raises": (
        lambda: eq.to_canonical(RaisingMapping(native("torch")), "torch"), eq.ConversionError,
        "RuntimeError: no item"),
    "onnx: a Mapping whose __getitem__ raises an unprintable error": (
        lambda: eq.to_canonical(RaisingMapping(ONNX_KEYS, UnprintableError), "onnx"),
        eq.ConversionError, "UnprintableError"),
    "neoml: a Mapping whose __getitem__ raises": (
        lambda: eq.to_canonical(RaisingMapping(native("neoml")), "neoml"), eq.ConversionError,
        "neoml"),
    "keras: lists that contain themselves": (
        lambda: eq.to_canonical([loop(), loop(), loop()], "keras"), eq.WeightValueError,
        "weights[0]"),
    "keras: an __array__ that raises": (
        lambda: eq.to_canonical([RaisingArray()] * 3, "keras"), eq.WeightValueError,
        "__array__ raised RuntimeError"),
    "keras: an __array__ raising an unprintable error": (
        lambda: eq.to_canonical([UnprintableArray()] * 3, "keras"), eq.WeightValueError,
        "UnprintableError"),
    "torch: meta tensors": (lambda: eq.to_canonical(meta_state_dict(), "torch"),
                            eq.WeightValueError, "meta tensor"),
    "an unknown option": (lambda: eq.to_canonical(native("keras"), "keras", bogus=1),
                          eq.ConversionError, "bogus"),
    "an unhashable format name": (lambda: eq.to_canonical({}, ["torch"]), eq.UnknownFormatError,
                                  "format"),
    "from_canonical: not weights": (lambda: eq.from_canonical(None, "keras"), eq.ConversionError,
                                    "weights"),
    "from_canonical: an unprintable format name": (
        lambda: eq.from_canonical(eq.random_weights(SPEC, RNG), UnprintableRepr()),
        eq.UnknownFormatError, "format"),
    "LSTMWeights: a 4e12-element cell": (
        lambda: eq.LSTMWeights(SPEC, ((eq.CellWeights(huge(), huge(), huge((16,)),
                                                      huge((16,))),),)),
        eq.ShapeError, "w_input"),
    "LSTMSpec: a list of 1e7 as input_size": (lambda: eq.LSTMSpec([0] * 10**7, 4), eq.SpecError,
                                              "input_size"),
    "LSTMSpec.from_dict: a Mapping whose __getitem__ raises": (
        lambda: eq.LSTMSpec.from_dict(RaisingMapping(["input_size", "units"])), eq.SpecError,
        "cannot be read"),
    "lstm_specs: 1e9 layers": (lambda: example(strategies.lstm_specs(max_layers=10**9)),
                               eq.ConversionError, "max_layers"),
    "lstm_specs: True layers": (lambda: example(strategies.lstm_specs(max_layers=True)),
                                eq.ConversionError, "max_layers"),
    "lstm_specs: not capabilities": (lambda: example(strategies.lstm_specs(capabilities="all")),
                                     eq.ConversionError, "capabilities"),
    "lstm_specs: an unknown dtype": (lambda: example(strategies.lstm_specs(dtypes=["int8"])),
                                     eq.ConversionError, "dtypes"),
    "lstm_specs: a dtype string": (lambda: example(strategies.lstm_specs(dtypes="float32")),
                                   eq.ConversionError, "dtypes"),
    "lstm_weights: not a spec": (lambda: example(strategies.lstm_weights("spec")), eq.SpecError,
                                 "spec"),
    "lstm_weights: an infinite scale": (
        lambda: example(strategies.lstm_weights(SPEC, max_scale=math.inf)), eq.SpecError,
        "max_scale"),
    "lstm_inputs: no batch": (lambda: example(strategies.lstm_inputs(SPEC, max_batch=0)),
                              eq.ConversionError, "max_batch"),
    "lstm_inputs: not a spec": (lambda: example(strategies.lstm_inputs(None)),
                                eq.ConversionError, "spec"),
    "files.read: None": (lambda: files.read(None), eq.ConversionError, "path"),
    "files.read: an int": (lambda: files.read(5), eq.ConversionError, "path"),
    "files.read: a NUL in the name": (lambda: files.read("a\0b"), eq.ConversionError, "path"),
    "files.read: a name too long": (lambda: files.read("a" * 300), FileFormatError,
                                    "cannot be opened"),
    "files.read: an unhashable family": (lambda: files.read("x", family_name=["torch"]),
                                         eq.ConversionError, "file format"),
    "files.read: an unprintable family": (lambda: files.read("x", family_name=UnprintableRepr()),
                                          eq.ConversionError, "file format"),
    "files.detect_kind: an int": (lambda: files.detect_kind(5), eq.ConversionError, "path"),
    "files.select: not a list of LSTMs": (lambda: files.select([1], None, "x"),
                                          eq.ConversionError, "found"),
    "files.select: a string": (lambda: files.select("abc", None, "x"), eq.ConversionError,
                               "found"),
    "check_conversion: an unprintable non-callable": (
        lambda: check_conversion(UnprintableRepr(), source="torch", target="keras"),
        eq.ConversionError, "fn"),
    "check_conversion: an unhashable format": (
        lambda: check_conversion(lambda w: w, source=["torch"], target="keras"),
        eq.UnknownFormatError, "format"),
    "check_conversion: a list as seed": (
        lambda: check_conversion(lambda w: w, source="torch", target="keras", seed=[1]),
        eq.ConversionError, "seed"),
}


@pytest.mark.parametrize("name", list(API_CORPUS))
def test_hostile_calls_raise_our_errors_in_bounded_time_and_memory(name: str) -> None:
    call, expected, text = API_CORPUS[name]
    raised = bounded(call)
    assert isinstance(raised, expected), f"{type(raised).__name__}: {raised}"
    message = str(raised)
    assert text in message and len(message) < 2000, message


def test_a_legal_broadcast_view_is_read_and_not_modified() -> None:
    # The control: the cap refuses sizes, not views; a small broadcast view is good input.
    weights = native("keras")
    weights[2] = np.broadcast_to(np.float64(0.25), weights[2].shape)
    moved = bounded(lambda: eq.convert(weights, source="keras", target="torch"))
    assert np.all(moved["bias_ih_l0"] == 0.25) and not weights[2].flags.writeable


# ---------------------------------------------------------------- check_conversion


@pytest.fixture(scope="module", autouse=True)
def frameworks_imported() -> None:
    """Each pair run once, untimed: importing TensorFlow alone takes 20 s on a busy machine."""
    for source, target in {(s, t) for s, t, _fn, _text in HOSTILE_FUNCTIONS.values()}:
        ok = check_conversion(lambda w, t=target: eq.convert(w, source="torch", target=t),
                              source=source, target=target, max_examples=1)
        assert ok, str(ok)


def keras_of(value: Any) -> Callable[[Any], Any]:
    return lambda _weights: [value, value, value]


def raises_unprintable(_weights: Any) -> Any:
    raise UnprintableError


# id -> (source, target, fn, text the result must name)
HOSTILE_FUNCTIONS: dict[str, tuple[str, str, Callable[[Any], Any], str]] = {
    "an __array__ that raises": ("torch", "keras", keras_of(RaisingArray()),
                                 "an object whose __array__ raised RuntimeError"),
    "meta tensors": ("torch", "torch", lambda _w: meta_state_dict(), "meta tensor"),
    "a list that contains itself": ("torch", "keras", keras_of(loop()), "cannot be read"),
    "a Mapping whose __getitem__ raises": ("torch", "onnx",
                                           lambda _w: RaisingMapping(ONNX_KEYS),
                                           "RuntimeError: no item"),
    "an exception whose __str__ raises": ("torch", "keras", raises_unprintable,
                                          "the conversion function raised UnprintableError"),
    "4e12-element views": ("torch", "keras", keras_of(huge()), "MAX_ELEMENTS"),
    "None": ("torch", "onnx", lambda _w: None, "the target rejected"),
}


@pytest.mark.parametrize("name", list(HOSTILE_FUNCTIONS))
def test_hostile_functions_are_failed_results(name: str) -> None:
    source, target, fn, text = HOSTILE_FUNCTIONS[name]
    result = bounded(lambda: check_conversion(fn, source=source, target=target,
                                              max_examples=2))
    assert isinstance(result, CheckResult), result
    assert not result.ok
    report = str(result)  # formatting the result never raises either
    assert text in report, report
    assert result.diagnosis is None or isinstance(result.diagnosis, str)


@pytest.mark.parametrize("time_limit", [30.0, None])
def test_system_exit_from_a_signal_handler_propagates_at_once(time_limit) -> None:
    calls = []

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(7)

    def converter(weights: dict) -> Any:
        calls.append(1)
        os.kill(os.getpid(), signal.SIGUSR1)  # handled in the main thread, as a real signal
        time.sleep(2)  # with a time limit, this runs in a worker thread: still sleeping
        return eq.convert(weights, source="torch", target="keras")

    previous = signal.signal(signal.SIGUSR1, stop)
    start = time.perf_counter()
    try:
        with pytest.raises(SystemExit) as stopped:
            check_conversion(converter, source="torch", target="keras", max_examples=5,
                             time_limit=time_limit)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert stopped.value.code == 7 and len(calls) == 1  # no replay, no FlakyFailure
    assert time.perf_counter() - start < LIMIT_S


def test_keyboard_interrupt_raised_in_a_worker_propagates_at_once() -> None:
    calls = []

    def interrupted(_weights: Any) -> Any:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        check_conversion(interrupted, source="torch", target="keras", max_examples=5,
                         time_limit=30.0)
    assert len(calls) == 1


def test_a_correct_function_still_passes() -> None:
    # The control for the corpus above: the same checks, a converter that is right.
    result = bounded(lambda: check_conversion(
        lambda w: eq.convert(w, source="torch", target="keras"), source="torch",
        target="keras", max_examples=3))
    assert result.ok, str(result)


# ---------------------------------------------------------------- temporary files


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_killed_runs_temporaries_go_whatever_the_next_target(tmp_path: Path) -> None:
    stale = temporary_name(tmp_path / "a.onnx")
    stale = stale.with_name(stale.name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
    stale.write_bytes(b"half a model")
    stale_folder = tmp_path / f".tmp-{dead_pid()}-abc_123x-ckpt"  # tf1's mkdtemp staging
    stale_folder.mkdir()
    (stale_folder / "ckpt.index").write_bytes(b"half")
    live = temporary_name(tmp_path / "c.onnx")  # this process: a run still going
    live.write_bytes(b"still writing")
    theirs = [tmp_path / ".tmp-notes.txt", tmp_path / f".tmp-{dead_pid()}-mine.txt"]
    for path in theirs:
        path.write_bytes(b"the user's own file")
    with atomic_output(tmp_path / "b.keras") as temporary:
        temporary.write_bytes(b"done")
    assert not stale.exists() and not stale_folder.exists()
    assert live.exists() and all(path.exists() for path in theirs)
    assert (tmp_path / "b.keras").read_bytes() == b"done"


def test_temporaries_of_a_sigkilled_writer_are_removed_by_the_next_run(tmp_path: Path) -> None:
    writer = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from equivalence.files._base import atomic_output
        with atomic_output(Path({str(tmp_path)!r}) / "first.onnx") as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"x" * 2**20)
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", writer], cwd=Path(__file__).parents[1],
                            capture_output=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".tmp-") and "first.onnx" not in left
    with atomic_output(tmp_path / "second.onnx") as temporary:
        temporary.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["second.onnx"]
