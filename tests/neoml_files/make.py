"""Regenerate the NeoML network files the main environment's tests read (NeoML 2.0.210).

Run in the NeoML environment: ``.venv-neoml/bin/python tests/neoml_files/make.py``.

* ``bidirectional.npz`` + ``.cnnarch``: a case file and the network NeoML stored
  after computing it (2 layers, 2 directions, initial states), as
  ``python -m equivalence.harness.exchange export-neoml`` writes them;
* ``single.ckpt``: one Lstm saved with ``Dnn.store_checkpoint`` (solver state after it);
* ``tagger.cnnarch``: lookup -> fully connected -> tanh -> forward and reverse Lstm
  joined by ConcatChannels (the porting tutorial's network, SCENARIOS.md 4);
* ``hard_sigmoid.cnnarch`` and ``dropout.cnnarch``: an Lstm with NeoML's own hard
  sigmoid (no canonical form), and one with dropout (training only);
* ``gru_stack.npz`` + ``.cnnarch`` and ``gru_bidirectional.npz`` + ``.cnnarch``: case
  files of 2-layer Gru networks (one direction; two, the backward Gru between
  ReverseSequence layers as NeoML runs one) with initial states, and the networks NeoML
  stored after computing them.
"""

from __future__ import annotations

from pathlib import Path

import neoml
import numpy as np

from equivalence import table
from equivalence.canonical import random_weights
from equivalence.case import Case
from equivalence.harness import exchange
from equivalence.harness import judge as harness
from equivalence.io_types import LSTMInputs
from equivalence.spec import LSTMSpec

HERE = Path(__file__).parent
ENGINE = neoml.MathEngine.CpuMathEngine()
RNG = np.random.default_rng(20260101)


def bidirectional_case() -> None:
    entry = table.entry("neoml")
    weights = random_weights(LSTMSpec(3, 2, 2, 2), RNG, scale=0.5).astype("float32")
    shape = (2, 2, 2, 2)  # layers, directions, batch, units
    inputs = LSTMInputs(RNG.normal(size=(2, 5, 3)).astype(np.float32),
                        RNG.uniform(-1, 1, shape).astype(np.float32),
                        RNG.uniform(-1, 1, shape).astype(np.float32))
    native = harness.native_weights(entry, Case(weights.spec, weights, inputs))
    path = HERE / "bidirectional.npz"
    result = entry.load().run_and_store(weights.spec, native, inputs, exchange.network_file(path))
    exchange.save(path, exchange.CaseFile(weights.spec, "neoml", "neoml", {}, native, inputs,
                                          result))


def gru_case(name: str, directions: int) -> None:
    entry = table.entry("neoml")
    spec = LSTMSpec(3, 2, 2, directions, cell="gru", reset_after=False)
    weights = random_weights(spec, RNG, scale=0.5).astype("float32")
    inputs = LSTMInputs(RNG.normal(size=(2, 5, 3)).astype(np.float32),
                        RNG.uniform(-1, 1, (2, directions, 2, 2)).astype(np.float32))
    native = harness.native_weights(entry, Case(weights.spec, weights, inputs))
    path = HERE / f"{name}.npz"
    result = entry.load().run_and_store(weights.spec, native, inputs, exchange.network_file(path))
    exchange.save(path, exchange.CaseFile(weights.spec, "neoml", "neoml", {}, native, inputs,
                                          result))


def _blob(array: np.ndarray, shape: tuple[int, ...]) -> object:
    return neoml.Blob.asblob(ENGINE, np.ascontiguousarray(array, np.float32), shape, copy=True)


def _lstm(inputs: object, name: str, size: int, units: int, **options: object) -> object:
    lstm = neoml.Dnn.Lstm(inputs, hidden_size=units, name=name, **options)
    lstm.input_weights = _blob(RNG.normal(size=(4 * units, size)), (1, 4 * units, 1, 1, 1, 1,
                                                                      size))
    lstm.recurrent_weights = _blob(RNG.normal(size=(4 * units, units)),
                                   (1, 4 * units, 1, 1, 1, 1, units))
    lstm.input_free_term = _blob(RNG.normal(size=4 * units), (4 * units, 1, 1, 1, 1, 1, 1))
    lstm.recurrent_free_term = _blob(RNG.normal(size=4 * units), (4 * units, 1, 1, 1, 1, 1, 1))
    return lstm


def single_lstm(name: str, **options: object) -> neoml.Dnn.Dnn:
    dnn = neoml.Dnn.Dnn(ENGINE)
    lstm = _lstm(neoml.Dnn.Source(dnn, "x"), name, 3, 2, **options)
    neoml.Dnn.Sink(lstm, "h")
    return dnn


def tagger() -> neoml.Dnn.Dnn:
    dnn = neoml.Dnn.Dnn(ENGINE)
    tokens = neoml.Dnn.Source(dnn, "tokens")
    embedded = neoml.Dnn.MultichannelLookup(tokens, [(10, 4)], name="embedding")
    dense = neoml.Dnn.Tanh(neoml.Dnn.FullyConnected(embedded, 3, name="dense"), name="tanh")
    forward = _lstm(dense, "forward", 3, 2)
    backward = _lstm(dense, "backward", 3, 2, reverse_seq=True)
    neoml.Dnn.Sink(neoml.Dnn.ConcatChannels([forward, backward], name="concat"), "tags")
    return dnn


if __name__ == "__main__":
    bidirectional_case()
    single_lstm("lstm").store_checkpoint(str(HERE / "single.ckpt"))
    tagger().store(str(HERE / "tagger.cnnarch"))
    single_lstm("gates", activation="hard_sigmoid").store(str(HERE / "hard_sigmoid.cnnarch"))
    single_lstm("dropped", dropout_rate=0.25).store(str(HERE / "dropout.cnnarch"))
    gru_case("gru_stack", 1)
    gru_case("gru_bidirectional", 2)
    print("wrote", sorted(p.name for p in HERE.iterdir() if p.suffix != ".py"))
