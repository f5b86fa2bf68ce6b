"""The OpenVINO IR compare side, on IRs that ov.convert_model and ov.save_model really write.

Each IR is built once per module from a torch ``nn.LSTM`` in a wrapper module.
The side must compute what torch computes, name the roles, and read from the
``.bin`` (without OpenVINO) the weights torch holds; a damaged ``.bin`` or XML
must fail by name, and gate rows swapped in the ``.bin`` must show.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ov = pytest.importorskip("openvino")

from equivalence.artefacts.openvino_ir import openvino_side  # noqa: E402
from equivalence.artefacts.openvino_xml import read_xml  # noqa: E402
from equivalence.artefacts.side import Feed, Refused  # noqa: E402
from equivalence.compare import ATOL  # noqa: E402
from equivalence.convert import to_canonical  # noqa: E402
from equivalence.errors import ConversionError  # noqa: E402
from equivalence.files._base import FileFormatError  # noqa: E402
from equivalence.formats._common import permute_gates  # noqa: E402

pytestmark = pytest.mark.cpu
TOLERANCE = 1e-5  # float32 against float32: the same arithmetic, another summation order


class WithStates(torch.nn.Module):
    """A stacked bidirectional LSTM taking and returning its states (the streaming export)."""

    def __init__(self, layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 5, layers, batch_first=True, bidirectional=bidirectional)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        return y, h, c


class OutputsOnly(torch.nn.Module):
    """An LSTM fed x alone; ``batch_first=False`` makes the IR time-major."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(3, 5, 1, batch_first=batch_first)

    def forward(self, inp):
        y, (h, c) = self.lstm(inp)
        return y, h, c


@pytest.fixture(scope="module")
def irs(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    with warnings.catch_warnings():  # torch.jit.trace's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        return _build(tmp_path_factory)


def _build(tmp_path_factory) -> dict[str, tuple[Path, torch.nn.Module]]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ir")
    built = {}
    stacked = WithStates(2, True).eval()
    example = (torch.randn(2, 4, 3), torch.randn(4, 2, 5), torch.randn(4, 2, 5))
    model = ov.convert_model(stacked, example_input=example)
    ov.save_model(model, root / "stacked.xml", compress_to_fp16=False)
    ov.save_model(model, root / "stacked_f16.xml")  # the default: f16 Consts, then Convert
    built["stacked"] = (root / "stacked.xml", stacked)
    built["stacked_f16"] = (root / "stacked_f16.xml", stacked)
    single = OutputsOnly(batch_first=True).eval()
    model = ov.convert_model(single, example_input=torch.randn(2, 4, 3))
    ov.save_model(model, root / "single.xml", compress_to_fp16=False)
    built["single"] = (root / "single.xml", single)
    time_major = OutputsOnly(batch_first=False).eval()
    model = ov.convert_model(time_major, example_input=torch.randn(4, 2, 3), input=[(4, 2, 3)])
    ov.save_model(model, root / "static_time_major.xml", compress_to_fp16=False)
    built["static_time_major"] = (root / "static_time_major.xml", time_major)
    return built


def _feed(side, batch: int = 2, steps: int = 4, seed: int = 1) -> Feed:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, steps, 3)).astype(np.float32)
    if "h0" not in side.takes:
        return Feed(x)
    rows = side.shape.state_rows
    h0, c0 = (rng.standard_normal((rows, batch, 5)).astype(np.float32) for _ in range(2))
    return Feed(x, h0, c0)


def _torch_run(module, feed: Feed, time_major: bool = False):
    x = torch.from_numpy(feed.x.transpose(1, 0, 2).copy() if time_major else feed.x)
    with torch.no_grad():
        if feed.h0 is None:
            y, h, c = module(x)
        else:
            y, h, c = module(x, torch.from_numpy(feed.h0), torch.from_numpy(feed.c0))
    y = y.numpy().transpose(1, 0, 2) if time_major else y.numpy()
    return y, h.numpy(), c.numpy()


def _max_diff(returned, expected) -> float:
    return max(float(np.max(np.abs(got - want))) for got, want in zip(
        (returned.y, returned.h, returned.c), expected, strict=True))


def _torch_weights(module, f16: bool = False):
    state = {k: v.detach().numpy() for k, v in module.lstm.state_dict().items()}
    canonical = to_canonical(state, "torch").with_merged_biases()
    if f16:  # what compress_to_fp16 keeps: every weight rounded to float16 once
        canonical = canonical.astype("float16").astype("float32")
    return canonical


def _assert_same_weights(got, want, atol: float = 0.0) -> None:
    assert got.spec.replace(dtype="float32") == want.spec.replace(dtype="float32")
    for (layer, direction, cell), (_, _, other) in zip(got.iter_cells(), want.iter_cells(),
                                                       strict=True):
        for name, array in cell.arrays().items():
            np.testing.assert_allclose(array, other.arrays()[name], rtol=0, atol=atol,
                                       err_msg=f"layer {layer} direction {direction} {name}")


def _copy(path: Path, into: Path) -> Path:
    shutil.copy(path, into / path.name)
    shutil.copy(path.with_suffix(".bin"), into / path.with_suffix(".bin").name)
    return into / path.name


# --- faithful IRs ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stacked", "single"])
def test_outputs_and_weights_equal_torch(irs, name):
    path, module = irs[name]
    side = openvino_side(path)
    feed = _feed(side)
    assert _max_diff(side.run(feed), _torch_run(module, feed)) < TOLERANCE
    # The weights read from the .bin alone are torch's, in canonical form (gates f i c o
    # in the IR: a wrong order would move whole rows). One bias: torch's two summed in f32.
    _assert_same_weights(side.weights, _torch_weights(module), atol=1e-7)
    assert side.fixed_batch is None and side.fixed_steps is None


def test_roles_from_names_shapes_and_position(irs):
    side = openvino_side(irs["stacked"][0])
    assert side.describe()["inputs"] == {"x": "x", "h0": "h0", "c0": "c0"}
    assert side.takes == {"h0", "c0"} and side.returns == {"y", "h", "c"}
    assert (side.shape.input_size, side.shape.state_rows, side.shape.units) == (3, 4, 5)
    single = openvino_side(irs["single"][0])
    assert single.names["x"] == "inp" and single.takes == frozenset()


def test_other_batch_and_length_run_on_a_dynamic_ir(irs):
    path, module = irs["stacked"]
    side = openvino_side(path)
    for batch, steps in ((1, 1), (5, 9)):
        feed = _feed(side, batch, steps, seed=batch)
        assert _max_diff(side.run(feed), _torch_run(module, feed)) < TOLERANCE


def test_states_default_to_zeros_where_the_probe_feeds_none(irs):
    path, module = irs["stacked"]
    side = openvino_side(path)
    x = _feed(side).x
    zeros = np.zeros((4, 2, 5), np.float32)
    expected = _torch_run(module, Feed(x, zeros, zeros))
    assert _max_diff(side.run(Feed(x)), expected) < TOLERANCE


def test_f16_compressed_weights_are_read_through_convert_and_said(irs):
    path, module = irs["stacked_f16"]
    text, graph = read_xml(path)
    assert b'element_type="f16"' in text and graph.of_type("Convert")
    side = openvino_side(path)
    assert any("f16" in note for note in side.notes)
    _assert_same_weights(side.weights, _torch_weights(module, f16=True), atol=1e-7)
    # The runtime computes with those f16-rounded weights: off torch's by more than float32
    # allows, within float16's floor, which the side's dtype asks for.
    feed = _feed(side)
    diff = _max_diff(side.run(feed), _torch_run(module, feed))
    assert TOLERANCE < diff < ATOL["float16"] and side.dtype == "float16"


def test_static_time_major_ir_fixes_shapes_and_refuses_others(irs):
    path, module = irs["static_time_major"]
    side = openvino_side(path)
    assert (side.fixed_batch, side.fixed_steps) == (2, 4)
    assert any("time-major" in note for note in side.notes)
    feed = _feed(side)
    assert _max_diff(side.run(feed), _torch_run(module, feed, time_major=True)) < TOLERANCE
    _assert_same_weights(side.weights, _torch_weights(module), atol=1e-7)
    with pytest.raises(Refused, match="3"):
        side.run(_feed(side, batch=3))


# --- an IR built with openvino.opset: states as LSTMSequence holds them, lengths ---------


def _opset_ir(path: Path, module, weights_folded: bool, batch: int = -1, steps: int = -1
              ) -> Path:
    """One LSTMSequence holding ``module``'s weights (gates f i c o), fed x (B, T, I),
    h0/c0 (B, 1, H) and seq_len; W is ``W * 1`` where ``weights_folded`` is False."""
    import openvino.opset8 as ops

    state = {k: v.detach().numpy() for k, v in module.lstm.state_dict().items()}
    fico = (1, 0, 2, 3)
    w, r = (permute_gates(state[k], fico)[None] for k in ("weight_ih_l0", "weight_hh_l0"))
    b = permute_gates(state["bias_ih_l0"] + state["bias_hh_l0"], fico)[None]
    x = ops.parameter([batch, steps, 3], ov.Type.f32, name="x")
    h0, c0 = (ops.parameter([batch, 1, 5], ov.Type.f32, name=n) for n in ("h0", "c0"))
    lengths = ops.parameter([batch], ov.Type.i32, name="seq_len")
    w_node = ops.constant(w) if weights_folded else ops.multiply(
        ops.constant(w), ops.constant(np.ones((), np.float32)))
    lstm = ops.lstm_sequence(x, h0, c0, lengths, w_node, ops.constant(r), ops.constant(b),
                             5, "forward")
    y = ops.squeeze(lstm.output(0), ops.constant(np.array([1], np.int64)))
    model = ov.Model([y.output(0), lstm.output(1), lstm.output(2)], [x, h0, c0, lengths])
    ov.save_model(model, path, compress_to_fp16=False)
    return path


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_opset_ir_with_batch_major_states_and_lengths(irs, tmp_path, static):
    module = irs["single"][1]
    shape = {"batch": 3, "steps": 6} if static else {}
    side = openvino_side(_opset_ir(tmp_path / "opset.xml", module, True, **shape))
    assert side.takes == {"h0", "c0", "lengths"} and side.names["lengths"] == "seq_len"
    assert any("batch-major" in note for note in side.notes)
    _assert_same_weights(side.weights, _torch_weights(module), atol=1e-7)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 3)).astype(np.float32)
    h0, c0 = (rng.standard_normal((1, 3, 5)).astype(np.float32) for _ in range(2))
    with torch.no_grad():
        y, (h, c) = module.lstm(torch.from_numpy(x), (torch.from_numpy(h0),
                                                      torch.from_numpy(c0)))
    full = side.run(Feed(x, h0, c0))
    assert _max_diff(full, (y.numpy(), h.numpy(), c.numpy())) < TOLERANCE
    cut = side.run(Feed(x, h0, c0, np.array([6, 2, 6])))
    if not static:
        # OpenVINO's CPU plugin runs every sequence to its end on dynamic shapes (it keeps
        # the sequence op whole there, openvino PR #10710): the lengths fed change nothing.
        # The side runs what the runtime runs, so compare's lengths probe reports it.
        assert any("ignores sequence lengths" in note for note in side.notes)
        np.testing.assert_array_equal(cut.h, full.h)
        return
    # Row 1 stops after 2 steps: its h is its state after step 2, its y zero past it.
    with torch.no_grad():
        _, (h2, _) = module.lstm(torch.from_numpy(x[1:2, :2]), (torch.from_numpy(h0[:, 1:2]),
                                                                 torch.from_numpy(c0[:, 1:2])))
    np.testing.assert_allclose(cut.h[:, 1], h2.numpy()[:, 0], atol=TOLERANCE)
    assert not cut.y[1, 2:].any() and np.abs(cut.h[:, 1] - full.h[:, 1]).max() > 1e-3


def test_weights_past_a_node_not_followed_are_none_with_a_note_and_it_still_runs(
        irs, tmp_path):
    module = irs["single"][1]
    side = openvino_side(_opset_ir(tmp_path / "mul.xml", module, weights_folded=False))
    assert side.weights is None
    assert any("weights not read" in note and "Multiply" in note for note in side.notes)
    assert side.shape.units == 5 and side.shape.state_rows == 1
    x = np.random.default_rng(4).standard_normal((2, 4, 3)).astype(np.float32)
    with torch.no_grad():
        y, (h, c) = module.lstm(torch.from_numpy(x))
    assert _max_diff(side.run(Feed(x)), (y.numpy(), h.numpy(), c.numpy())) < TOLERANCE


def test_one_lstm_cell_has_its_weights_read_and_is_refused_as_a_side(irs, tmp_path):
    import openvino.opset8 as ops

    from equivalence.artefacts.openvino_xml import read_weights

    module = irs["single"][1]
    state = {k: v.detach().numpy() for k, v in module.lstm.state_dict().items()}
    w, r = (permute_gates(state[k], (1, 0, 2, 3)) for k in ("weight_ih_l0", "weight_hh_l0"))
    b = permute_gates(state["bias_ih_l0"] + state["bias_hh_l0"], (1, 0, 2, 3))
    x, h, c = (ops.parameter([2, n], ov.Type.f32, name=k) for k, n in (("x", 3), ("h", 5),
                                                                          ("c", 5)))
    cell = ops.lstm_cell(x, h, c, ops.constant(w), ops.constant(r), ops.constant(b), 5)
    path = tmp_path / "cell.xml"
    ov.save_model(ov.Model([cell.output(0), cell.output(1)], [x, h, c]), path,
                  compress_to_fp16=False)
    read = read_weights(read_xml(path)[1], path.with_suffix(".bin"))
    _assert_same_weights(read.weights, _torch_weights(module), atol=1e-7)
    with pytest.raises(ConversionError, match=r"LSTMCell.*single time step"):
        openvino_side(path)


# --- mapping ---------------------------------------------------------------------------


def _renamed(path: Path, into: Path, old: str, new: str) -> Path:
    copy = _copy(path, into)
    text = copy.read_text()
    copy.write_text(text.replace(f'name="{old}"', f'name="{new}"').replace(
        f'names="{old}"', f'names="{new}"'))
    return copy


def test_ambiguous_names_ask_for_a_map_and_the_map_resolves_them(irs, tmp_path):
    copy = _renamed(irs["stacked"][0], tmp_path, "c0", "hx")  # h0 and hx both say h0
    with pytest.raises(ConversionError, match="--map-a/--map-b"):
        openvino_side(copy)
    side = openvino_side(copy, mapping={"h0": "h0", "c0": "hx"})
    assert side.names["c0"] == "hx"
    feed = _feed(side)
    assert _max_diff(side.run(feed), _torch_run(irs["stacked"][1], feed)) < TOLERANCE


def test_map_naming_no_tensor_lists_the_ir_names(irs):
    with pytest.raises(ConversionError, match=r"x=nope.*\['x', 'h0', 'c0'\]"):
        openvino_side(irs["stacked"][0], mapping={"x": "nope"})


def test_map_overrides_output_position(irs):
    side = openvino_side(irs["single"][0])
    swapped = openvino_side(irs["single"][0], mapping={"h": side.names["c"],
                                                       "c": side.names["h"]})
    feed = _feed(side)
    got, want = swapped.run(feed), side.run(feed)
    np.testing.assert_array_equal(got.h, want.c)
    assert any("computed from the LSTMSequence's Co" in note for note in swapped.notes)


# --- tampered and damaged IRs ----------------------------------------------------------


def _lstm_const(text: str, port: int) -> tuple[int, int]:
    """Offset and size of the Const feeding input ``port`` (4: W) of the first LSTMSequence."""
    lstm = re.search(r'<layer id="(\d+)"[^>]*type="LSTMSequence"', text)[1]
    source = re.search(rf'from-layer="(\d+)" from-port="\d+" to-layer="{lstm}" '
                       rf'to-port="{port}"', text)[1]
    data = re.search(rf'<layer id="{source}"[^>]*type="Const"[^>]*>\s*<data [^>]*'
                     r'offset="(\d+)" size="(\d+)"', text)
    return int(data[1]), int(data[2])


def test_gate_rows_swapped_in_the_bin_give_other_weights_and_outputs(irs, tmp_path):
    path, module = irs["single"]
    copy = _copy(path, tmp_path)
    offset, size = _lstm_const(copy.read_text(), 4)
    data = bytearray(copy.with_suffix(".bin").read_bytes())
    block = size // 4
    first, second = data[offset:offset + block], data[offset + block:offset + 2 * block]
    data[offset:offset + 2 * block] = second + first  # W's f and i blocks exchanged
    copy.with_suffix(".bin").write_bytes(bytes(data))
    side = openvino_side(copy)
    with pytest.raises(AssertionError):
        _assert_same_weights(side.weights, _torch_weights(module))
    feed = _feed(side)
    assert _max_diff(side.run(feed), _torch_run(module, feed)) > 1e-3


def test_truncated_bin_names_the_layer_and_sizes(irs, tmp_path):
    copy = _copy(irs["single"][0], tmp_path)
    offset, size = _lstm_const(copy.read_text(), 4)
    weights = copy.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:offset + size // 2])
    with pytest.raises(FileFormatError, match=rf"W of .*LSTMSequence.*{offset}\.\."
                       rf"{offset + size}.*\({offset + size // 2} bytes\)"):
        openvino_side(copy)


def test_offset_past_the_end_and_a_wrong_size_are_refused(irs, tmp_path):
    copy = _copy(irs["single"][0], tmp_path)
    text = copy.read_text()
    offset, size = _lstm_const(text, 5)
    copy.write_text(text.replace(f'offset="{offset}" size="{size}"',
                                 f'offset="{10**9}" size="{size}"', 1))
    with pytest.raises(FileFormatError, match=r"R of .*past the end"):
        openvino_side(copy)
    copy.write_text(text.replace(f'offset="{offset}" size="{size}"',
                                 f'offset="{offset}" size="{size - 4}"', 1))
    with pytest.raises(FileFormatError, match=rf"size {size - 4} bytes.*expected {size}"):
        openvino_side(copy)


def test_doctype_missing_bin_and_no_lstm_are_refused(irs, tmp_path):
    copy = _copy(irs["single"][0], tmp_path)
    text = copy.read_text()
    copy.write_text(text.replace('<?xml version="1.0"?>',
                                 '<?xml version="1.0"?><!DOCTYPE net [<!ENTITY e "x">]>'))
    with pytest.raises(FileFormatError, match="DOCTYPE"):
        openvino_side(copy)
    copy.write_text(text)
    copy.with_suffix(".bin").unlink()
    with pytest.raises(FileFormatError, match=r"no single\.bin"):
        openvino_side(copy)
    import openvino.opset8 as ops

    parameter = ops.parameter([2, 3], ov.Type.f32, name="x")
    ov.save_model(ov.Model([ops.relu(parameter)], [parameter]), tmp_path / "relu.xml")
    with pytest.raises(ConversionError, match="no LSTMSequence"):
        openvino_side(tmp_path / "relu.xml")
