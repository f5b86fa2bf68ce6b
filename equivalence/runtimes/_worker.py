"""A persistent worker process, for runtimes that cannot run in the harness's process.

Some frameworks fix a choice per process (Keras 3 reads ``KERAS_BACKEND`` once,
at its first import; the harness's process runs Keras on TensorFlow). Such a
runtime runs in a :class:`Worker`: a child Python process started once with
its own environment, which imports one *handler* module and then calls that
module's public functions on request. Start-up is paid once; the worker lives
until :meth:`Worker.close` or the parent's exit (it also exits by itself when
the parent's end of its input closes).

Protocol: length-prefixed pickles. Requests ``(function, args, kwargs)`` go
to the child's stdin; replies come back on a private duplicate of its stdout,
whose fd 1 is pointed at stderr so framework prints cannot corrupt a reply.
The child's stderr goes to a temporary file whose tail is quoted when the
worker dies.

Failures never hang and never pass silently:

* an exception raised by the handler comes back as the same type when it is
  one of the library's own (:mod:`equivalence.errors`) or a builtin one, with
  its message, attributes and the worker's traceback as a note; any other type
  comes back as :class:`WorkerError` naming it;
* a call that exceeds its timeout kills the worker (:class:`WorkerTimeout`);
* a worker that dies raises :class:`WorkerCrashed` with its exit status and
  the tail of its stderr.

After a timeout or a crash the next call starts a fresh worker.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

_HEADER = struct.Struct("!Q")  # frame length, 8 bytes, network order
_READY = "ready"
_OK, _ERROR = "ok", "error"
_STDERR_TAIL = 3000  # characters of the worker's stderr quoted in a crash message
_MODULE = "equivalence.runtimes._worker"  # this module's name, also when run as __main__
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding equivalence/


class WorkerError(RuntimeError):
    """A worker failed: it raised an exception type the parent does not rebuild."""


class WorkerTimeout(WorkerError):
    """A worker did not answer in time; it has been killed."""


class WorkerCrashed(WorkerError):
    """A worker exited (or closed its reply pipe) before answering."""


class Worker:
    """One child process serving the public functions of ``handler`` (a module path).

    ``env`` is added to the parent's environment for the child. ``start_timeout``
    bounds the child's start (interpreter plus handler import); ``call_timeout``
    bounds each call unless the call gives its own.
    """

    def __init__(
        self,
        handler: str,
        env: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        start_timeout: float = 300.0,
        call_timeout: float = 300.0,
    ) -> None:
        self.handler = handler
        self.env = dict(env or {})
        self.name = name or handler
        self.start_timeout = start_timeout
        self.call_timeout = call_timeout
        self.starts = 0  # how many child processes this worker has started
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lock = threading.Lock()
        _LIVE.add(self)

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def call(self, function: str, *args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        """Run ``handler.function(*args, **kwargs)`` in the worker and return its result."""
        with self._lock:
            if not self.alive:
                self._start()
            limit = self.call_timeout if timeout is None else timeout
            self._send((function, args, kwargs))
            return self._answer(self._receive(limit, f"call {function}()"))

    def close(self, grace: float = 5.0) -> None:
        """Ask the worker to exit (end of its input); kill it if it has not after ``grace`` s."""
        with self._lock:
            self._stop(grace)

    # --- parent side -------------------------------------------------------------------

    def _start(self) -> None:
        self._stop(0.0)
        environment = {**os.environ, **self.env}
        path = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in _stop)
        self._process = subprocess.Popen(
            [sys.executable, "-m", _MODULE, self.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=environment,
            close_fds=True,
        )
        self.starts += 1
        status, value = self._receive(self.start_timeout, "start")
        if status != _READY:
            self._answer((status, value))  # the handler failed to import: raise its error
            raise WorkerCrashed(f"worker {self.name}: unexpected first message {status!r}")

    def _send(self, message: Any) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            process.stdin.write(_HEADER.pack(len(payload)) + payload)
            process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._crashed(f"request not delivered ({type(exc).__name__})") from None

    def _receive(self, timeout: float, what: str) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        header = self._read_exact(_HEADER.size, deadline, timeout, what)
        (size,) = _HEADER.unpack(header)
        payload = self._read_exact(size, deadline, timeout, what)
        try:
            return pickle.loads(payload)
        except Exception as exc:  # e.g. a reply holding a type this process cannot import
            raise WorkerError(f"worker {self.name}: unreadable answer to {what}: {exc}") from exc

    def _read_exact(self, size: int, deadline: float, timeout: float, what: str) -> bytes:
        process = self._process
        assert process is not None and process.stdout is not None
        fd, chunks, missing = process.stdout.fileno(), [], size
        while missing:
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(remaining, 0.0))[0] if remaining > 0 else []
            if not ready:
                self._stop(0.0)
                raise WorkerTimeout(
                    f"worker {self.name}: {what} took longer than {timeout:g} s; worker killed"
                )
            chunk = os.read(fd, min(missing, 1 << 20))
            if not chunk:
                raise self._crashed(f"no answer to {what}")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _answer(self, reply: tuple[str, Any]) -> Any:
        status, value = reply
        if status == _OK:
            return value
        if status == _ERROR:
            raise _rebuild(self.name, value)
        raise WorkerCrashed(f"worker {self.name}: unknown reply status {status!r}")

    def _crashed(self, what: str) -> WorkerCrashed:
        process = self._process
        status: int | str | None = None
        if process is not None:
            try:
                status = process.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                status = "still running (killed)"
        tail = self._stderr_tail()
        self._stop(0.0)
        return WorkerCrashed(f"worker {self.name}: {what}; exit status {status}; stderr:\n{tail}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        return self._stderr.read().decode("utf-8", "replace")

    def _stop(self, grace: float) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # already gone
                    process.stdin.close()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def _rebuild(worker: str, error: Mapping[str, Any]) -> BaseException:
    """The parent-side exception for a handler's exception (see the module docstring)."""
    cls = _known_exception(error["module"], error["qualname"])
    if cls is None:
        named = f"{error['module']}.{error['qualname']}"
        rebuilt: BaseException = WorkerError(f"worker {worker} raised {named}: {error['message']}")
    else:
        # No __init__ call: library types take structured arguments (ShapeError's
        # field/found/expected); the message and attributes are restored as they were.
        rebuilt = cls.__new__(cls)
        BaseException.__init__(rebuilt, error["message"])
        for key, value in error.get("attributes", {}).items():
            setattr(rebuilt, key, value)
    if hasattr(rebuilt, "add_note"):  # Python >= 3.11
        rebuilt.add_note(f"raised in worker {worker}:\n{error['traceback']}")
    return rebuilt


def _known_exception(module: str, qualname: str) -> type[BaseException] | None:
    if module == "builtins":
        found = getattr(builtins, qualname, None)
    elif module in ("equivalence.errors", _MODULE):
        found = getattr(importlib.import_module(module), qualname, None)
    else:
        return None
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return None


_LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for worker in list(_LIVE):
        worker.close(grace=2.0)


# --- child side ----------------------------------------------------------------------------


def _serve(handler_name: str) -> None:
    """The worker's main loop: import the handler, then answer requests until end of input."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    # Framework prints go to stderr; nothing but frames is ever written to `replies`.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    try:
        handler = importlib.import_module(handler_name)
    except BaseException as exc:  # report any import failure instead of dying silently
        _write(replies, (_ERROR, _describe(exc)))
        return
    _write(replies, (_READY, None))
    while True:
        header = requests.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return  # the parent closed our input: exit
        (size,) = _HEADER.unpack(header)
        function, args, kwargs = pickle.loads(requests.read(size))
        _write(replies, _call(handler, function, args, kwargs))


def _call(handler: Any, function: str, args: Any, kwargs: Any) -> tuple[str, Any]:
    try:
        if function.startswith("_") or not callable(getattr(handler, function, None)):
            raise AttributeError(f"{handler.__name__} has no public function {function!r}")
        reply: tuple[str, Any] = (_OK, getattr(handler, function)(*args, **kwargs))
    except Exception as exc:  # every handler error goes back to the caller
        return (_ERROR, _describe(exc))
    try:
        pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)  # fail here, not mid-write
    except Exception as exc:  # a result that cannot travel is the worker's failure
        error = _describe(exc)
        # this module runs as __main__ here: name it as the parent imports it
        error.update(module=_MODULE, qualname=WorkerError.__qualname__,
                     message=f"the result of {function}() cannot be sent back: {exc}")
        return (_ERROR, error)
    return reply


def _describe(exc: BaseException) -> dict[str, Any]:
    attributes = {}
    for key, value in vars(exc).items():
        try:
            pickle.dumps(value)
        except Exception:  # an attribute that cannot travel is left behind
            continue
        attributes[key] = value
    return {
        "module": type(exc).__module__,
        "qualname": type(exc).__qualname__,
        "message": str(exc),
        "attributes": attributes,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _write(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(payload)) + payload)
    stream.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
