"""Files from strangers: a corpus of damaged and malicious files, generated here for every reader.

Each valid seed file is made by its real framework (Keras, torch, TorchScript, safetensors,
ONNX, TF checkpoints, case files). From each: truncations, bit flips, header and size edits;
then files crafted to attack one reader (HDF5 external storage and links, declared sizes far
beyond the file, code in pickles, ONNX external data outside the folder, zip bombs, names that
are not UTF-8, deep JSON...). Every hostile file must give exit status 2, one line naming the
file, no traceback, nothing written, in bounded time and memory (measured with tracemalloc,
which sees numpy's allocations). A bit flip that lands in weight values may still read: then
the run must succeed cleanly. Option values and outputs (racing runs, dangling links, killed
runs' temporaries) are checked too.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="real-file tests need the main environment")

from equivalence.cli import files as cli  # noqa: E402
from equivalence.files import FileFormatError, read  # noqa: E402
from equivalence.files._base import atomic_output, temporary_name  # noqa: E402
from tests.file_helpers import leftovers, one_error_line, run_cli  # noqa: E402

pytestmark = [
    pytest.mark.cpu,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file:UserWarning"),
]
SECONDS = 30  # per hostile file, on a loaded 2-core machine (typically well under 1 s)
PEAK_BYTES = 256 * 2**20  # a hostile file may not make a reader hold more than this
I, H = 3, 4  # noqa: E741 (input size and units)


# ---------------------------------------------------------------- seed files


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    """One small valid file of every kind the readers take."""
    import keras
    import onnx
    from safetensors.torch import save_file

    from equivalence.canonical import random_weights
    from equivalence.files.onnx.model import build_model
    from equivalence.spec import LSTMSpec

    folder = tmp_path_factory.mktemp("seeds")
    model = keras.Sequential([keras.Input((None, I)), keras.layers.LSTM(H, return_sequences=True)])
    model.save(folder / "model.h5")
    model.save(folder / "model.keras")
    model.save_weights(folder / "model.weights.h5")
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    torch.save(lstm.state_dict(), folder / "zip.pt")
    torch.save(lstm.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.jit.save(torch.jit.script(lstm), str(folder / "script.jit"))
    save_file({k: v.contiguous() for k, v in lstm.state_dict().items()},
              str(folder / "weights.safetensors"))
    weights = random_weights(LSTMSpec(I, H), np.random.default_rng(0))
    onnx.save(build_model(weights), str(folder / "model.onnx"))
    for target, name in (("tf1", "ckpt"), ("neoml", "case.npz")):  # the CLI's own writers
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["convert", str(folder / "zip.pt"), "--to", target,
                                  "-o", str(folder / name)])
        assert args.func(args) == 0
    network = Path(__file__).parent / "neoml_files" / "bidirectional.cnnarch"
    (folder / "network.cnnarch").write_bytes(network.read_bytes())  # NeoML's own Dnn.store
    return {p.name: p for p in folder.iterdir() if not p.name.startswith(("ckpt.", "checkpoint"))}


# ---------------------------------------------------------------- running one hostile file


class Tally:
    """Counts for the closing summary: tried, refused cleanly, read cleanly (a harmless flip)."""

    def __init__(self) -> None:
        self.tried = self.refused = self.read = 0
        self.messages: list[str] = []


TALLY = Tally()


def attempt(capsys, path: Path, out_dir: Path, must_refuse: bool, phrase: str = "") -> int:
    """inspect and convert ``path``: exit 2 with one line naming it (or a clean success),
    nothing written, within the time and memory bounds."""
    output = out_dir / "out.pt"
    TALLY.tried += 1
    tracemalloc.start()
    start = time.perf_counter()
    try:
        code_inspect, _, err_inspect = run_cli(capsys, "inspect", path)
        code, _, err = run_cli(capsys, "convert", path, "--to", "torch", "-o", output)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < SECONDS, (path, elapsed)
    assert peak < PEAK_BYTES, (path, peak)
    for status, text in ((code_inspect, err_inspect), (code, err)):
        assert "Traceback" not in text and "MemoryError" not in text, (path, text)
        assert status in (0, 2), (path, status, text)
    if code == 2:
        assert one_error_line(err, path), (path, err)
        assert phrase in err, (path, phrase, err)
        assert not output.exists() and leftovers(out_dir) == [], path
        TALLY.refused += 1
        TALLY.messages.append(err.strip())
    else:
        assert not must_refuse, (path, "was read, but must be refused")
        TALLY.read += 1
        output.unlink()
    return code


# ---------------------------------------------------------------- generic damage


def truncations(data: bytes) -> list[bytes]:
    return [data[: int(len(data) * f)] for f in (0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98)]


def bit_flips(data: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    for position in rng.integers(0, len(data), 8):
        damaged[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(damaged)


def header_edit(data: bytes) -> bytes:
    """Sizes and offsets in the first bytes set to all ones (a header claiming the world)."""
    return data[:8] + b"\xff" * min(56, max(0, len(data) - 8)) + data[64:]


SINGLE_FILES = ("model.h5", "model.keras", "model.weights.h5", "zip.pt", "legacy.pt",
                "script.jit", "weights.safetensors", "model.onnx", "case.npz", "network.cnnarch")


@pytest.mark.parametrize("seed_name", SINGLE_FILES)
def test_truncated_flipped_and_edited_files(seeds, seed_name, tmp_path, capsys):
    data = seeds[seed_name].read_bytes()
    suffix = seeds[seed_name].name
    for k, damaged in enumerate(truncations(data)):
        path = tmp_path / f"cut{k}-{suffix}"
        path.write_bytes(damaged)
        attempt(capsys, path, tmp_path, must_refuse=True)
    for k in range(6):
        path = tmp_path / f"flip{k}-{suffix}"
        path.write_bytes(bit_flips(data, k))
        attempt(capsys, path, tmp_path, must_refuse=False)
    path = tmp_path / f"header-{suffix}"
    path.write_bytes(header_edit(data))
    attempt(capsys, path, tmp_path, must_refuse=False)


def test_damaged_checkpoints(seeds, tmp_path, capsys):
    source = seeds["zip.pt"].parent
    index = (source / "ckpt.index").read_bytes()
    shard = next(source.glob("ckpt.data-*"))
    for k, (new_index, new_data) in enumerate(
            [(index, d) for d in truncations(shard.read_bytes())[:-1]]
            + [(i, shard.read_bytes()) for i in truncations(index)]
            + [(index, None)]):
        prefix = tmp_path / f"c{k}"
        Path(f"{prefix}.index").write_bytes(new_index)
        if new_data is not None:
            Path(f"{prefix}.{shard.name.split('.', 1)[1]}").write_bytes(new_data)
        attempt(capsys, prefix, tmp_path, must_refuse=True)


# ---------------------------------------------------------------- crafted: HDF5


def replace_dataset(path: Path, make) -> Path:
    """Swap the first kernel dataset of a Keras HDF5 file for what ``make(group, name)`` builds."""
    import h5py

    with h5py.File(path, "r+") as handle:
        names: list[str] = []
        handle.visititems(lambda key, item: names.append(key)
                          if isinstance(item, h5py.Dataset) and key.endswith(("kernel", "vars/0"))
                          else None)
        target = names[0]
        group, name = handle[target.rsplit("/", 1)[0]], target.rsplit("/", 1)[1]
        del group[name]
        make(group, name)
    return path


def crafted_h5(seeds, folder: Path) -> list[tuple[Path, str]]:
    import h5py

    secret = folder / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    cases = []

    def copy(name: str, tag: str) -> Path:
        path = folder / f"{tag}-{name}"
        path.write_bytes(seeds[name].read_bytes())
        return path

    for seed in ("model.h5", "model.weights.h5"):
        cases += [
            (replace_dataset(copy(seed, "external"), lambda g, n: g.create_dataset(
                n, (3, 16), "f4", external=[(str(secret), 0, 192)])), "stored outside the file"),
            (replace_dataset(copy(seed, "extlink"), lambda g, n: g.__setitem__(
                n, h5py.ExternalLink(str(secret), "/x"))), "external link"),
            (replace_dataset(copy(seed, "softlink"), lambda g, n: g.__setitem__(
                n, h5py.SoftLink("/nowhere/at/all"))), "does not resolve inside"),
            (replace_dataset(copy(seed, "huge"), lambda g, n: g.create_dataset(
                n, (1_000_000, 4_000_000), "f4", chunks=(1, 1024))), "cap"),
        ]
    zero_d = copy("model.h5", "scalar-bias")
    with h5py.File(zero_d, "r+") as handle:
        names: list[str] = []
        handle.visititems(lambda k, v: names.append(k) if k.endswith("/bias") else None)
        group = handle[names[0].rsplit("/", 1)[0]]
        del group["bias"]
        group.create_dataset("bias", data=np.float32(1.0))
    cases.append((zero_d, "bias"))
    return cases


def test_crafted_hdf5_files(seeds, tmp_path, capsys):
    for path, phrase in crafted_h5(seeds, tmp_path):
        attempt(capsys, path, tmp_path, must_refuse=True, phrase=phrase)


# ---------------------------------------------------------------- crafted: zips, JSON, npz


def rewrite_zip(source: Path, target: Path, change) -> Path:
    """A copy of a zip whose members pass through ``change(name, data) -> (name, data)``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            name, data = change(info.filename, old.read(info))
            new.writestr(name, data)
    return target


def patch_name_bytes(path: Path, old: bytes, new: bytes) -> Path:
    """Put bytes that are not UTF-8 into a member name and mark the name UTF-8 (flag 0x800)."""
    data = bytearray(path.read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            flags = struct.unpack_from("<H", data, start + flags_at)[0]
            struct.pack_into("<H", data, start + flags_at, flags | 0x800)
            start += 4
    path.write_bytes(bytes(data).replace(old, new))
    return path


def zip_bomb_header(path: Path, member: str) -> Path:
    """A member whose central-directory entry declares 4 GB uncompressed."""
    data = bytearray(path.read_bytes())
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(member.encode()) + 1)
    struct.pack_into("<I", data, entry + 24, 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(data))
    return path


def npy_bytes(shape: tuple[int, ...], dtype: str = "<f4", payload: bytes = b"\0" * 64) -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + payload


def crafted_archives(seeds, folder: Path) -> list[tuple[Path, str]]:
    keras_file, case = seeds["model.keras"], seeds["case.npz"]
    deep = "[" * 5000 + "]" * 5000
    cases = [
        (rewrite_zip(keras_file, folder / "deep.keras", lambda n, d: (
            n, deep.encode() if n == "config.json" else d)), "nested"),
        (rewrite_zip(keras_file, folder / "nojson.keras", lambda n, d: (
            n, b"{not json" if n == "config.json" else d)), "not valid JSON"),
        (rewrite_zip(keras_file, folder / "badweights.keras", lambda n, d: (
            n, d[:100] + b"\0" * 500 if n == "model.weights.h5" else d)), ""),
        (patch_name_bytes(rewrite_zip(keras_file, folder / "names.keras", lambda n, d: (
            "zzzzzz.json" if n == "metadata.json" else n, d)), b"zzzzzz",
            b"\xff\xfe\xfd\xfc\xfb\xfa"), "not valid UTF-8"),
        (zip_bomb_header(rewrite_zip(keras_file, folder / "bomb.keras", lambda n, d: (n, d)),
                         "model.weights.h5"), "bytes"),
        (rewrite_zip(case, folder / "huge-npy.npz", lambda n, d: (
            n, npy_bytes((1_000_000, 1_000_000)) if n == "x.npy" else d)), "declared shape"),
        (rewrite_zip(case, folder / "object.npz", lambda n, d: (
            n, npy_bytes((2,), "|O") if n == "x.npy" else d)), "object array"),
        (rewrite_zip(case, folder / "meta-list.npz", lambda n, d: (
            n, _npy_text("[1, 2]") if n == "meta.npy" else d)), "meta is JSON list"),
        (rewrite_zip(case, folder / "meta-deep.npz", lambda n, d: (
            n, _npy_text(deep) if n == "meta.npy" else d)), "nested"),
        (rewrite_zip(case, folder / "meta-wrong.npz", lambda n, d: (
            n, _npy_text(json.dumps({"spec": 3, "weights": []})) if n == "meta.npy" else d)),
         "case file"),
    ]
    plain = folder / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    cases.append((plain, "not an equivalence case file"))
    return cases


def _npy_text(text: str) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array(text))
    return buffer.getvalue()


def test_crafted_archives_json_and_case_files(seeds, tmp_path, capsys):
    for path, phrase in crafted_archives(seeds, tmp_path):
        attempt(capsys, path, tmp_path, must_refuse=True, phrase=phrase)


# ---------------------------------------------------------------- crafted: torch pickles


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_torch(seeds, folder: Path) -> list[tuple[Path, str]]:
    import pickle

    marker = folder / "pwned"
    state = torch.nn.LSTM(I, H).state_dict()
    cases = []
    far = {k.replace("_l0", "_l3000000"): v for k, v in state.items()}
    torch.save(far, folder / "far-layer.pt")
    cases.append((folder / "far-layer.pt", "10000-layer cap"))
    expanded = dict(state)
    expanded["weight_ih_l0"] = torch.zeros(1, 1).expand(2_000_000, 2_000_000)
    torch.save(expanded, folder / "expanded.pt")
    cases.append((folder / "expanded.pt", "declared shape"))
    # A whole module (torch.save(model)) is read as inert records (tests/test_field_modules.py);
    # one that creates its class by a call, which would run the class's code, is refused.
    (folder / "module.pt").write_bytes(
        b"\x80\x02ctorch.nn.modules.rnn\nLSTM\nq\x00K\x03K\x04\x86R.")
    cases.append((folder / "module.pt", "calls torch.nn.modules.rnn.LSTM(...)"))
    evil = rewrite_zip(seeds["zip.pt"], folder / "evil.pt", lambda n, d: (
        n, pickle.dumps(Exploit(marker), protocol=2) if n.endswith("data.pkl") else d))
    cases.append((evil, "system"))
    with open(folder / "evil-legacy.pt", "wb") as handle:
        handle.write(b"\x80\x02" + pickle.dumps(Exploit(marker), protocol=2)[2:])
    cases.append((folder / "evil-legacy.pt", ""))
    nest = b"\x80\x02" + b"](" * 100_000 + b"e" * 100_000 + b"."  # lists 100000 deep
    (folder / "deep.pt").write_bytes(nest)
    cases.append((folder / "deep.pt", ""))
    script = rewrite_zip(seeds["script.jit"], folder / "evil.jit", lambda n, d: (
        n, pickle.dumps(Exploit(marker), protocol=2) if n.endswith("/data.pkl") else d))
    cases.append((script, "system"))
    return cases


def test_crafted_torch_files_run_nothing(seeds, tmp_path, capsys):
    for path, phrase in crafted_torch(seeds, tmp_path):
        attempt(capsys, path, tmp_path, must_refuse=True, phrase=phrase)
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------- crafted: ONNX


def onnx_model(nodes, inits, inputs=None):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             ["T", "B", I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def crafted_onnx(seeds, folder: Path) -> list[tuple[Path, str]]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(1, 4 * H, I)).astype(np.float32)
    r = rng.normal(size=(1, 4 * H, H)).astype(np.float32)
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["Y"], hidden_size=H)
    cases = []

    def save(name: str, model, phrase: str) -> None:
        path = folder / name
        onnx.save(model, str(path))
        cases.append((path, phrase))

    inside = folder / "models"
    inside.mkdir()
    (folder / "outside.bin").write_bytes(w.tobytes())
    for name, location, phrase in (("up.onnx", "../outside.bin", "not a file name inside"),
                                   ("abs.onnx", str(folder / "outside.bin"),
                                    "not a file name inside"),
                                   ("link.onnx", "link.bin", "outside the model's folder")):
        tensor = numpy_helper.from_array(w, "W")
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(w.nbytes))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        model = onnx_model([lstm], [tensor, numpy_helper.from_array(r, "R")])
        path = inside / name
        onnx.save(model, str(path))
        cases.append((path, phrase))
    os.symlink(folder / "outside.bin", inside / "link.bin")
    short = numpy_helper.from_array(w, "W")
    short.raw_data = short.raw_data[:10]
    save("short.onnx", onnx_model([lstm], [short, numpy_helper.from_array(r, "R")]),
         "raw_data holds 10 bytes")
    huge = TensorProto(name="W", data_type=TensorProto.FLOAT, raw_data=b"")
    huge.dims.extend([1, 4_000_000_000, 4_000_000_000])  # declared, with no bytes behind it
    save("huge.onnx", onnx_model([lstm], [huge, numpy_helper.from_array(r, "R")]), "cap")
    save("noinputs.onnx", onnx_model([helper.make_node("LSTM", [], ["Y"], hidden_size=H)], []),
         "X, W and R are required")
    bomb = [helper.make_node("Constant", [], ["shape"], value=numpy_helper.from_array(
                np.array([1, 4_000_000, 4_000_000], np.int64))),
            helper.make_node("ConstantOfShape", ["shape"], ["W"]), lstm]
    save("bomb.onnx", onnx_model(bomb, [numpy_helper.from_array(r, "R")]), "size cap")
    body = helper.make_graph([lstm], "b", [], [helper.make_tensor_value_info(
        "Y", TensorProto.FLOAT, ["T", 1, "B", H])])
    empty = helper.make_graph([helper.make_node("Identity", ["R"], ["Y"])], "e", [],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    for depth in range(25):  # one branch deeper each time (both would double the file)
        node = helper.make_node("If", ["c"], ["Y"], then_branch=body, else_branch=empty,
                                name=f"If_{depth}")
        body = helper.make_graph([node], f"b{depth}", [], [helper.make_tensor_value_info(
            "Y", TensorProto.FLOAT, ["T", 1, "B", H])])
    save("deep.onnx", onnx_model(list(body.node), [numpy_helper.from_array(w, "W"),
                                                   numpy_helper.from_array(r, "R")]),
         "nested")
    return cases


def test_crafted_onnx_files(seeds, tmp_path, capsys):
    for path, phrase in crafted_onnx(seeds, tmp_path):
        attempt(capsys, path, tmp_path, must_refuse=True, phrase=phrase)


def test_crafted_safetensors(tmp_path, capsys):
    header = json.dumps({"weight_hh_l0": {"dtype": "F32", "shape": [1_000_000, 1_000_000],
                                          "data_offsets": [0, 4_000_000_000_000]}}).encode()
    (tmp_path / "big.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    attempt(capsys, tmp_path / "big.safetensors", tmp_path, must_refuse=True)


def test_corpus_summary(capsys):
    """The counts the issue asks for (run after the corpus tests in this module)."""
    with capsys.disabled():
        print(f"\nhostile corpus: {TALLY.tried} files tried, {TALLY.refused} refused cleanly "
              f"(exit 2, one line), {TALLY.read} read cleanly (a flip in weight values)")
        if os.environ.get("EQUIVALENCE_SHOW_REFUSALS"):
            print("\n".join(TALLY.messages))
    assert TALLY.refused + TALLY.read == TALLY.tried


# ---------------------------------------------------------------- the real command line


def test_real_command_exit_status_and_no_traceback(seeds, tmp_path):
    hostile = tmp_path / "evil.pt"
    hostile.write_bytes(b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85R.")
    for argv in (["inspect", str(hostile)], ["inspect", "--debug", str(hostile)]):
        done = subprocess.run([sys.executable, "-m", "equivalence", *argv], capture_output=True,
                              text=True, timeout=120, cwd=Path(__file__).parent.parent)
        assert done.returncode == 2, done.stderr
        assert str(hostile) in done.stderr and "posix.system" in done.stderr
    assert "Traceback" not in subprocess.run(
        [sys.executable, "-m", "equivalence", "inspect", str(hostile)], capture_output=True,
        text=True, timeout=120, cwd=Path(__file__).parent.parent).stderr


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("argv", [
    ["--forget-bias", "nan"], ["--forget-bias", "inf"], ["--out-forget-bias", "-inf"],
    ["--examples", "0"], ["--examples", "-3"]])
def test_option_values_are_refused(seeds, tmp_path, capsys, argv):
    parser = argparse.ArgumentParser(prog="equivalence")
    cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["convert", str(seeds["zip.pt"]), "--to", "tf1", "-o",
                           str(tmp_path / "c"), "--verify", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and argv[0] in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- outputs


def test_racing_writers_exactly_one_wins(tmp_path):
    target = tmp_path / "race.bin"
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def write(number: int) -> None:
        try:
            with atomic_output(target) as temporary:
                temporary.write_bytes(str(number).encode())
                barrier.wait()
            outcomes.append(f"won {number}")
        except FileFormatError as exc:
            outcomes.append(f"lost: {exc}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o.startswith("won")]
    assert len(winners) == 1 and target.read_bytes().decode() == winners[0].split()[1]
    assert all("exists" in o for o in outcomes if o.startswith("lost"))
    assert leftovers(tmp_path) == []


def test_output_appearing_during_a_run_is_not_replaced(seeds, tmp_path, capsys, monkeypatch):
    from equivalence.files.torch import state_dict as torch_files

    output = tmp_path / "out.pt"
    original = torch_files.write_torch

    def slow_writer(path, weights, job):
        output.write_bytes(b"written by the other run")  # it finished first
        return original(path, weights, job)

    monkeypatch.setattr(torch_files, "write_torch", slow_writer)
    code, _, err = run_cli(capsys, "convert", seeds["zip.pt"], "--to", "torch", "-o", output)
    assert code == 2 and "exists" in err and one_error_line(err, output)
    assert output.read_bytes() == b"written by the other run" and leftovers(tmp_path) == []


def test_dangling_symlink_at_the_output(seeds, tmp_path, capsys):
    output = tmp_path / "out.pt"
    os.symlink(tmp_path / "elsewhere" / "missing.pt", output)
    code, _, err = run_cli(capsys, "convert", seeds["zip.pt"], "--to", "torch", "-o", output)
    assert code == 2 and "symbolic link" in err and "--force" in err
    assert output.is_symlink() and not (tmp_path / "elsewhere").exists()
    code, _, err = run_cli(capsys, "convert", seeds["zip.pt"], "--to", "torch", "-o", output,
                           "--force")
    assert code == 0 and not output.is_symlink() and read(output)


def test_a_killed_runs_temporaries_are_removed(seeds, tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    output = tmp_path / "out.onnx"
    stale = temporary_name(output)
    stale = stale.with_name(stale.name.replace(f"-{os.getpid()}-", f"-{dead}-"))
    stale.write_bytes(b"half a model")
    live = temporary_name(tmp_path / "other.onnx")
    live.write_bytes(b"another run, still going")
    code, _, err = run_cli(capsys, "convert", seeds["zip.pt"], "--to", "onnx", "-o", output)
    assert code == 0, err
    assert not stale.exists() and live.exists()
