"""Hypothesis profiles, shared by the test suite (conftest.py) and the report command.

* ``dev``: few examples, fast feedback while editing.
* ``ci``: derandomized (the same examples every run), no deadline, 25 examples,
  every one judged as drawn: no ``target`` phase, which would spend the second
  half mutating the worst example of the first, so the mix of dtypes and shapes
  a check judges is the one its draws give (tests/test_draws.py holds float32 to
  a third of them), as in the report (equivalence.harness.explore).
* ``nightly``: 300 examples, random, example database on (failures are kept
  and replayed first), and the ``target`` phase hunting the worst error.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, Phase, settings

EXAMPLES = {"dev": 8, "ci": 25, "nightly": 300}
_COMMON: dict[str, Any] = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
}


def register() -> None:
    settings.register_profile("dev", max_examples=EXAMPLES["dev"], database=None, **_COMMON)
    settings.register_profile(
        "ci",
        max_examples=EXAMPLES["ci"],
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        **_COMMON,
    )
    settings.register_profile(
        "nightly",
        max_examples=EXAMPLES["nightly"],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        **_COMMON,
    )
