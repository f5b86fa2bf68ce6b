"""OpenVINO with NNCF weight/activation quantization: run only where ``nncf`` is installed.

NNCF is not a dependency of this project; where it is absent the path is listed as
not run, with the reason, rather than dropped.
"""

from __future__ import annotations

import importlib.util

from equivalence.quantized.result import NOT_RUN, QuantizedResult, failed
from equivalence.spec import LSTMSpec

PATH = "openvino + nncf"


def run(spec: LSTMSpec, examples: int, seed: int) -> QuantizedResult:
    """The not-run record (no NNCF here); running it is left for an environment with NNCF."""
    version = _version("openvino")
    if importlib.util.find_spec("nncf") is None:
        return failed(PATH, f"openvino {version}", spec,
                      "nncf is not installed in this environment (pip list has no nncf)",
                      NOT_RUN)
    return failed(PATH, f"openvino {version}", spec,
                  "nncf is installed but this path is not written yet", NOT_RUN)


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"
