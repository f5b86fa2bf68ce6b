"""What every file reader and writer shares: the found-LSTM record, errors, sniffing, safe writes.

A reader turns a file into a list of :class:`FoundLSTM`: each holds native
weights in the project's native contract (what :mod:`equivalence.formats`
reads), the reader options that interpret them, and the facts ``inspect``
prints. A writer takes canonical weights and writes one file, always through
:func:`atomic_output`, so a failed write leaves nothing behind and an existing
file is replaced only at the very end.

Only numpy and equivalence modules are imported here; frameworks are imported
by the reader or writer that needs them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..canonical import LSTMWeights
from ..convert import to_canonical
from ..errors import ConversionError
from ..spec import LSTMSpec


class FileFormatError(ConversionError):
    """A file that cannot be read or written as asked; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class FoundLSTM:
    """One LSTM (a single layer or a stack) found in a file.

    ``native`` follows the native contract of ``format``; ``read_options`` are
    the keyword options its ``to_canonical`` needs (Keras directions, TF1
    forget_bias, ...); ``run_options`` are the runtime's format options.
    ``parts`` are the single layers of a stack, selectable by name too.
    ``problem`` says why it cannot be converted (it is still listed).
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

    def canonical(self) -> LSTMWeights:
        """The canonical weights; a problem or a shape disagreement raises FileFormatError."""
        if self.problem:
            raise FileFormatError(self.source, f"LSTM {self.name!r}: {self.problem}")
        try:
            return to_canonical(self.native, self.format, **self.read_options)
        except FileFormatError:
            raise
        except ConversionError as exc:
            raise FileFormatError(self.source, f"LSTM {self.name!r}: {exc}") from exc

    @property
    def spec(self) -> LSTMSpec:
        return self.canonical().spec


def select(
    found: Sequence[FoundLSTM], layer: str | None, path: str | os.PathLike[str]
) -> FoundLSTM:
    """The LSTM ``layer`` names (a listed LSTM or one layer of a stack), or the only one."""
    if not found:
        raise FileFormatError(path, "no LSTM found in this file")
    if layer is None:
        if len(found) > 1:
            names = ", ".join(repr(f.name) for f in found)
            raise FileFormatError(
                path, f"{len(found)} LSTMs found ({names}); choose one with --layer NAME"
            )
        return found[0]
    for candidate in found:
        if candidate.name == layer:
            return candidate
    for candidate in found:
        for part in candidate.parts:
            if part.name == layer:
                return part
    known = [f.name for f in found] + [p.name for f in found for p in f.parts]
    raise FileFormatError(path, f"no LSTM named {layer!r}; found {known}")


# ---------------------------------------------------------------- sniffing

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"


def checkpoint_prefix(path: Path) -> Path | None:
    """The TF checkpoint prefix ``path`` names (prefix, prefix.index, or a folder), or None."""
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
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


def detect_kind(path: Path) -> str:
    """The file kind from its content: keras_h5, keras_zip, tf1, torch, safetensors, onnx, npz."""
    if checkpoint_prefix(path) is not None:
        return "tf1"
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            raise FileFormatError(
                path, "a SavedModel folder; save the model as .keras/.h5 or a checkpoint instead"
            )
        if len(list(path.glob("*.index"))) > 1:
            raise FileFormatError(path, "a folder with several checkpoints and no 'checkpoint' "
                                        "file; name one by its prefix (PREFIX of PREFIX.index)")
        raise FileFormatError(path, "a folder with no TF checkpoint (no 'checkpoint' or .index)")
    if not path.exists():
        raise FileFormatError(path, "no such file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise FileFormatError(path, f"cannot be opened: {exc.strerror or exc}") from exc
    if not head:
        raise FileFormatError(path, "empty file")
    if head.startswith(HDF5_MAGIC):
        return "keras_h5"
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 10**9:
        return "safetensors"
    if head[:1] == b"\x80" or path.suffix in (".pt", ".pth", ".bin"):
        return "torch"  # a legacy (non-zip) torch.save pickle
    if path.suffix == ".onnx" or head[:1] == b"\x08":  # ModelProto field 1, ir_version
        return "onnx"
    raise FileFormatError(path, "unrecognized file type (not HDF5, zip, safetensors, ONNX, "
                                "a torch file or a TF checkpoint)")


def _zip_kind(path: Path) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise FileFormatError(path, f"corrupted or truncated zip archive ({exc})") from exc
    if "config.json" in names and "model.weights.h5" in names:
        return "keras_zip"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    if any(n.endswith(".npy") for n in names):
        return "npz"
    raise FileFormatError(path, f"a zip archive that is not a .keras, torch or .npz file "
                                f"(entries: {names[:5]})")


# ---------------------------------------------------------------- writing


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def refuse_output(
    output: Path, inputs: Sequence[Path], force: bool, existing: Sequence[Path]
) -> None:
    """Never the input; an existing output only with ``force``; the folder must exist."""
    for path in inputs:
        for target in [output, *existing]:
            if same_file(target, path):
                raise FileFormatError(output, "is the input file; refusing to write over it")
    if output.is_dir():
        raise FileFormatError(output, "is a folder; name the output file")
    if not output.parent.is_dir():
        raise FileFormatError(output, f"folder {str(output.parent)!r} does not exist")
    present = [p for p in existing if p.exists()]
    if present and not force:
        raise FileFormatError(present[0], "exists; pass --force to replace it")


def temporary_name(path: Path) -> Path:
    """A fresh name in ``path``'s folder that keeps its ending (Keras checks .keras/.weights.h5)."""
    return path.with_name(f".tmp-{secrets.token_hex(4)}-{path.name}")


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path`` in one rename."""
    temporary = temporary_name(path)
    try:
        yield temporary
        if not temporary.exists():
            raise FileFormatError(path, "the writer produced no file")
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def describe_spec(spec: LSTMSpec) -> dict[str, str]:
    """The facts ``inspect`` prints for one spec."""
    return {
        "layers": str(spec.layers),
        "directions": str(spec.directions),
        "I": str(spec.input_size),
        "H": str(spec.units),
        "projection": str(spec.projection_size) if spec.projection_size else "-",
        "peepholes": "yes" if spec.peepholes else "-",
    }
