"""The one registry of file formats: what each reads and writes, and how a file is recognized.

Everything that dispatches on a file's kind or family derives from the rows
here: :func:`detect_kind`, the reader per kind, ``--from``/``--to`` choices,
the writer per family, output-name checks, which stored run-time inputs a
family can carry, and the runner that runs a file's LSTM as the file defines
it for ``--verify``. Adding a file format is one module (reader and/or writer)
plus one row below. Functions are named ``"module:function"`` and imported on
first use, so naming a format loads no framework.

Readers take ``(path, **options)`` and accept whichever of :data:`READ_OPTIONS`
their signature names. Writers take ``(path, weights, job)`` (:class:`WriteJob`)
and return the lines to print. Runners take ``(found, spec, options)`` and
return a :class:`~equivalence.files.runners.Side`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from equivalence.errors import ConversionError, brief
from equivalence.files._base import (
    FileFormatError,
    FoundLSTM,
    StoredInputs,
    checkpoint_prefix,
    file_path,
)
from equivalence.files.madmom import looks_like_madmom
from equivalence.files.neoml.archive import looks_like_network

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
READ_OPTIONS = ("forget_bias",)


@dataclass(frozen=True)
class FileKind:
    """One way a file can hold LSTMs, recognized from its content."""

    name: str
    family: str
    reader: str  # "module:function"
    description: str  # "cannot be read as <description>"
    sniff: Callable[[Path, bytes], bool] | None = None  # the first bytes (and the name)
    zip_members: Callable[[Sequence[str]], bool] | None = None  # a zip's member names
    runner: str | None = None  # runs a found LSTM as the file defines it (for --verify)
    precheck: str | None = None  # (path) -> None: checks before the reader touches the file
    uses_torch: bool = False


@dataclass(frozen=True)
class FileFamily:
    """What a user names with ``--from``/``--to``: reads some kinds, maybe writes one."""

    name: str
    kinds: tuple[str, ...]  # read; the first is assumed when the content is not recognized
    formats: tuple[str, ...] | None = None  # keep only LSTMs of these formats (cudnn)
    writer: str | None = None
    output_help: str = ""
    check_output: str | None = None  # (path) -> None, raising FileFormatError
    check_weights: str | None = None  # (weights) -> None: what the writer cannot represent
    output_files: str | None = None  # (path) -> the files the output consists of
    holds_stored: frozenset[str] = frozenset()  # stored inputs the writer carries
    runs_itself: bool = False  # its written files have a runner (verify needs no runtime)
    uses_torch: bool = False
    uses_tensorflow: bool = False  # its writer imports TensorFlow (Keras; NeoML runs the source)


@dataclass
class WriteJob:
    """What a writer may need beyond the weights."""

    found: FoundLSTM
    replace: bool = False  # --force: an existing output may be replaced
    stored: StoredInputs | None = None  # stored inputs to carry into the output
    forget_bias: float = 1.0  # TF1 output cells' forget_bias
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # runner options (run_torchscript)
    with_states: bool = False  # --with-states: initial states (and lengths) are inputs


def _safetensors(path: Path, head: bytes) -> bool:
    return (len(head) >= 9 and head[8:9] == b"{"
            and int.from_bytes(head[:8], "little") < 10**9)


def _legacy_torch(path: Path, head: bytes) -> bool:
    return head[:1] == b"\x80" or path.suffix in (".pt", ".pth", ".bin")


def _onnx(path: Path, head: bytes) -> bool:
    return path.suffix == ".onnx" or head[:1] == b"\x08"  # ModelProto field 1, ir_version


def _coreml(path: Path) -> bool:
    # top-level protobuf fields only, bounded
    from equivalence.files.coreml.model import coreml_facts

    return coreml_facts(path) is not None


def _archive_root_has(names: Sequence[str], member: str) -> bool:
    return any(n.endswith(member) and n.count("/") <= 1 for n in names)


KINDS: tuple[FileKind, ...] = (
    FileKind("tf1", "tf1", "equivalence.files.tf1.checkpoint:read_checkpoint", "a TF checkpoint"),
    FileKind("keras_h5", "keras", "equivalence.files.keras.read:read_keras_h5", "a Keras HDF5 file",
             sniff=lambda path, head: head.startswith(HDF5_MAGIC),
             runner="equivalence.files.keras.states:runner"),
    FileKind("keras_zip", "keras", "equivalence.files.keras.read:read_keras_zip",
             "a Keras 3 .keras archive", runner="equivalence.files.keras.states:runner",
             zip_members=lambda names: "config.json" in names and "model.weights.h5" in names),
    FileKind("torchscript", "torch", "equivalence.files.torch.torchscript:read_torchscript",
             "a TorchScript archive", uses_torch=True,
             runner="equivalence.files.torch.torchscript:runner",
             zip_members=lambda names: _archive_root_has(names, "/data.pkl")
             and any("/code/" in n for n in names)),
    FileKind("torch", "torch", "equivalence.files.torch.state_dict:read_torch", "a torch.save file",
             uses_torch=True, sniff=_legacy_torch,
             zip_members=lambda names: _archive_root_has(names, "/data.pkl")),
    FileKind("safetensors", "torch", "equivalence.files.torch.state_dict:read_safetensors",
             "a safetensors file", uses_torch=True, sniff=_safetensors),
    FileKind("onnx", "onnx", "equivalence.files.onnx.model:read_onnx", "an ONNX model", sniff=_onnx,
             runner="equivalence.files.onnx.run:runner"),
    FileKind("coreml", "coreml", "equivalence.files.coreml.model:read_coreml", "a CoreML model",
             sniff=lambda path, head: head[:1] == b"\x08" and (path.suffix == ".mlmodel"
                                                                or _coreml(path))),
    FileKind("npz", "neoml", "equivalence.files.neoml.case_file:read_case",
             "an equivalence case file",
             precheck="equivalence.files.limits:check_npz",
             zip_members=lambda names: any(n.endswith(".npy") for n in names)),
    FileKind("madmom", "madmom", "equivalence.files.madmom:read_madmom",
             "a madmom network pickle",
             sniff=looks_like_madmom),
    FileKind("neoml_net", "neoml", "equivalence.files.neoml.network:read_network_file",
             "a NeoML network file", sniff=lambda path, head: looks_like_network(head)),
)
# Content tests run in this order: safetensors' 8-byte header before the pickle guess.
SNIFF_ORDER = ("keras_h5", "safetensors", "neoml_net", "madmom", "torch", "coreml", "onnx")

FAMILIES: tuple[FileFamily, ...] = (
    FileFamily("keras", ("keras_h5", "keras_zip"),
               writer="equivalence.files.keras.write:write_keras",
               check_weights="equivalence.files.keras.write:check_writable",
               output_help="keras: .keras, .weights.h5 or .h5 (tf_keras)",
               check_output="equivalence.files.keras.write:keras_output_kind", runs_itself=True,
               uses_tensorflow=True),
    FileFamily("cudnn", ("keras_h5", "keras_zip"), formats=("cudnn",)),
    FileFamily("tf1", ("tf1",), writer="equivalence.files.tf1.checkpoint:write_job",
               output_help="tf1: a checkpoint prefix",
               output_files="equivalence.files.tf1.checkpoint:output_files_for"),
    FileFamily("torch", ("torch", "torchscript", "safetensors"), formats=("torch",),
               writer="equivalence.files.torch.state_dict:write_torch",
               output_help="torch: .pt or .safetensors", uses_torch=True),
    FileFamily("onnx", ("onnx",), writer="equivalence.files.onnx.model:write_onnx",
               check_weights="equivalence.files.onnx.model:check_writable",
               output_help="onnx: .onnx", runs_itself=True,
               holds_stored=frozenset({"initial_h", "initial_c", "sequence_lens"})),
    FileFamily("coreml", ("coreml",)),  # read only: nothing here writes or runs CoreML
    FileFamily("mlx", ("safetensors",), formats=("mlx",),
               writer="equivalence.files.mlx:write_mlx", output_help="mlx: .safetensors",
               check_output="equivalence.files.mlx:check_output"),
    FileFamily("madmom", ("madmom",)),  # read only: madmom.ml.nn LSTMLayers and GRULayers
    FileFamily("neoml", ("npz", "neoml_net"), writer="equivalence.files.runners:write_neoml_case",
               output_help="neoml: .npz",
               check_output="equivalence.files.runners:check_neoml_output", uses_tensorflow=True),
)

KIND = {row.name: row for row in KINDS}
FAMILY = {row.name: row for row in FAMILIES}
FROM_CHOICES = ("auto", *FAMILY)
TO_CHOICES = tuple(row.name for row in FAMILIES if row.writer)


def function(name: str) -> Callable[..., Any]:
    """The function a row names as ``"module:function"``."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def family(name: str) -> FileFamily:
    try:
        return FAMILY[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise ConversionError(f"file format {brief(name)} is unknown, expected one of "
                              f"{sorted(FAMILY)}") from None


# ---------------------------------------------------------------- recognizing


def detect_kind(path: Path) -> str:
    """The file kind from its content (a row name of :data:`KINDS`)."""
    path = file_path(path)
    try:
        return _detect_kind(path)
    except OSError as exc:  # a name too long, a loop of links: what stat says, as one message
        raise FileFormatError(path, f"cannot be opened: {exc.strerror or exc}") from exc


def _detect_kind(path: Path) -> str:
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
    if not path.is_file():
        raise FileFormatError(path, "not a regular file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise FileFormatError(path, f"cannot be opened: {exc.strerror or exc}") from exc
    if not head:
        raise FileFormatError(path, "empty file")
    if head.startswith(ZIP_MAGIC):
        return _zip_kind(path)
    for name in SNIFF_ORDER:
        sniff = KIND[name].sniff
        if sniff is not None and sniff(path, head):
            return name
    raise FileFormatError(path, "unrecognized file type (not HDF5, zip, safetensors, ONNX, "
                                "a torch file or a TF checkpoint)")


def _zip_kind(path: Path) -> str:
    from equivalence.files.limits import open_zip

    with open_zip(path, "zip archive") as archive:
        names = archive.namelist()
    for row in KINDS:
        if row.zip_members is not None and row.zip_members(names):
            return row.name
    raise FileFormatError(path, f"a zip archive that is not a .keras, torch, TorchScript or .npz "
                                f"file (entries: {names[:5]})")


# ---------------------------------------------------------------- reading


def read(path: str | os.PathLike[str], family_name: str | None = None,
         forget_bias: float = 1.0, debug: bool = False) -> list[FoundLSTM]:
    """Every LSTM in ``path``. ``family_name`` (a ``--from`` name) must match the content; it
    is also the fallback when the content is not recognized. Any failure inside a reader
    becomes one :class:`FileFormatError` naming the file (``debug`` prints its traceback)."""
    path = file_path(path)
    wanted = family(family_name) if family_name is not None else None
    try:
        kind = KIND[detect_kind(path)]
    except FileFormatError as exc:
        if wanted is None or "unrecognized" not in exc.problem:
            raise
        kind = KIND[wanted.kinds[0]]
    if wanted is not None and kind.name not in wanted.kinds:
        raise FileFormatError(path, f"--from {wanted.name}, but the content is a "
                                    f"{kind.family} file ({kind.name})")
    found = _run_reader(kind, path, {"forget_bias": forget_bias}, debug)
    if wanted is not None and wanted.formats is not None:
        found = [f for f in found if f.format in wanted.formats]
    return found


def _run_reader(kind: FileKind, path: Path, options: dict[str, Any], debug: bool
                ) -> list[FoundLSTM]:
    try:
        if kind.precheck is not None:
            function(kind.precheck)(path)
        reader = function(kind.reader)
        accepted = inspect.signature(reader).parameters
        return list(reader(path, **{k: v for k, v in options.items() if k in accepted}))
    except FileFormatError:
        raise
    except (Exception, RecursionError) as exc:  # a reader's raw error on a stranger's file
        if debug:
            traceback.print_exc()
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise FileFormatError(path, f"cannot be read as {kind.description}: "
                                    f"{type(exc).__name__}" + (f": {reason}" if reason else "")
                              ) from exc


def refuse_unwritable(target: str, weights: Any) -> None:
    """Raise what ``target``'s writer cannot represent in ``weights`` (its format's refusal,
    unless the family's writer carries more than its format, as ONNX node attributes do)."""
    row = family(target)
    if row.check_weights is not None:
        function(row.check_weights)(weights)
        return
    from equivalence.formats import get as get_format

    get_format(target).from_canonical(weights)


def uses_torch(path: Path, target: str) -> bool:
    """Whether reading ``path`` or writing ``target`` will import torch."""
    if FAMILY[target].uses_torch if target in FAMILY else False:
        return True
    try:
        return KIND[detect_kind(path)].uses_torch
    except FileFormatError:
        return False
