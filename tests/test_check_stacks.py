"""check_conversion on whole networks, with the framework's own objects (issue 20).

Users' converters written against ``state_dict()`` (torch tensors, ``.detach()``)
are checked on stacked and bidirectional LSTMs; each buggy converter (one
layer, one direction, directions or layers swapped, tensors mishandled) must
fail, and the diagnosis must name the cell and where the target holds it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import equivalence as eq
from equivalence import check_conversion
from equivalence.formats._common import permute_gates

pytestmark = pytest.mark.cpu

Cells = dict[tuple[int, int], list]  # (layer, direction) -> [kernel, recurrent, bias]


def torch_cells(state_dict) -> Cells:
    """A user's reading of a state_dict: torch tensors, detached, as numpy, Keras-shaped."""
    cells: Cells = {}
    layer = 0
    while f"weight_ih_l{layer}" in state_dict:
        for direction, suffix in enumerate((f"_l{layer}", f"_l{layer}_reverse")):
            if f"weight_ih{suffix}" not in state_dict:
                continue
            w_ih, w_hh = state_dict[f"weight_ih{suffix}"], state_dict[f"weight_hh{suffix}"]
            bias = state_dict[f"bias_ih{suffix}"] + state_dict[f"bias_hh{suffix}"]
            cells[(layer, direction)] = [w_ih.detach().numpy().T, w_hh.detach().numpy().T,
                                         bias.detach().numpy()]
        layer += 1
    return cells


def to_keras(mistake: Callable[[Cells], None] | None = None) -> Callable:
    """A torch -> keras converter, with ``mistake`` made to its cells before they are listed."""

    def convert(state_dict) -> list:
        cells = torch_cells(state_dict)
        if mistake is not None:
            mistake(cells)
        return [array for key in sorted(cells) for array in cells[key]]

    return convert


def swap_i_and_o(key: tuple[int, int]) -> Callable[[Cells], None]:
    def mistake(cells: Cells) -> None:
        if key in cells:
            cells[key][0] = permute_gates(cells[key][0], (3, 1, 2, 0), axis=-1)

    return mistake


def swap_directions(cells: Cells) -> None:
    for layer in {k[0] for k in cells}:
        if (layer, 1) in cells:
            cells[(layer, 0)], cells[(layer, 1)] = cells[(layer, 1)], cells[(layer, 0)]


def swap_layers(cells: Cells) -> None:
    if (1, 0) in cells:
        cells[(0, 0)], cells[(1, 0)] = cells[(1, 0)], cells[(0, 0)]


def reshaped_not_transposed(state_dict) -> list:
    """Tensors mishandled: .view() where .T was due."""
    cells = torch_cells(state_dict)
    w_ih = state_dict["weight_ih_l0"].detach()
    cells[(0, 0)][0] = w_ih.view(w_ih.shape[1], w_ih.shape[0]).numpy()
    return [array for key in sorted(cells) for array in cells[key]]


STACK = {"layers": 2, "directions": 2}


def test_a_stacked_bidirectional_converter_on_tensors_passes() -> None:
    seen = []

    def converter(state_dict):
        seen.append({type(v).__module__.split(".")[0] for v in state_dict.values()})
        return to_keras()(state_dict)

    result = check_conversion(converter, source="torch", target="keras", layers=[1, 2],
                              directions=[1, 2], max_examples=15)
    assert result.ok, str(result)
    assert seen and all(kinds == {"torch"} for kinds in seen)


@pytest.mark.parametrize("mistake, names", [
    (swap_i_and_o((0, 0)), ["layer 0 forward: i and o blocks swapped", "weights[0:3]"]),
    (swap_i_and_o((0, 1)), ["layer 0 backward: i and o blocks swapped", "weights[3:6]"]),
    (swap_i_and_o((1, 0)), ["layer 1 forward: i and o blocks swapped", "weights[6:9]"]),
    (swap_i_and_o((1, 1)), ["layer 1 backward: i and o blocks swapped", "weights[9:12]"]),
    (swap_directions, ["forward and backward directions swapped in every layer"]),
])
def test_each_cell_of_a_stack_is_caught_and_named(mistake, names: list[str]) -> None:
    result = check_conversion(to_keras(mistake), source="torch", target="keras",
                              max_examples=15, **STACK)
    assert not result.ok
    for name in names:
        assert name in (result.diagnosis or ""), result.diagnosis


def test_swapped_layers_are_named() -> None:
    # Layers of the same shapes (input_size == units) can be swapped without the reader noticing.
    result = check_conversion(to_keras(swap_layers), source="torch", target="keras", layers=2,
                              input_size=4, units=4, max_examples=15)
    assert not result.ok
    assert "layers 0 and 1 swapped" in (result.diagnosis or ""), result.diagnosis


def test_tensors_reshaped_instead_of_transposed_are_named() -> None:
    result = check_conversion(reshaped_not_transposed, source="torch", target="keras",
                              max_examples=15, **STACK)
    assert not result.ok
    assert "layer 0 forward: reshaped instead of transposed in kernel" in result.diagnosis


def keras_to_torch(mistake: Callable[[dict], None] | None = None) -> Callable:
    """A keras -> torch converter for a Bidirectional stack (the user knows it has 2 directions),
    returning requires_grad tensors as an nn.Module's parameters are."""
    import torch

    def convert(weights: list) -> dict:
        state = {}
        for index in range(0, len(weights), 3):
            kernel, recurrent, bias = weights[index:index + 3]
            layer, direction = divmod(index // 3, 2)
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            state |= {f"weight_ih{suffix}": kernel.T, f"weight_hh{suffix}": recurrent.T,
                      f"bias_ih{suffix}": bias, f"bias_hh{suffix}": np.zeros_like(bias)}
        if mistake is not None:
            mistake(state)
        return {k: torch.nn.Parameter(torch.tensor(v)) for k, v in state.items()}

    return convert


def drop_reverse_bias(state: dict) -> None:
    state["bias_ih_l1_reverse"] = np.zeros_like(state["bias_ih_l1_reverse"])


def test_requires_grad_tensors_returned_are_read_and_torch_names_used() -> None:
    good = check_conversion(keras_to_torch(), source="keras", target="torch", max_examples=10,
                            **STACK)
    assert good.ok, str(good)
    bad = check_conversion(keras_to_torch(drop_reverse_bias), source="keras", target="torch",
                           max_examples=10, **STACK)
    assert not bad.ok
    assert "layer 1 backward:" in bad.diagnosis and "weight_ih_l1_reverse" in bad.diagnosis


def test_flax_gives_jax_arrays_and_numpy_on_request() -> None:
    kinds: set[str] = set()

    def leaves(tree):
        if isinstance(tree, dict):
            return [leaf for value in tree.values() for leaf in leaves(value)]
        return [leaf for value in tree for leaf in leaves(value)] if isinstance(tree, list) \
            else [tree]

    def flax_to_flax(params):  # one cell's dict, or a list over layers of [forward, backward]
        kinds.update(type(leaf).__module__.split(".")[0] for leaf in leaves(params))
        return params

    assert check_conversion(flax_to_flax, source="flax", target="flax", max_examples=3,
                            **STACK).ok
    assert kinds == {"jaxlib"} or kinds == {"jax"}, kinds
    kinds.clear()
    assert check_conversion(flax_to_flax, source="flax", target="flax", max_examples=3,
                            native="numpy").ok
    assert kinds == {"numpy"}


def test_tf_variables_returned_are_read() -> None:
    import tensorflow as tf

    result = check_conversion(lambda ws: [tf.Variable(w) for w in ws], source="keras",
                              target="keras", max_examples=5, **STACK)
    assert result.ok, str(result)


def test_pinned_sizes_and_narrowed_features_are_what_fn_sees() -> None:
    seen = []

    def converter(state_dict):
        seen.append({k: tuple(v.shape) for k, v in state_dict.items()})
        return to_keras()(state_dict)

    result = check_conversion(converter, source="torch", target="keras", input_size=7, units=5,
                              layers=2, directions=2, max_examples=5)
    assert result.ok, str(result)
    assert all(shapes["weight_ih_l0"] == (20, 7) and shapes["weight_ih_l1_reverse"] == (20, 10)
               for shapes in seen)


class BadIterable:
    def __iter__(self):
        raise RuntimeError("no")


@pytest.mark.parametrize("options, text", [
    ({"layers": 0}, "layers=0: pass an int in [1, "),
    ({"layers": "2"}, "layers='2'"),
    ({"directions": 3}, "directions=3: pass an int in [1, 2]"),
    ({"units": []}, "units=[]"),
    ({"input_size": 2.5}, "input_size=2.5"),
    ({"projection": True}, "projection=True: torch -> keras cannot run a projection"),
    ({"projection": -1}, "projection=-1"),
    ({"dtypes": ["float8"]}, "dtypes=('float8',)"),
    ({"dtypes": ["bfloat16"], "target": "tf1"}, "dtypes: torch -> tf1 cannot run bfloat16"),
    ({"peephole": False}, "peephole: not a keyword of the check"),
    ({"initial_state": "no"}, "initial_state='no': pass True or False"),
    ({"peepholes": True}, "peepholes=True: torch -> keras cannot run peepholes"),
    ({"native": "torch"}, "native='torch'"),
    ({"units": 10**6, "layers": 9000}, "the largest network they allow is refused"),
    ({"units": range(1, 10**12)}, "a sequence of at most 64"),
    ({"layers": BadIterable()}, "layers: iterating it raised RuntimeError"),
    ({"dtypes": BadIterable()}, "dtypes: iterating it raised RuntimeError"),
])
def test_bad_draw_keywords_raise_naming_the_argument(options: dict, text: str) -> None:
    options = {"source": "torch", "target": "keras", **options}
    with pytest.raises(eq.ConversionError) as raised:
        check_conversion(to_keras(), **options)
    assert text in str(raised.value)


def test_features_turned_off_are_not_drawn() -> None:
    from hypothesis import given, settings

    from equivalence.capabilities import Capabilities
    from equivalence.harness.draws import cases, parse

    draws = parse(Capabilities.of("projection"), "torch -> torch", layers=[1, 3],
                  directions=[1, 2], units=range(2, 5),
                  features={"initial_state": False, "lengths": False})
    seen = set()

    @settings(max_examples=60, database=None, deadline=None)
    @given(cases(draws))
    def drawn(case) -> None:
        assert case.inputs.h0 is None and case.inputs.lengths is None
        assert case.spec.layers in (1, 3) and 2 <= case.spec.units <= 4
        seen.add((case.spec.layers, case.spec.directions, case.spec.projection_size is not None))

    drawn()
    assert len(seen) >= 4  # the narrowed draws still vary layers, directions and projection


def test_torch_threads_are_as_they_were_after_a_check() -> None:
    import torch

    before = torch.get_num_threads()
    inside = []

    def converter(state_dict):
        inside.append(torch.get_num_threads())
        return to_keras()(state_dict)

    assert check_conversion(converter, source="torch", target="keras", max_examples=3).ok
    assert inside and set(inside) == {1}  # small LSTMs: one thread (see check._one_torch_thread)
    assert torch.get_num_threads() == before
    with pytest.raises(AssertionError):
        eq.assert_conversion(lambda sd: 1 / 0, source="torch", target="keras", max_examples=2)
    assert torch.get_num_threads() == before
