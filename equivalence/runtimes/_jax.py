"""What the JAX-based runtimes share: scoped float64."""

from __future__ import annotations

import contextlib
from typing import Any


def x64(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """Scoped float64 in jax: the process-wide default (float32 only) stays untouched."""
    if not enabled:
        return contextlib.nullcontext()
    import jax

    return jax.enable_x64(True)
