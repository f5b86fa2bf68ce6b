"""``equivalence compare``: the probes, the verdicts, the diagnosis, bad input.

Real files written by torch and by our own converter, and sides that wrap a
real torch LSTM with one deployment bug each (states handed back swapped,
initial states dropped, a fixed time length): each must be caught by the
probe that shows it, and named.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the NeoML environment collects this module too

from equivalence.artefacts import command  # noqa: E402
from equivalence.artefacts.command import compare_sides  # noqa: E402
from equivalence.artefacts.probes import MATCH, REFUSED, WRONG  # noqa: E402
from equivalence.artefacts.side import Feed, Refused, Returned, Shape, Side, parse_map  # noqa: E402
from equivalence.convert import to_canonical  # noqa: E402
from equivalence.errors import ConversionError  # noqa: E402

pytestmark = pytest.mark.cpu


def run_compare(capsys, *argv: object) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="equivalence")
    command.add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *(str(a) for a in argv)])
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def stacked(tmp_path_factory) -> tuple[Path, torch.nn.LSTM]:
    torch.manual_seed(0)
    module = torch.nn.LSTM(5, 4, num_layers=2, bidirectional=True, batch_first=True)
    path = tmp_path_factory.mktemp("stacked") / "m.pt"
    torch.save(module.state_dict(), path)
    return path, module


def _swap_gates(state: dict, key: str, units: int) -> dict:
    state = {k: v.clone() for k, v in state.items()}
    i, f = state[key][:units].clone(), state[key][units:2 * units].clone()
    state[key][:units], state[key][units:2 * units] = f, i
    return state


def test_a_faithful_conversion_is_equivalent_on_every_probe(stacked, tmp_path, capsys):
    from equivalence.cli import files as cli

    path, _ = stacked
    keras_file = tmp_path / "m.keras"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", str(path), "--to", "keras", "-o", str(keras_file)])
    assert args.func(args) == 0
    capsys.readouterr()
    code, out, err = run_compare(capsys, path, keras_file, "--json", "--examples", "4")
    assert code == 0, out + err
    document = json.loads(out)
    assert document["verdict"] == "equivalent" and document["diagnosis"] is None
    verdicts = {p["name"]: p["verdict"] for p in document["probes"]}
    assert set(verdicts.values()) == {MATCH}, verdicts
    assert {"exported shape", "longer time", "batch 1", "initial states", "lengths"} <= set(
        verdicts)
    assert {p["name"] for p in document["not_probed"]} == {"streaming"}  # bidirectional
    assert document["a"]["weights_read"] and document["b"]["weights_read"]
    for probe in document["probes"]:
        assert 0 <= probe["max_abs_diff"] < 1e-5 and probe["tolerance"], probe


def test_a_gate_swap_is_silently_wrong_and_named(stacked, tmp_path, capsys):
    path, module = stacked
    broken = tmp_path / "swapped.pt"
    torch.save(_swap_gates(module.state_dict(), "weight_ih_l1_reverse", 4), broken)
    code, out, err = run_compare(capsys, path, broken, "--json", "--examples", "3")
    assert code == 1, out + err
    document = json.loads(out)
    assert document["verdict"] == "not equivalent"
    exported = document["probes"][0]
    assert exported["name"] == "exported shape" and exported["verdict"] == WRONG
    assert exported["max_abs_diff"] > 1e-3 and exported["minimal_case"]["batch"] >= 1
    assert "i and f blocks swapped" in document["diagnosis"]
    assert "layer 1 backward" in document["diagnosis"], document["diagnosis"]


# ---------------------------------------------------------------- sides with one bug each


def _torch_side(module: torch.nn.LSTM, *, bug: str = "", fixed_steps: int | None = None
                ) -> Side:
    """A side running ``module`` for real, with one deployment bug (or none)."""
    rows = module.num_layers * (2 if module.bidirectional else 1)

    def run(feed: Feed) -> Returned:
        if fixed_steps is not None and feed.steps != fixed_steps:
            raise Refused(f"input time length {feed.steps}, the graph fixes {fixed_steps}")
        x = torch.from_numpy(np.ascontiguousarray(feed.x, np.float32))
        states = None
        if feed.h0 is not None and bug != "drops initial states":
            states = (torch.from_numpy(feed.h0.astype(np.float32)),
                      torch.from_numpy(feed.c0.astype(np.float32)))
        with torch.no_grad():
            y, (h, c) = module(x, states)
        h, c = h.numpy(), c.numpy()
        if bug == "returns c, h":
            h, c = c, h
        return Returned(y.numpy(), h, c)

    weights = to_canonical({k: v.numpy() for k, v in module.state_dict().items()}, "torch")
    return Side(path="(in memory)", kind="torch module", label=f"torch ({bug or 'no bug'})",
                run=run, takes=frozenset({"h0", "c0"}), returns=frozenset({"y", "h", "c"}),
                shape=Shape(module.input_size, module.hidden_size * rows // module.num_layers,
                            rows, module.hidden_size, module.hidden_size),
                fixed_steps=fixed_steps, weights=weights)


@pytest.fixture(scope="module")
def unidirectional() -> torch.nn.LSTM:
    torch.manual_seed(1)
    return torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)


def _verdicts(outcome) -> dict[str, str]:
    return {r.probe.name: r.verdict for r in outcome.results}


def test_states_handed_back_swapped_fail_only_when_streaming(unidirectional):
    outcome = compare_sides(_torch_side(unidirectional),
                            _torch_side(unidirectional, bug="returns c, h"), examples=4,
                            say=lambda _: None)
    verdicts = _verdicts(outcome)
    assert verdicts["streaming"] == WRONG and verdicts["exported shape"] == WRONG, verdicts
    assert "h and c are swapped" in outcome.diagnosis, outcome.diagnosis


def test_dropped_initial_states_are_named(unidirectional):
    outcome = compare_sides(_torch_side(unidirectional),
                            _torch_side(unidirectional, bug="drops initial states"),
                            examples=4, say=lambda _: None)
    verdicts = _verdicts(outcome)
    assert verdicts["exported shape"] == MATCH and verdicts["initial states"] == WRONG
    assert verdicts["streaming"] == WRONG, verdicts
    assert "ignores the initial states" in outcome.diagnosis, outcome.diagnosis


def test_a_fixed_time_length_is_refused_not_counted(unidirectional):
    outcome = compare_sides(_torch_side(unidirectional),
                            _torch_side(unidirectional, fixed_steps=5), examples=3,
                            say=lambda _: None)
    verdicts = _verdicts(outcome)
    assert verdicts["exported shape"] == MATCH and outcome.verdict == "equivalent"
    for name in ("time 1", "shorter time", "longer time"):
        assert verdicts[name] == REFUSED, verdicts
    refused = next(r for r in outcome.results if r.probe.name == "longer time")
    assert "the graph fixes 5" in refused.reason
    # streaming cuts the sequence into chunks of the exported length: it runs
    assert verdicts["streaming"] == MATCH and outcome.results[0].probe.steps == (5,)


def test_the_exported_shape_refused_cannot_compare(unidirectional):
    def refuse(feed: Feed) -> Returned:
        raise Refused("no kernel for this graph")

    broken = _torch_side(unidirectional)
    broken.run = refuse
    with pytest.raises(ConversionError, match="cannot compare: at the exported shape"):
        compare_sides(_torch_side(unidirectional), broken, examples=2, say=lambda _: None)


# ---------------------------------------------------------------- bad input


def test_different_shapes_exit_2_naming_both(stacked, tmp_path, capsys):
    path, _ = stacked
    other = tmp_path / "other.pt"
    torch.save(torch.nn.LSTM(5, 6, num_layers=2, bidirectional=True).state_dict(), other)
    code, out, err = run_compare(capsys, path, other)
    assert code == 2 and out == ""
    assert "different shapes" in err and "units=4" in err and "units=6" in err, err
    assert len(err.strip().splitlines()) == 1


def test_a_file_with_no_lstm_exits_2(stacked, tmp_path, capsys):
    path, _ = stacked
    empty = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), empty)
    code, _, err = run_compare(capsys, path, empty)
    assert code == 2 and "no LSTM" in err and len(err.strip().splitlines()) == 1, err


def test_torchscript_is_refused_before_anything_runs(stacked, tmp_path, capsys):
    path, module = stacked
    scripted = tmp_path / "m.ts"
    torch.jit.script(module).save(str(scripted))
    code, out, err = run_compare(capsys, path, scripted)
    assert code == 2 and "--run-torchscript" in err and "compare: A" not in out, err


def test_map_syntax_is_checked():
    assert parse_map("x=input, h=hn,c=cn") == {"x": "input", "h": "hn", "c": "cn"}
    for text, match in (("x", "role=name"), ("q=input", "role 'q'")):
        with pytest.raises(ConversionError, match=match):
            parse_map(text)


def test_without_b_weights_the_outputs_say_where_b_departs(unidirectional):
    """B's weights unread (as a SavedModel's may be): the localization from outputs speaks."""
    import copy

    broken = copy.deepcopy(unidirectional)
    with torch.no_grad():  # one gate of layer 2 moved: the forget block of weight_hh_l1
        broken.weight_hh_l1[5:10] *= 1.5
    side = _torch_side(broken)
    side.weights = None
    outcome = compare_sides(_torch_side(unidirectional), side, examples=3, say=lambda _: None)
    assert outcome.verdict == "not equivalent"
    assert "outputs:" in outcome.diagnosis and "weights:" not in outcome.diagnosis
    assert "layer 1" in outcome.diagnosis, outcome.diagnosis


JUNK = {"model.onnx": b"\x08\x07" + bytes(range(256)) * 8,
        "model.tflite": b"xxxxTFL3" + bytes(range(255, -1, -1)) * 8,
        "model.xml": b'<?xml version="1.0"?><net><layers><layer',
        "saved/saved_model.pb": bytes(range(256)) * 2}


@pytest.mark.parametrize("name", sorted(JUNK))
def test_a_hostile_artefact_is_one_line_and_exit_2(stacked, tmp_path, capsys, name):
    import time

    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(JUNK[name])
    before = sorted(p.name for p in tmp_path.rglob("*"))
    start = time.perf_counter()
    code, out, err = run_compare(capsys, stacked[0], path.parent if "saved" in name else path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert time.perf_counter() - start < 60 and len(err) < 2500
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_a_reverse_lstm_is_not_streamed(unidirectional):
    from equivalence.artefacts.probes import plan
    from equivalence.canonical import LSTMWeights

    side = _torch_side(unidirectional)
    side.weights = LSTMWeights(side.weights.spec.replace(reverse=True), side.weights.cells)
    chosen = plan(side, _torch_side(unidirectional))
    assert "streaming" not in [p.name for p in chosen.probes]
    assert any(name == "streaming" and "reverse" in why for name, why in chosen.skipped)
