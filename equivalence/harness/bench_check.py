"""Benchmark: how long a user waits for ``check_conversion`` on a stacked bidirectional LSTM.

``python -m equivalence.harness.bench_check [--examples N] [--json]``. A torch ->
keras converter written against ``state_dict()`` tensors is checked on
``layers=[1, 2], directions=2``: once cold (TensorFlow's import and first
traces included), then warm with another seed (new draws, warm frameworks),
which is what a second check in the same test session costs. The README's
"Speed" figures come from this; no test times it.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def torch_to_keras(state_dict: Any) -> list[Any]:
    """The README's converter: nn.LSTM(bidirectional=True) -> Bidirectional(LSTM) weights."""
    weights, layer = [], 0
    while f"weight_ih_l{layer}" in state_dict:
        for suffix in (f"_l{layer}", f"_l{layer}_reverse"):
            w_ih, w_hh = state_dict[f"weight_ih{suffix}"], state_dict[f"weight_hh{suffix}"]
            bias = state_dict[f"bias_ih{suffix}"] + state_dict[f"bias_hh{suffix}"]
            weights += [w_ih.detach().numpy().T, w_hh.detach().numpy().T, bias.detach().numpy()]
        layer += 1
    return weights


def timed_check(examples: int, seed: int) -> dict[str, Any]:
    from equivalence.harness.check import check_conversion

    started = time.perf_counter()
    result = check_conversion(torch_to_keras, source="torch", target="keras", layers=[1, 2],
                              directions=2, max_examples=examples, seed=seed)
    return {"seconds": time.perf_counter() - started, "ok": result.ok,
            "examples": result.examples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m equivalence.harness.bench_check")
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = {"cold": timed_check(args.examples, seed=0), "warm": timed_check(args.examples,
                                                                               seed=1)}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, figure in figures.items():
            print(f"{name}: {figure['examples']} examples, stacked bidirectional torch -> keras, "
                  f"{figure['seconds']:.2f} s ({'passed' if figure['ok'] else 'FAILED'})")
    return 0 if all(f["ok"] for f in figures.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
