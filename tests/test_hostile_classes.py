"""Classes of hostile files (issue 18 section 1): one corpus per class, every case refused.

Duplicate names (ONNX initializers, torch zip members and root folders), blow-ups
(pickles whose keys grow, TorchScript code members of many MB), failures that must still
exit 2 (device files, ``--layer`` naming nothing), and names long enough to flood the
terminal. For every case: exit status 2, at most 10 s, at most 20 KB of output, the
input's bytes unchanged, nothing written.
"""

from __future__ import annotations

import hashlib
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="hostile-file tests need the main environment")

from tests.file_helpers import leftovers, run_cli  # noqa: E402

pytestmark = [pytest.mark.cpu, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
SECONDS = 10
MAX_OUTPUT = 20_000
I, H = 3, 4  # noqa: E741


def digest(path: Path) -> str:
    if path.is_dir():
        return "".join(digest(p) for p in sorted(path.iterdir()) if p.is_file())
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "not a file"


def refused(capsys, path: Path, out_dir: Path, *extra: str, phrase: str = "") -> None:
    """inspect and convert ``path``: both exit 2, fast, briefly, input untouched, nothing
    written."""
    before = digest(path)
    output = out_dir / "out.pt"
    runs = [("inspect", path, *extra[:0]), ("convert", path, "--to", "torch", "-o", output,
                                            *extra)]
    for argv in runs:
        start = time.perf_counter()
        code, out, err = run_cli(capsys, *argv)
        elapsed = time.perf_counter() - start
        assert code == 2, (path, argv[0], code, err[:500])
        assert elapsed < SECONDS, (path, argv[0], elapsed)
        assert len(out) + len(err) <= MAX_OUTPUT, (path, argv[0], len(out) + len(err))
        assert "Traceback" not in err, err[:2000]
        assert phrase in err, (phrase, err[:500])
    assert digest(path) == before, path
    assert not output.exists() and leftovers(out_dir) == []


@pytest.fixture(scope="module")
def lstm():
    torch.manual_seed(0)
    return torch.nn.LSTM(I, H, batch_first=True)


def rewrite_zip(source: Path, target: Path, members) -> Path:
    """A zip at ``target`` holding ``members(list of (name, bytes) of source)``."""
    with zipfile.ZipFile(source) as archive:
        items = [(n, archive.read(n)) for n in archive.namelist()]
    with zipfile.ZipFile(target, "w") as out:
        for name, data in members(items):
            out.writestr(name, data)
    return target


# ---------------------------------------------------------------- duplicate names


def test_onnx_duplicate_initializers_refused_by_name(tmp_path, capsys):
    import onnx

    from equivalence.canonical import random_weights
    from equivalence.files.onnx.model import build_model
    from equivalence.spec import LSTMSpec

    model = build_model(random_weights(LSTMSpec(I, H), np.random.default_rng(0)))
    first = model.graph.initializer[0]
    twin = onnx.TensorProto()
    twin.CopyFrom(first)
    values = onnx.numpy_helper.to_array(first) + 1.0
    twin.CopyFrom(onnx.numpy_helper.from_array(values.astype(values.dtype), first.name))
    for where, name in ((0, "first.onnx"), (len(model.graph.initializer), "last.onnx")):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        copy.graph.initializer.insert(where, twin)
        onnx.save(copy, str(tmp_path / name))
        refused(capsys, tmp_path / name, tmp_path, phrase="initializers named")


def test_torch_zip_duplicate_members_and_two_roots(lstm, tmp_path, capsys):
    seed = tmp_path / "seed.pt"
    torch.save(lstm.state_dict(), seed)

    def duplicate(items):
        data = next(item for item in items if "/data/" in item[0])
        return [*items, (data[0], bytes(len(data[1])))]

    def two_roots(items):
        return [*items, *((("other/" + n.split("/", 1)[1]), d) for n, d in items)]

    def moved_storage(items):
        return [(("other/" + n.split("/", 1)[1]) if "/data/" in n else n, d) for n, d in items]

    cases = []
    for name, change in (("dup.pt", duplicate), ("roots.pt", two_roots),
                         ("moved.pt", moved_storage)):
        with pytest.warns(UserWarning, match="Duplicate name") if change is duplicate else \
                _nothing():
            cases.append(rewrite_zip(seed, tmp_path / name, change))
    for case in cases:
        refused(capsys, case, tmp_path)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---------------------------------------------------------------- blow-ups


def _pickle_zip(seed: Path, target: Path, payload: bytes) -> Path:
    return rewrite_zip(seed, target, lambda items: [
        (n, payload if n.endswith("/data.pkl") else d) for n, d in items])


def test_pickles_whose_keys_or_objects_grow(lstm, tmp_path, capsys):
    seed = tmp_path / "seed.pt"
    torch.save(lstm.state_dict(), seed)
    # keys: a 100k-character key nested 90 deep, shared: the dotted keys would be 9 MB each
    deep: dict = {"x" * 100_000: 0}
    for _ in range(90):
        deep = {"k" * 100_000: [deep, deep]}
    # objects: a list that holds itself 2**20 times over through the memo
    wide: list = [0]
    for _ in range(20):
        wide = [wide, wide]
    for name, tree in (("keys.pt", deep), ("memo.pt", wide)):
        refused(capsys, _pickle_zip(seed, tmp_path / name, pickle.dumps(tree, protocol=2)),
                tmp_path)


def test_torchscript_code_member_of_many_megabytes(lstm, tmp_path, capsys):
    seed = tmp_path / "seed.jit"
    # a submodule: its class's code is read for its Final constants
    torch.jit.save(torch.jit.script(torch.nn.Sequential(lstm)), str(seed))

    def padded(items):
        # every code member: in a process that scripted an LSTM before, torch mangles the
        # class name and its code moves to another member
        return [(n, d + b"\n#" + b"x" * (20 * 2**20) if "/code/" in n and n.endswith(".py")
                 else d) for n, d in items]

    refused(capsys, rewrite_zip(seed, tmp_path / "big.jit", padded), tmp_path,
            phrase="over the 1,048,576-byte cap")


# ---------------------------------------------------------------- exit 2 for every failure


def test_device_files_and_layer_naming_nothing(lstm, tmp_path, capsys):
    refused(capsys, Path("/dev/urandom"), tmp_path, phrase="not a regular file")
    refused(capsys, Path("/dev/null"), tmp_path, phrase="not a regular file")
    seed = tmp_path / "seed.pt"
    torch.save(lstm.state_dict(), seed)
    before = digest(seed)
    code, out, err = run_cli(capsys, "convert", seed, "--to", "torch", "-o", tmp_path / "o.pt",
                             "--layer", "no-such-layer")
    assert code == 2 and "no-such-layer" in err and len(out + err) < MAX_OUTPUT, err
    assert digest(seed) == before and not (tmp_path / "o.pt").exists()


# ---------------------------------------------------------------- output bounded


def test_long_names_are_capped_when_echoed(tmp_path, capsys):
    import onnx

    from equivalence.canonical import random_weights
    from equivalence.files.onnx.model import build_model
    from equivalence.spec import LSTMSpec

    model = build_model(random_weights(LSTMSpec(I, H), np.random.default_rng(0)))
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    node.name = "n" * 200_000
    node.input[1] = "w" * 100_000  # names nothing: the refusal names the node and the input
    onnx.save(model, str(tmp_path / "long.onnx"))
    refused(capsys, tmp_path / "long.onnx", tmp_path)
    state = {("p" * 100_000) + f".weight_ih_l{k}": torch.zeros(4 * H, I) for k in (0, 3)}
    torch.save(state, tmp_path / "long.pt")
    refused(capsys, tmp_path / "long.pt", tmp_path)


# ---------------------------------------------------------------- TF1 index protos


def _negative_edits(index: Path) -> list[bytes]:
    """The seed's entries rewritten with one negative dimension, size or slice each."""
    from tensorflow.core.protobuf import tensor_bundle_pb2

    from equivalence.files.tf1.index import _table_entries, table_bytes

    entries = list(_table_entries(index.read_bytes(), index))
    cases = []
    for change in ("dim", "huge_dim", "size", "slice"):
        edited, done = [], False
        for key, value in entries:
            if key and not done:  # the first tensor's entry (b"" is the bundle header)
                done = True
                entry = tensor_bundle_pb2.BundleEntryProto.FromString(value)
                if change == "dim":
                    entry.shape.dim[0].size = -1
                elif change == "huge_dim":
                    entry.shape.dim[0].size = -(2**40)
                elif change == "size":
                    entry.size = -8
                else:
                    entry.slices.add().extent.add(start=-3, length=-1)
                value = entry.SerializeToString()
            edited.append((key, value))
        cases.append(table_bytes(edited))
    return cases


def test_tf1_negative_dimensions_and_slices_refused_before_tensorflow(tmp_path, capsys):
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    code, _, err = run_cli(capsys, "convert", _torch_seed(tmp_path), "--to", "tf1", "-o",
                           seed_dir / "ckpt")
    assert code == 0, err
    # the rebuilt table itself is faithful: the seed's entries, re-laid, still read
    from equivalence.files.tf1.index import _table_entries, table_bytes
    index = seed_dir / "ckpt.index"
    assert list(_table_entries(table_bytes(list(_table_entries(index.read_bytes(), index))),
                               index)) == list(_table_entries(index.read_bytes(), index))
    for number, change in enumerate(_negative_edits(index)):
        case = tmp_path / f"case{number}"
        case.mkdir()
        for member in seed_dir.iterdir():
            data = member.read_bytes()
            (case / member.name).write_bytes(change if member.name == "ckpt.index" else data)
        refused(capsys, case / "ckpt", tmp_path, phrase="index entry")


def _torch_seed(folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / "seed.pt"
    torch.save(torch.nn.LSTM(I, H).state_dict(), path)
    return path


# ---------------------------------------------------------------- Keras cycles


def _keras_with_inbound(folder: Path, name: str, rewire: dict[str, str]) -> Path:
    """A functional .keras file whose config says layer -> the layer now feeding it."""
    import json
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    inputs = keras.Input((None, I))
    x = keras.layers.Dropout(0.1, name="d1")(inputs)
    x = keras.layers.Dropout(0.1, name="d2")(x)
    x = keras.layers.LSTM(H, return_sequences=True, name="a")(x)
    x = keras.layers.LSTM(H, return_sequences=True, name="b")(x)
    seed = folder / f"seed-{name}.keras"
    keras.Model(inputs, x).save(seed)

    def edit(items):
        out = []
        for member, data in items:
            if member == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["name"] in rewire:
                        history = layer["inbound_nodes"][0]["args"][0]["config"]
                        history["keras_history"][0] = rewire[layer["name"]]
                data = json.dumps(config).encode()
            out.append((member, data))
        return out

    return rewrite_zip(seed, folder / name, edit)


def test_keras_layers_feeding_themselves_or_each_other(tmp_path, capsys):
    for name, rewire in (("self.keras", {"b": "b"}), ("pair.keras", {"a": "b"}),
                         ("dropouts.keras", {"d1": "d2"})):
        refused(capsys, _keras_with_inbound(tmp_path, name, rewire), tmp_path, phrase="cycle")


# ---------------------------------------------------------------- HDF5 filters unavailable


def test_hdf5_dataset_through_an_unavailable_filter(tmp_path, capsys):
    """HDF5 skips an unavailable optional filter and returns the stored bytes as values."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import h5py
    import keras

    seed = tmp_path / "seed.h5"
    keras.Sequential([keras.Input((None, I)), keras.layers.LSTM(H)]).save(seed)
    with h5py.File(seed, "a") as handle:
        names: list[str] = []
        handle.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                          and "recurrent" in n else None)
        data, (parent, key) = handle[names[0]][()], names[0].rsplit("/", 1)
        del handle[parent][key]
        handle[parent].create_dataset(key, data=data, compression="lzf", chunks=data.shape)
    raw = seed.read_bytes()
    assert raw.count(b"\x00\x7d") == 1  # lzf's filter id 32000, once: the pipeline message
    case = tmp_path / "nofilter.h5"
    case.write_bytes(raw.replace(b"\x00\x7d", b"\x7b\x7d"))  # filter 32123: registered nowhere
    refused(capsys, case, tmp_path, phrase="not available here")


def test_thousands_of_lstms_and_none_chosen(tmp_path, capsys):
    parts = (("weight_ih_l0", (4 * H, I)), ("weight_hh_l0", (4 * H, H)))
    state = {f"m{k}.{n}": torch.zeros(s) for k in range(3000) for n, s in parts}
    seed = tmp_path / "many.pt"
    torch.save(state, seed)
    before = digest(seed)
    start = time.perf_counter()
    code, out, err = run_cli(capsys, "convert", seed, "--to", "torch", "-o", tmp_path / "o.pt")
    assert code == 2 and "3000 LSTMs" in err, err[:500]
    assert time.perf_counter() - start < SECONDS and len(out + err) <= MAX_OUTPUT
    assert digest(seed) == before and not (tmp_path / "o.pt").exists()
    assert leftovers(tmp_path) == []
    assert "choose one with --layer NAME" in err and "and 2,990 more" in err
    code, out, err = run_cli(capsys, "inspect", seed)  # a listing, bounded: the table's first 100
    assert code == 0 and len(out + err) <= MAX_OUTPUT and "and 2,900 more" in out
