"""Format options: which keywords a format's reader and writer take, and what the spec says.

A flat weight list (Keras) or vector (cuDNN, jax.experimental.rnn) does not
carry its own shape, so its reader takes shape keywords; TF1's and ONNX's
readers take the run-time options their weights are made for (``forget_bias``,
``clip``). Whenever a reader keyword restates a field of :class:`LSTMSpec`,
the spec is the one source of its value. Reader keywords are a spec field's
own name, or one of the format vocabulary's aliases below.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from equivalence.errors import ConversionError
from equivalence.formats import get
from equivalence.spec import LSTMSpec

# A reader keyword that names a spec field differently (the format's own word for it).
ALIASES = {"proj_clip": "projection_clip", "clip": "gate_clip"}
_SPEC_FIELDS = frozenset(f.name for f in dataclasses.fields(LSTMSpec))
# Spec fields a reader may restate: shape and run-time semantics, never the dtype.
_RESTATABLE = _SPEC_FIELDS - {"dtype", "forget_bias"}


@functools.cache
def keyword_options(fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword-only parameters of ``fn`` (a reader's or writer's options)."""
    return frozenset(
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    )


def spec_field(option: str) -> str | None:
    """The spec field a reader keyword restates, or None."""
    name = ALIASES.get(option, option)
    return name if name in _RESTATABLE else None


def reader_options(fmt: str, spec: LSTMSpec, format_options: Mapping[str, Any]) -> dict[str, Any]:
    """Options that let ``fmt``'s reader interpret native weights made for ``spec``."""
    accepted = keyword_options(get(fmt).to_canonical)
    options = {k: getattr(spec, field) for k in accepted if (field := spec_field(k))}
    options.update({k: v for k, v in format_options.items() if k in accepted})
    return options


def writer_options(fmt: str, format_options: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``format_options`` that ``fmt``'s writer takes."""
    accepted = keyword_options(get(fmt).from_canonical)
    return {k: v for k, v in format_options.items() if k in accepted}


def checked_run_options(
    who: str, fmt: str, spec: LSTMSpec, format_options: Mapping[str, Any]
) -> dict[str, Any]:
    """``format_options`` for running ``fmt`` weights, refused when unknown or against the spec."""
    fmt_entry = get(fmt)
    accepted = keyword_options(fmt_entry.to_canonical) | keyword_options(fmt_entry.from_canonical)
    unknown = sorted(set(format_options) - accepted)
    if unknown:
        raise ConversionError(
            f"{who}: unexpected format options {unknown} ({fmt} takes {sorted(accepted) or 'none'})"
        )
    for option, value in format_options.items():
        field = spec_field(option)
        if field is not None and value != getattr(spec, field):
            raise ConversionError(
                f"{who}: option {option}={value!r} disagrees with spec.{field}="
                f"{getattr(spec, field)!r}"
            )
    return dict(format_options)
