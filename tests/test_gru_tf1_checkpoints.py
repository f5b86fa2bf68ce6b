"""TF checkpoints of ``GRUCell`` networks: real ``tf.compat.v1`` graphs saved with ``Saver``
are read as GRUs (one per scope, reset_after=False) and held to TF's own outputs; they
convert with ``--verify``; GRUs written as checkpoints restore into a real GRUCell graph and
run the same; a GRUCell cannot hold reset_after=True, so that is refused by name; swapped
gate columns are caught and malformed variables refused with one message."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.file_helpers import leftovers, run_cli

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.cpu

IN, H, B, T = 3, 4, 2, 5
RNN_CELL = "tf_keras.api._v1.keras.__internal__.legacy.rnn_cell"  # as tests/test_gru_tf1.py


def gru_graph(x: np.ndarray, layers: int, directions: int, scope: str | None,
              save: Path | None = None, restore: Path | None = None) -> np.ndarray:
    """Build a GRUCell network (under ``scope``), initialize or restore it, maybe save it,
    and return its outputs on ``x``."""
    rnn_cell = importlib.import_module(RNN_CELL)
    graph = tf.Graph()
    with graph.as_default(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tf.compat.v1.set_random_seed(0)

        def cell() -> object:
            return rnn_cell.GRUCell(H, bias_initializer=tf.compat.v1.random_normal_initializer())

        inputs = tf.constant(x)
        with tf.compat.v1.variable_scope(scope or "", reuse=tf.compat.v1.AUTO_REUSE):
            if directions == 2:
                (fw, bw), _ = tf.compat.v1.nn.bidirectional_dynamic_rnn(
                    cell(), cell(), inputs, dtype=tf.float32)
                outputs = tf.concat([fw, bw], -1)
            else:
                stack = (rnn_cell.MultiRNNCell([cell() for _ in range(layers)]) if layers > 1
                         else cell())
                outputs, _ = tf.compat.v1.nn.dynamic_rnn(stack, inputs, dtype=tf.float32)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            if restore is not None:
                saver.restore(session, str(restore))
            else:
                session.run(tf.compat.v1.global_variables_initializer())
            if save is not None:
                saver.save(session, str(save))
            return session.run(outputs)


def x_batch() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(B, T, IN)).astype(np.float32)


@pytest.mark.parametrize(("layers", "directions"), [(1, 1), (2, 1), (1, 2)])
def test_a_saved_gru_cell_graph_reads_as_the_gru_tf_ran(tmp_path, layers: int,
                                                        directions: int) -> None:
    from equivalence import files, reference

    x = x_batch()
    theirs = gru_graph(x, layers, directions, "encoder", save=tmp_path / "model.ckpt")
    (found,) = files.read(tmp_path / "model.ckpt")
    assert found.name.startswith("encoder/") and "TF1 GRUCell" in found.kind
    weights = found.canonical()
    assert (weights.spec.cell, weights.spec.reset_after) == ("gru", False)
    assert (weights.spec.layers, weights.spec.directions) == (layers, directions)
    ours = reference.run(weights, x.astype(np.float64)).outputs
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("target", ["onnx", "keras"])
def test_a_gru_checkpoint_converts_and_verifies(tmp_path, capsys, target: str) -> None:
    gru_graph(x_batch(), 2, 1, "encoder", save=tmp_path / "model.ckpt")
    out_path = tmp_path / ("out.onnx" if target == "onnx" else "out.keras")
    code, out, err = run_cli(capsys, "convert", tmp_path / "model.ckpt", "--to", target, "-o",
                             out_path, "--verify")
    assert code == 0 and "verify: PASSED" in out, out + err


def test_a_gru_written_as_a_checkpoint_restores_into_a_gru_cell_graph(tmp_path, capsys) -> None:
    """ONNX GRU(linear_before_reset=0) -> checkpoint -> a real GRUCell graph restores it and
    computes what the reference computes with the ONNX file's weights."""
    from equivalence import files, reference
    from tests.test_gru_files import onnx_gru_file

    source = onnx_gru_file(tmp_path / "gru.onnx", linear_before_reset=0)
    code, out, err = run_cli(capsys, "convert", source, "--to", "tf1", "-o",
                             tmp_path / "out.ckpt", "--verify")
    assert code == 0 and "verify: PASSED" in out and "GRUCell(4)" in out, out + err
    (found,) = files.read(source)
    x = x_batch()
    theirs = gru_graph(x, 1, 1, None, restore=tmp_path / "out.ckpt")
    expected = reference.run(found.canonical(), x.astype(np.float64)).outputs
    np.testing.assert_allclose(theirs, expected, rtol=0, atol=1e-5)


def test_a_reset_after_gru_is_refused_by_name_and_nothing_written(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.GRU(3, 4).state_dict(), tmp_path / "gru.pt")
    code, _, err = run_cli(capsys, "convert", tmp_path / "gru.pt", "--to", "tf1", "-o",
                           tmp_path / "out.ckpt")
    assert code == 2 and "reset_after=True" in err, err
    assert not list(tmp_path.glob("out.ckpt*")) and leftovers(tmp_path) == []


def _rewritten(tmp_path: Path, change) -> Path:
    """The saved checkpoint with ``change`` applied to its variables, as a new checkpoint."""
    gru_graph(x_batch(), 1, 1, "encoder", save=tmp_path / "model.ckpt")
    reader = tf.train.load_checkpoint(str(tmp_path / "model.ckpt"))
    variables = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    changed = change(variables)
    names = sorted(changed)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "changed.ckpt"), tensor_names=names,
                      shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(changed[n]) for n in names])
    return tmp_path / "changed.ckpt"


def _swap_gate_columns(variables: dict) -> dict:
    out = dict(variables)
    for name in ("encoder/rnn/gru_cell/gates/kernel", "encoder/rnn/gru_cell/gates/bias"):
        r, u = np.split(out[name], 2, axis=-1)
        out[name] = np.concatenate([u, r], axis=-1)
    return out


def test_must_fail_r_and_u_swapped_is_not_equivalent(tmp_path, capsys) -> None:
    from equivalence.cli.main import main

    changed = _rewritten(tmp_path, _swap_gate_columns)
    code = main(["compare", str(tmp_path / "model.ckpt"), str(changed), "--examples", "3"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT EQUIVALENT" in out, out


def test_a_malformed_candidate_kernel_is_refused_with_one_message(tmp_path, capsys) -> None:
    name = "encoder/rnn/gru_cell/candidate/kernel"
    changed = _rewritten(tmp_path, lambda v: {**v, name: v[name][:, :3]})
    code, _, err = run_cli(capsys, "convert", changed, "--to", "onnx", "-o",
                             tmp_path / "out.onnx")
    assert code == 2 and "candidate/kernel" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.onnx").exists() and leftovers(tmp_path) == []
