"""The findings expected here: the table rows' known findings against installed versions.

Owns :func:`known_finding`, which drops a finding from the release it was fixed
in on, and :data:`KNOWN`, every row's grid findings by (runtime, column), derived
from the table. The findings themselves sit on the rows (:mod:`equivalence.known`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType

from equivalence.known import MATCH, MATRIX, REFUSED, VERDICTS, WRONG, Known
from equivalence.table import BY_NAME, RUNTIMES, Entry

__all__ = ["KNOWN", "MATCH", "REFUSED", "VERDICTS", "WRONG", "Known", "known_finding"]

# Every grid finding the rows record, by (runtime, conformance column).
KNOWN: Mapping[tuple[str, str], Known] = MappingProxyType({
    (row.name, column): known for row in RUNTIMES for column, known in row.known.items()
    if column != MATRIX
})


def known_finding(runtime: str | Entry, feature: str) -> Known | None:
    """The finding expected of ``runtime`` (a row, or a row's name) on ``feature`` with the
    installed version; None for a name the table lacks (a test's own row has no findings)."""
    row = runtime if isinstance(runtime, Entry) else BY_NAME.get(runtime)
    if row is None:
        return None
    known = row.known.get(feature)
    if known is None or known.fixed_in is None:
        return known
    return None if _release(_installed_version(row)) >= _release(known.fixed_in) else known


_VERSIONS: dict[str, str] = {}


def _installed_version(row: Entry) -> str:
    if row.name not in _VERSIONS:
        _VERSIONS[row.name] = row.load().version()
    return _VERSIONS[row.name]


def _release(version: str) -> tuple[int, ...]:
    """``"5.1.0"`` -> (5, 1, 0); the numeric leading fields only (``"4.8.0.76"`` keeps all)."""
    numbers = []
    for part in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


