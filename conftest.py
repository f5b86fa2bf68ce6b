"""Project-wide pytest setup: markers, Hypothesis profiles, the report header.

Profiles (choose with ``HYPOTHESIS_PROFILE``; default ``dev``):

* ``dev``: few examples, fast feedback while editing.
* ``ci``: derandomized (same examples every run), no deadline, 25 examples.
* ``nightly``: 300 examples, random, example database on (failures are kept
  and replayed first), and the ``target`` phase hunting the worst error.
"""

from __future__ import annotations

import os

# Before any framework import: torch must come before TensorFlow (a known import
# crash), and oneDNN's reordering is allowed (the tolerance accounts for it).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hypothesis import HealthCheck, Phase, settings

_COMMON = {"deadline": None, "print_blob": True,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture]}
settings.register_profile("dev", max_examples=8, database=None, **_COMMON)
settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **_COMMON)
settings.register_profile(
    "nightly", max_examples=300,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    **_COMMON,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
settings.load_profile(PROFILE)


def pytest_configure(config) -> None:
    for marker in (
        "cpu: runs on any machine (the CPU suite)",
        "gpu: needs a CUDA device; skips without one unless EQUIVALENCE_REQUIRE_GPU=1",
        "neoml: runs in the separate NeoML environment (tox -e neoml)",
    ):
        config.addinivalue_line("markers", marker)


def pytest_report_header(config) -> list[str]:
    return [f"equivalence: HYPOTHESIS_PROFILE={PROFILE} "
            f"(max_examples={settings.default.max_examples}, "
            f"derandomize={settings.default.derandomize})"]
