"""Whole-module torch pickles (``torch.save(model)``) read as data: classes become inert records.

A pickled ``nn.Module`` names its classes (``model.BDA``, ``torch.nn.modules.rnn.LSTM``),
creates each with ``cls.__new__(cls)`` (NEWOBJ) and fills it from a state dict
(BUILD). Here every such class is an inert :class:`ModuleRecord` subclass made on
the spot: never imported, its ``__init__`` never run. Creating one by a call
(REDUCE, which for a real class would run its code) is refused, naming the class,
and names that are functions known to run code (``os.system``, ``eval``,
``subprocess``...) are refused as soon as they are named. A record's attributes are
its ``_parameters``, ``_buffers`` and ``_modules``, so an ``nn.LSTM`` submodule's
parameters are found under the names a state_dict gives them.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, ClassVar

MAX_RECORD_CLASSES = 10_000
# Modules whose every name runs code or reaches the system: refused when named.
CODE_MODULES = ("os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib",
                "runpy", "pty", "code", "ctypes", "multiprocessing", "pickle", "marshal",
                "types", "webbrowser", "pdb", "commands", "io", "_io", "pathlib", "tempfile")
CODE_BUILTINS = {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr",
                 "__import__", "globals", "locals", "vars", "input", "breakpoint", "apply",
                 "execfile", "print", "exit", "quit", "help", "memoryview", "type", "object",
                 "super", "classmethod", "staticmethod", "property"}
DATA_BUILTINS = {"set": set, "frozenset": frozenset}


class ModuleRecord:
    """An inert stand-in for a pickled class instance (see the module docstring)."""

    qualified_name: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise pickle.UnpicklingError(
            f"the pickle calls {self.qualified_name}(...), which a file of tensors has no "
            "need for (refused: calling it could run code)")

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def attributes(self) -> dict[str, Any]:
        """A module's tensors and submodules as a state_dict names them, else its state."""
        state = getattr(self, "state", None)
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], Mapping):
            state = state[0]  # (state, slotstate)
        if not isinstance(state, Mapping):
            return {}
        parts = [state.get(k) for k in ("_parameters", "_buffers", "_modules")]
        if any(isinstance(p, Mapping) for p in parts):
            merged: dict[str, Any] = {}
            for part in parts:
                if isinstance(part, Mapping):
                    merged.update(part)
            return merged
        return dict(state)


def refusal(module: str, name: str) -> str | None:
    """Why naming ``module.name`` is refused at once (a function that runs code), or None."""
    top = module.split(".", 1)[0]
    if top in CODE_MODULES or (top in ("builtins", "__builtin__") and name not in DATA_BUILTINS):
        return (f"the pickle names {module}.{name}, which a file of tensors has no need for "
                "(refused: unpickling it could run code)")
    return None


def stand_in(module: str, name: str, classes: dict[str, type]) -> Any:
    """A data builtin (set, frozenset) or the inert record class for ``module.name``."""
    if module in ("builtins", "__builtin__") and name in DATA_BUILTINS:
        return DATA_BUILTINS[name]
    qualified = f"{module}.{name}"
    if qualified not in classes:
        if len(classes) >= MAX_RECORD_CLASSES:
            raise pickle.UnpicklingError(f"more than {MAX_RECORD_CLASSES} classes named")
        short = name if name.isidentifier() else "Record"
        classes[qualified] = type(short, (ModuleRecord,), {"qualified_name": qualified[:200]})
    return classes[qualified]
