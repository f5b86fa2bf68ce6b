"""One example of the harness: a spec, its canonical weights and its inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from equivalence import cells
from equivalence.canonical import LSTMWeights
from equivalence.io_types import LSTMInputs
from equivalence.spec import LSTMSpec


@dataclass(frozen=True)
class Case:
    """One example: a spec, its canonical weights (already rounded to ``spec.dtype``), inputs."""

    spec: LSTMSpec
    weights: LSTMWeights
    inputs: LSTMInputs

    def describe(self) -> str:
        spec = self.spec
        shape = (
            f"I={spec.input_size} H={spec.units} layers={spec.layers} "
            f"directions={spec.directions} {spec.dtype}"
        )
        features = [f for f in spec.features()
                    if f not in ("stacked layers", "bidirectional", "projection", "cell_clip",
                                 "projection_clip", "gate_clip")]
        extras = {
            "projection_size": spec.projection_size,
            "cell_clip": spec.cell_clip,
            "projection_clip": spec.projection_clip,
            "gate_clip": spec.gate_clip,
        }
        detail = [f"{k}={v}" for k, v in extras.items() if v is not None]
        flags = [f"B={self.inputs.batch}", f"T={self.inputs.steps}"]
        initial = "/".join(f"{state}0" for state in cells.CELLS[spec.cell].states)  # h0/c0, h0
        flags += [initial] if self.inputs.h0 is not None else []
        if self.inputs.lengths is not None:
            flags.append(f"lengths={np.asarray(self.inputs.lengths).tolist()}")
        flags += ["time_major"] if self.inputs.time_major else []
        listed = features + detail
        described = f"{shape}" + (f" [{', '.join(listed)}]" if listed else "")
        return f"{described} inputs({', '.join(flags)})"
