"""TorchScript archives (``torch.jit.save``): LSTM modules found without running the archive.

Reading parses the archive's ``data.pkl`` (the module tree) and
``constants.pkl`` with :mod:`equivalence.files.torch.unpickler`: TorchScript
module classes become inert records, tensors are rebuilt from storage bytes,
and the archive's code is never loaded. ``nn.LSTM``/``nn.LSTMCell`` submodules
are found by their parameter names, like a state_dict, and described by their
class and attributes (``batch_first``, ``bidirectional``, ``proj_size``, ...).
A frozen module keeps its weights as unnamed constants: those are counted and
said, not guessed.

Running (``--verify``): the module itself, loaded by ``torch.jit.load``. That
executes the archive's TorchScript code, so it happens only when the user
passes ``--run-torchscript``; without it, verifying a TorchScript source is
refused with that reason.
"""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.errors import ConversionError
from equivalence.files._base import FileFormatError, FoundLSTM
from equivalence.files.limits import open_zip, read_member
from equivalence.files.torch.state_dict import found_in
from equivalence.files.torch.unpickler import LazyTensor, ScriptObject, flatten, load_archive
from equivalence.io_types import LSTMInputs, LSTMResult
from equivalence.spec import LSTMSpec

LSTM_CLASSES = ("LSTM", "LSTMCell")
MAX_CODE_BYTES = 2**20  # one code member of a TorchScript archive
# A class constant in TorchScript's code: "  batch_first : Final[bool] = True".
FINAL = re.compile(r"^  (\w+) : Final\[\w+\] = (True|False|-?[\d.]+(?:e-?\d+)?|\"\w*\")\s*$")
TRUST_FLAG = "--run-torchscript"


def read_torchscript(path: Path) -> list[FoundLSTM]:
    """LSTM modules in a TorchScript archive (see the module docstring)."""
    with open_zip(path, "TorchScript archive") as archive:
        tree, _ = load_archive(archive, path, "data.pkl", script_objects=True)
        constants = 0
        if any(n.endswith("/constants.pkl") for n in archive.namelist()):
            loaded, _ = load_archive(archive, path, "constants.pkl", script_objects=True)
            constants = sum(isinstance(v, LazyTensor) for v in flatten(loaded, str(path)).values())
        modules = _modules(tree)
        constants_of = {type(m).qualified_name: final_constants(archive, path,
                                                                type(m).qualified_name)
                        for m in modules.values() if type(m).__name__ in LSTM_CLASSES}
    found = []
    for entry in found_in(flatten(tree, str(path)), path, "TorchScript archive"):
        module = modules.get(entry.name)
        if module is None:
            found.append(entry)
        else:
            facts = {**constants_of.get(type(module).qualified_name, {}), **module.attributes()}
            found.append(_describe(entry, module, facts))
    if not found and constants:
        raise FileFormatError(path, f"no LSTM found in this file: the TorchScript archive keeps "
                                    f"{constants} tensor constants without names (a frozen "
                                    "module?); save the module unfrozen, or its state_dict")
    return found


def _modules(tree: Any) -> dict[str, ScriptObject]:
    """Dotted path -> TorchScript object, for every object under the root module."""
    out: dict[str, ScriptObject] = {}
    stack: list[tuple[Any, str]] = [(tree, "")]
    while stack and len(out) < 100_000:
        item, prefix = stack.pop()
        if isinstance(item, ScriptObject):
            if prefix:
                out[prefix] = item
            for key, value in item.attributes().items():
                if isinstance(value, ScriptObject):
                    stack.append((value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def final_constants(archive: Any, path: Path, qualified: str) -> dict[str, Any]:
    """A TorchScript class's ``Final`` constants (``batch_first``, ``num_layers``, ...), read
    as text from the archive's code: the declarations are parsed, never run."""
    module, _, name = qualified.rpartition(".")
    wanted = f"/code/{module.replace('.', '/')}.py"
    members = [n for n in archive.namelist() if n.endswith(wanted) and n.count("/") == wanted.count(
        "/")]
    if not members:
        return {}
    # Read before parsing, and capped: an LSTM class's code is a few KB, not many MB.
    text = read_member(archive, members[0], path, MAX_CODE_BYTES).decode("utf-8", "replace")
    constants: dict[str, Any] = {}
    inside = False
    for line in text.splitlines():
        if line.startswith("class "):
            inside = re.match(rf"class {re.escape(name)}\b", line) is not None
            continue
        match = FINAL.match(line) if inside else None
        if match:
            with contextlib.suppress(ValueError, SyntaxError):
                constants[match.group(1)] = ast.literal_eval(match.group(2))
    return constants


def _describe(entry: FoundLSTM, module: ScriptObject, attributes: dict[str, Any]) -> FoundLSTM:
    """The state_dict entry, with the module's class, attributes and constants."""
    qualified = type(module).qualified_name
    short = qualified.rsplit(".", 1)[-1]
    notes = [n for n in entry.notes if not n.startswith("nn.LSTMCell keys")]
    facts = {k: attributes[k] for k in ("batch_first", "bidirectional", "num_layers",
                                        "proj_size", "bias", "dropout")
             if k in attributes and isinstance(attributes[k], (bool, int, float))}
    if facts:
        notes.append("module attributes: " + ", ".join(f"{k}={v}" for k, v in facts.items()))
    problem = entry.problem
    if short not in LSTM_CLASSES:
        notes.append(f"module class {qualified} (not nn.LSTM/nn.LSTMCell): read by its "
                     "parameter names")
    elif attributes.get("mode", "LSTM") not in ("LSTM", None):
        problem = f"module mode {attributes.get('mode')!r}, not an LSTM"
    definition = {"module": entry.name, "cell": short == "LSTMCell",
                  "batch_first": bool(attributes.get("batch_first", False))}
    return FoundLSTM(**{**entry.__dict__, "kind": f"TorchScript archive, {qualified} module",
                        "notes": tuple(notes), "problem": problem, "runner": "torchscript",
                        "definition": definition})


# ---------------------------------------------------------------- running (opt-in)


def runner(found: FoundLSTM, spec: LSTMSpec, options: dict[str, Any]) -> Any:
    """A verify side that runs the archive's module; needs the opt-in flag (it runs code)."""
    from equivalence.files.runners import Side, SideAbilities

    if not options.get("run_torchscript"):
        raise ConversionError(
            f"verifying a TorchScript archive runs its module with torch.jit.load, which "
            f"executes the archive's TorchScript code; pass {TRUST_FLAG} to allow it")
    import torch

    try:
        root = torch.jit.load(found.source, map_location="cpu")
    except Exception as exc:
        raise FileFormatError(found.source, f"torch.jit.load failed ({exc})") from exc
    module = root
    for part in found.definition["module"].split("."):
        module = getattr(module, part, None)
        if module is None:
            raise ConversionError(f"the archive's module has no submodule "
                                  f"{found.definition['module']!r}")
    module.eval()
    definition = found.definition
    # A scripted nn.LSTM compiles its overloaded forward as forward__0 (tensor input).
    names = module._c._method_names()
    method = "forward" if "forward" in names else "forward__0" if "forward__0" in names else None
    if method is None:
        raise ConversionError(f"the archive's {definition['module']!r} has no compiled forward "
                              "(the scripted model never calls it), so it cannot run")
    call = getattr(module, method)

    def run(inputs: LSTMInputs) -> LSTMResult:
        return _run_module(call, definition, spec, inputs)

    label = f"the TorchScript module {definition['module']!r} of {found.source} (torch.jit.load)"
    return Side(label, run, SideAbilities(initial_state=True, lengths=False))


def _run_module(module: Any, definition: dict[str, Any], spec: LSTMSpec, inputs: LSTMInputs
                ) -> LSTMResult:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(inputs.x))
    batch, steps = inputs.batch, inputs.steps
    d, layers = spec.directions, spec.layers
    h0 = inputs.h0 if inputs.h0 is not None else np.zeros(
        (layers, d, batch, spec.output_size), inputs.x.dtype)
    c0 = inputs.c0 if inputs.c0 is not None else np.zeros(
        (layers, d, batch, spec.units), inputs.x.dtype)
    with torch.no_grad():
        if definition["cell"]:
            h, c = torch.from_numpy(h0[0, 0].copy()), torch.from_numpy(c0[0, 0].copy())
            outputs = []
            for t in range(steps):
                h, c = module(x[:, t], (h, c))
                outputs.append(h)
            y = torch.stack(outputs, 1).numpy()
            return LSTMResult(y, h.numpy()[None, None], c.numpy()[None, None])
        hx = (torch.from_numpy(h0.reshape(layers * d, batch, -1).copy()),
              torch.from_numpy(c0.reshape(layers * d, batch, -1).copy()))
        feed = x if definition["batch_first"] else x.transpose(0, 1)
        y, (h_n, c_n) = module(feed, hx)
        y = y if definition["batch_first"] else y.transpose(0, 1)
    return LSTMResult(y.numpy(), h_n.numpy().reshape(layers, d, batch, -1),
                      c_n.numpy().reshape(layers, d, batch, -1))
