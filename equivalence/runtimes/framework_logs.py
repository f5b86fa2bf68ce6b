"""Keep framework logs off the user's console while the report runs (``--debug`` shows them).

TensorFlow, XLA, oneDNN, absl, OpenVINO and torch's ONNX exporter write to file
descriptor 2 from C++, from Python warnings and from loggers, in this process
and in the worker processes the matrix and the conformance grid start (which
inherit it). Filtering each of them by level, environment variable or warning
filter misses the next new message, so the descriptor itself is pointed at a
log file for the run and everything they say is kept there; the report's own
lines (progress, timings, the summary) go to stdout, and errors are printed
after the descriptor is restored.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def framework_logs_to_file(debug: bool, *, python_stderr: bool = False) -> Iterator[Path | None]:
    """Point file descriptor 2 at a log file for the block (nothing changes under ``debug``);
    yields the log's path.

    ``python_stderr``: Python's own ``sys.stderr`` keeps writing to the console, so a
    command's error lines printed inside the block are still seen; only what writes to the
    descriptor itself (C++ logs) goes to the file. A ``sys.stderr`` that is not the
    process's own (pytest's capture) is left alone."""
    if debug:
        yield None
        return
    handle, name = tempfile.mkstemp(prefix="equivalence-report-", suffix=".log")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(handle, 2)
    os.close(handle)
    console = None
    if python_stderr and sys.stderr is sys.__stderr__:
        console = os.fdopen(os.dup(saved), "w", buffering=1)
        sys.stderr = console
    try:
        yield Path(name)
    finally:
        if console is not None:
            sys.stderr = sys.__stderr__
            console.close()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
