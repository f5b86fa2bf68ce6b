"""How long a user's function may run inside a check, and how a check gives up on it.

Owns the per-call time limit of ``check_conversion`` and ``check_implementation``:
:func:`limited` runs the user's function in a daemon thread and abandons it after the
limit (:class:`TimedOut`), and :func:`check_time_limit` refuses a limit that is not a
positive number of seconds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from equivalence.errors import ConversionError, brief

DEFAULT_TIME_LIMIT = 60.0  # seconds per call of the user's function: generous, but finite


class FunctionFailed(Exception):
    """The user's function ended in a way that must not end the check (a timeout)."""


class TimedOut(FunctionFailed):
    pass


def limited(fn: Callable[[Any], Any], time_limit: float | None) -> Callable[[Any], Any]:
    """``fn`` that gives up after ``time_limit`` seconds.

    With a limit, ``fn`` runs in a daemon thread: a hung call is abandoned (it
    cannot be killed), and the check goes on. Whatever ``fn`` raises, SystemExit
    and KeyboardInterrupt included, is raised again in the calling thread.
    """

    def call(native: Any) -> Any:
        if time_limit is None:
            return fn(native)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["value"] = fn(native)
            except BaseException as exc:  # handed to the calling thread below
                box["error"] = exc

        worker = threading.Thread(target=work, name="check_conversion fn", daemon=True)
        worker.start()
        worker.join(time_limit)
        if worker.is_alive():
            raise TimedOut(
                f"the conversion function timed out: no result within {time_limit:g} s "
                "(abandoned; it may still be running in a background thread)"
            )
        if "error" in box:
            raise box["error"]
        return box["value"]

    return call


def check_time_limit(time_limit: object) -> None:
    if time_limit is None:
        return
    number = (
        float(time_limit)
        if isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
        else math.nan
    )
    if not 0 < number < math.inf:
        raise ConversionError(
            f"time_limit: {brief(time_limit)}, expected a positive number of seconds or None"
        )
