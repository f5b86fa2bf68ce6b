"""What a SavedModel may do when compare runs it: its graph screened before TensorFlow loads it.

Running a stranger's SavedModel runs its graph, and a TF graph can hold ops
that touch the world: read or write files by a path the graph names
(``ReadFile``, ``WriteFile``, dataset readers, table initializers from text
files, summary writers, debug dumps), call back into Python (``PyFunc``,
only where the loader's process registered one, but refused all the same) or
map memory from a file (``ImmutableConst``). None of these belongs in an
exported LSTM. Every graph and function of ``saved_model.pb`` is read (a
bounded protobuf parse, no op runs) and a file holding any such op is refused
by name before ``tf.saved_model.load`` sees it. The checkpoint ops a saver
uses on the model's own ``variables/`` folder (``RestoreV2``, ``SaveV2``,
``MergeV2Checkpoints``) are what loading is; they stay allowed.
"""

from __future__ import annotations

from pathlib import Path

from equivalence.errors import ConversionError

MAX_GRAPH_BYTES = 512 * 2**20
WORLD_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "ImmutableConst",
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "TextLineDataset", "TextLineDatasetV2", "TFRecordDataset", "TFRecordDatasetV2",
    "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2", "LoadDataset", "SaveDataset",
    "SaveDatasetV2", "DatasetToTFRecord", "CSVDataset", "CSVDatasetV2", "SqlDataset",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteRawProtoSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
    "WriteGraphSummary", "ImportEvent", "FlushSummaryWriter",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount",
    "DebugNumericSummary", "DebugNumericSummaryV2",
    "Save", "SaveSlices", "Restore", "RestoreSlice",
})


def screen(folder: Path) -> None:
    """Refuse the SavedModel at ``folder`` if any of its graphs holds a world-touching op."""
    from tensorflow.core.protobuf import saved_model_pb2

    graph_file = folder / "saved_model.pb"
    size = graph_file.stat().st_size
    if size > MAX_GRAPH_BYTES:
        raise ConversionError(f"{graph_file}: {size} bytes, more than the {MAX_GRAPH_BYTES} "
                              "a SavedModel graph may have here")
    model = saved_model_pb2.SavedModel()
    try:
        model.ParseFromString(graph_file.read_bytes())
    except Exception as exc:  # a malformed protobuf: one message, nothing loaded
        raise ConversionError(f"{graph_file}: not a SavedModel protobuf ({exc})") from exc
    found = sorted(ops_in(model) & WORLD_OPS)
    if found:
        raise ConversionError(f"{folder}: the SavedModel's graph holds {', '.join(found[:5])}, "
                              "which read or write files or call Python; compare does not run "
                              "such a graph")


def ops_in(model: object) -> set[str]:
    """Every op type in every graph and function of a parsed SavedModel."""
    ops: set[str] = set()
    for meta in model.meta_graphs:  # type: ignore[attr-defined]
        graph = meta.graph_def
        ops.update(node.op for node in graph.node)
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
    return ops
