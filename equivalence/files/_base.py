"""What every file reader and writer shares: the found-LSTM record, errors, safe writes.

A reader turns a file into a list of :class:`FoundLSTM`: each holds native
weights in the project's native contract (what :mod:`equivalence.formats`
reads), the reader options that interpret them, the run-time inputs the file
stores, and the facts ``inspect`` prints. A writer takes canonical weights and
writes one file, always through :func:`atomic_output`: written under a hidden
temporary name that names its process (a later run removes a killed run's
leftovers), then published in one step that never replaces an existing file
unless ``--force`` asked for it, so of two racing runs exactly one wins.

Only numpy and equivalence modules are imported here; frameworks are imported
by the reader or writer that needs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from equivalence.canonical import LSTMWeights
from equivalence.convert import to_canonical
from equivalence.errors import ConversionError, FileFormatError
from equivalence.files.limits import listed, shown
from equivalence.spec import LSTMSpec


@dataclass(frozen=True)
class StoredInputs:
    """Run-time inputs a file stores with its LSTM (ONNX ``initial_h``/``initial_c``,
    ``sequence_lens``), in the contract layout: ``h0`` (L, D, B, O), ``c0`` (L, D, B, H),
    ``lengths`` (B,). They are part of the function the file computes."""

    h0: np.ndarray | None = None
    c0: np.ndarray | None = None
    lengths: np.ndarray | None = None

    def names(self) -> list[str]:
        """The stored inputs by their ONNX names (for messages)."""
        pairs = (("initial_h", self.h0), ("initial_c", self.c0), ("sequence_lens", self.lengths))
        return [name for name, value in pairs if value is not None]

    @property
    def batch(self) -> int:
        """The batch size the stored inputs fix."""
        for value, axis in ((self.h0, 2), (self.c0, 2), (self.lengths, 0)):
            if value is not None:
                return int(value.shape[axis])
        raise ValueError("no stored inputs")


@dataclass(frozen=True)
class FoundLSTM:
    """One LSTM (a single layer or a stack) found in a file.

    ``native`` follows the native contract of ``format``; ``read_options`` are
    the keyword options its ``to_canonical`` needs (Keras directions, TF1
    forget_bias, ...); ``spec_changes`` are spec fields the file's attributes set
    that the format's converter does not read (an ONNX HardSigmoid);
    ``run_options`` are the runtime's format options. ``parts`` are the single
    layers of a stack, selectable by name too. ``problem`` says why it cannot be
    converted (it is still listed). ``stored`` are run-time inputs the file
    stores; ``runner`` names the file family whose runner runs ``definition``
    (what the file defines: a node graph, a layer config, a module path) as the
    file itself would, for ``--verify``.
    """

    name: str
    format: str
    native: Any
    source: str  # the file
    kind: str  # how the file holds it, e.g. "legacy Keras HDF5 model"
    read_options: dict[str, Any] = field(default_factory=dict)
    run_options: dict[str, Any] = field(default_factory=dict)
    biases: str = "one (4H)"
    notes: tuple[str, ...] = ()
    parts: tuple[FoundLSTM, ...] = ()
    problem: str | None = None
    spec_changes: dict[str, Any] = field(default_factory=dict)
    stored: StoredInputs | None = None
    runner: str | None = None
    definition: Any = None

    def canonical(self) -> LSTMWeights:
        """The canonical weights; a problem or a shape disagreement raises FileFormatError."""
        if self.problem:
            raise FileFormatError(self.source, f"LSTM {self.name!r}: {self.problem}")
        try:
            weights = to_canonical(self.native, self.format, **self.read_options)
            if self.spec_changes:
                weights = LSTMWeights(weights.spec.replace(**self.spec_changes), weights.cells)
            return weights
        except FileFormatError:
            raise
        except ConversionError as exc:
            raise FileFormatError(self.source, f"LSTM {self.name!r}: {exc}") from exc
        except Exception as exc:  # a converter's raw error on odd arrays: still this file's fault
            raise FileFormatError(self.source, f"LSTM {self.name!r}: cannot be read as "
                                               f"{self.format} weights ({type(exc).__name__}: "
                                               f"{exc})") from exc

    @property
    def spec(self) -> LSTMSpec:
        return self.canonical().spec


def file_path(value: object) -> Path:
    """``value`` as a Path; anything but a str or os.PathLike is a ConversionError naming it."""
    try:
        text = os.fspath(value)  # type: ignore[call-overload]
    except Exception:  # not path-like, or a __fspath__ that raises
        text = None
    if isinstance(text, str) and "\0" not in text:
        return Path(text)
    raise ConversionError(f"path: got {type(value).__name__}, expected a str or os.PathLike "
                          "without NUL characters")


def select(
    found: Sequence[FoundLSTM], layer: str | None, path: str | os.PathLike[str]
) -> FoundLSTM:
    """The LSTM ``layer`` names (a listed LSTM or one layer of a stack), or the only one."""
    if isinstance(found, (str, bytes)) or not isinstance(found, Sequence) or not all(
        isinstance(f, FoundLSTM) for f in found
    ):
        raise ConversionError(f"found: got {type(found).__name__}, expected a list of "
                              "FoundLSTM (what files.read returns)")
    if layer is not None and not isinstance(layer, str):
        raise ConversionError(f"layer: got {type(layer).__name__}, expected a str or None")
    if not found:
        raise FileFormatError(path, "no LSTM found in this file")
    if layer is None:
        if len(found) > 1:
            names = listed([f.name for f in found])
            raise FileFormatError(path, f"{counted(found, '{n} {cell}{s}')} found ({names}); "
                                        "choose one with --layer NAME (or convert them all "
                                        "with --all)")
        return found[0]
    for candidate in found:
        if candidate.name == layer:
            return candidate
    for candidate in found:
        for part in candidate.parts:
            if part.name == layer:
                return part
    known = [f.name for f in found] + [p.name for f in found for p in f.parts]
    raise FileFormatError(path, f"no LSTM named {shown(layer)}; found {listed(known)}")


# ---------------------------------------------------------------- checkpoints


def counted(found: Sequence[FoundLSTM], each: str) -> str:
    """The networks found, counted per cell type: ``each`` formats one count
    (``"{n} {cell}{s}"`` gives "4 GRUs", or "2 LSTMs, 1 GRU" for a mix)."""
    grus = sum(item.read_options.get("cell") == "gru" for item in found)
    counts = [("LSTM", len(found) - grus), ("GRU", grus)]
    listed_counts = [each.format(n=n, cell=cell, s="" if n == 1 else "s")
                     for cell, n in counts if n]
    return ", ".join(listed_counts) or each.format(n=0, cell="LSTM", s="s")


def checkpoint_prefix(path: Path) -> Path | None:
    """The TF checkpoint prefix ``path`` names (prefix, prefix.index, or a folder), or None."""
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file() and state.stat().st_size < 2**20:
            for line in state.read_text(errors="replace").splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    prefix = Path(name) if os.path.isabs(name) else path / name
                    return prefix
        indexes = sorted(path.glob("*.index"))
        return indexes[-1].with_suffix("") if len(indexes) == 1 else None
    if path.name.endswith(".index") and path.is_file():
        return path.with_name(path.name[: -len(".index")])
    if Path(f"{path}.index").is_file():
        return path
    return None


# ---------------------------------------------------------------- writing


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def refuse_output(
    output: Path, inputs: Sequence[Path], force: bool, existing: Sequence[Path]
) -> None:
    """Never the input; an existing output (a dangling link too) only with ``force``."""
    for path in inputs:
        for target in [output, *existing]:
            if same_file(target, path):
                raise FileFormatError(output, "is the input file; refusing to write over it")
    if output.is_dir():
        raise FileFormatError(output, "is a folder; name the output file")
    ancestor = _existing_ancestor(output.parent)
    if not ancestor.is_dir():  # a missing parent is made at writing time; a file is no folder
        raise FileFormatError(output, f"{str(ancestor)!r} is not a folder")
    for target in existing:
        if target.is_symlink() and not target.exists() and not force:
            raise FileFormatError(target, f"is a symbolic link to {os.readlink(target)!r}, which "
                                          "does not exist; pass --force to replace the link")
    present = [p for p in existing if p.exists()]
    if present and not force:
        raise FileFormatError(present[0], "exists; pass --force to replace it")


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def parent_folders(output: Path) -> Iterator[None]:
    """Make ``output``'s missing folders for the write, and remove the ones made here if the
    write fails, so an exit-2 path leaves nothing behind."""
    missing = []
    folder = output.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for made in missing:  # innermost first; only while still empty
            with contextlib.suppress(OSError):
                made.rmdir()
        raise


TEMPORARY_PREFIX = ".tmp-"


def temporary_name(path: Path) -> Path:
    """A fresh hidden name in ``path``'s folder that keeps its ending (Keras checks it) and
    names this process, so a later run can tell a killed run's leftovers from live ones."""
    return path.with_name(f"{TEMPORARY_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


# Our own temporaries only: temporary_name's 8 hex digits, or mkdtemp's 8 characters.
_OUR_TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"([0-9]{1,10})-[0-9a-z_]{8}-.")


def remove_stale_temporaries(folder: Path, name: str | None = None) -> None:
    """Delete every temporary left in ``folder`` by a run that no longer exists.

    Whatever its target name (``name`` is accepted for older callers and not used):
    a run killed while writing ``a.onnx`` leaves ``.tmp-<pid>-<8>-a.onnx``, and the
    next run in that folder may well write ``b.onnx``. Only names of our own pattern
    whose process is gone are touched; a live run's temporaries stay.
    """
    with contextlib.suppress(OSError):
        for item in folder.iterdir():
            found = _OUR_TEMPORARY.match(item.name)
            if found and not _alive(int(found[1])):
                with contextlib.suppress(OSError):
                    if item.is_dir() and not item.is_symlink():
                        shutil.rmtree(item)
                    else:
                        item.unlink()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or beyond any pid
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def publish(temporary: Path, path: Path, replace: bool) -> None:
    """Give ``temporary`` the name ``path``: replacing only when asked, else exactly one of
    several racing writers wins (a hard link fails if the name exists, even a dangling link)."""
    if replace:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError as exc:
        raise FileFormatError(path, "exists (written meanwhile by another run?); pass --force "
                                    "to replace it") from exc
    except OSError:  # a file system without hard links: claim the name exclusively instead
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError as exc:
            raise FileFormatError(path, "exists (written meanwhile by another run?); pass "
                                        "--force to replace it") from exc
        os.replace(temporary, path)
        return
    temporary.unlink()


@contextlib.contextmanager
def atomic_output(path: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success publish it under ``path``.

    Without ``replace`` an existing ``path`` is never overwritten (see :func:`publish`).
    """
    remove_stale_temporaries(path.parent, path.name)
    temporary = temporary_name(path)
    try:
        yield temporary
        if not temporary.exists():
            raise FileFormatError(path, "the writer produced no file")
        publish(temporary, path, replace)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def describe_spec(spec: LSTMSpec) -> dict[str, str]:
    """The facts ``inspect`` prints for one spec."""
    cell = spec.cell.upper() + ("" if spec.reset_after or spec.cell != "gru"
                                else " (reset_after=False)")
    return {
        "cell": cell,
        "layers": str(spec.layers),
        "directions": str(spec.directions),
        "I": str(spec.input_size),
        "H": str(spec.units),
        "projection": str(spec.projection_size) if spec.projection_size else "-",
        "peepholes": "yes" if spec.peepholes else "-",
    }


def refuse_cells(weights: Any, writer: str) -> None:
    """A file writer that builds LSTM layers or nodes only refuses other cells by name."""
    if weights.spec.cell != "lstm":
        from equivalence.errors import UnsupportedFeatureError

        raise UnsupportedFeatureError(writer, f"cell={weights.spec.cell}",
                                      "convert it to torch (.pt), or use the weights API")
