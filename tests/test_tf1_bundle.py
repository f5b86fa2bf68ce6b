"""TF checkpoints read with numpy alone: every tensor equals what TensorFlow's own reader
returns (dtype and bytes), over the dtypes, shapes and shard counts TensorFlow writes; the
checksum catches a flipped weight byte that a plain read would take as weights; a
partitioned variable is refused by name; reading imports no TensorFlow. CRC-32C itself is
held to the standard check value and to a bit-by-bit reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from equivalence.files import FileFormatError
from equivalence.files.tf1.bundle import read_tensors
from equivalence.files.tf1.crc32c import SMALL, crc32c, masked

tf = pytest.importorskip("tensorflow")
pytestmark = pytest.mark.cpu
ROOT = Path(__file__).resolve().parents[1]


def bitwise_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def tensorflow_reads(prefix: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: np.asarray(reader.get_tensor(name))
            for name, dtype in reader.get_variable_to_dtype_map().items() if dtype != tf.string}


def assert_same_tensors(prefix: Path) -> None:
    ours, theirs = read_tensors(prefix, prefix), tensorflow_reads(prefix)
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        assert ours[name].shape == value.shape, name
        assert ours[name].tobytes() == value.tobytes(), name


def save(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])


def test_crc32c_matches_the_check_value_and_a_bitwise_reference() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the published CRC-32C check value
    rng = np.random.default_rng(0)
    for size in (0, 1, 7, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL + 5):  # both paths, and a head
        data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        assert crc32c(data) == bitwise_crc32c(data), size
    assert masked(0) == 0xA282EAD8


def test_every_dtype_and_shape_reads_as_tensorflow_reads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "big/kernel": rng.normal(size=(300, 400)).astype(np.float32),  # over SMALL bytes
        "f64": rng.normal(size=(3, 2)), "f16": rng.normal(size=(5,)).astype(np.float16),
        "bf16": tf.constant(rng.normal(size=(4, 3)), tf.bfloat16).numpy(),
        "i8": rng.integers(-100, 100, (6,), dtype=np.int8),
        "i64": rng.integers(-2**40, 2**40, (2, 2)), "flags": rng.integers(0, 2, 5).astype(bool),
        "scalar": np.float32(2.5), "empty": np.zeros((0, 3), np.float32),
        "words": np.array([b"not", b"weights"]),
    }
    save(tmp_path / "ckpt", tensors)
    assert_same_tensors(tmp_path / "ckpt")


def test_a_two_shard_checkpoint_reads_as_tensorflow_reads_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for part in (0, 1):
        save(tmp_path / f"part{part}", {f"layer_{part}/kernel": rng.normal(size=(7, 8))
                                        .astype(np.float32)})
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=[str(tmp_path / "part0"),
                                                       str(tmp_path / "part1")],
                                  destination_prefix=str(tmp_path / "merged"))
    assert len(list(tmp_path.glob("merged.data-*-of-00002"))) == 2
    assert_same_tensors(tmp_path / "merged")


def test_a_keras_object_checkpoint_with_optimizer_slots_reads_as_tensorflow_reads_it(
        tmp_path: Path) -> None:
    import keras

    layer = keras.layers.LSTM(4)
    layer(np.zeros((1, 2, 3), np.float32))
    variable = tf.Variable(np.ones((2, 2), np.float32))
    prefix = tf.train.Checkpoint(layer=layer, extra=variable).write(str(tmp_path / "obj"))
    assert_same_tensors(Path(prefix))


def test_a_flipped_weight_byte_is_refused_by_its_checksum(tmp_path: Path) -> None:
    """Must fail: the flipped byte lies inside a kernel, so a read without the checksum
    returns a kernel with one wrong value and no error."""
    save(tmp_path / "ckpt", {"kernel": np.arange(64, dtype=np.float32)})
    shard = next(tmp_path.glob("ckpt.data-*"))
    data = bytearray(shard.read_bytes())
    data[17] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="do not match the checksum"):
        read_tensors(tmp_path / "ckpt", tmp_path / "ckpt")


def test_a_partitioned_variable_is_refused_by_name(tmp_path: Path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("split/kernel", shape=(8, 4),  # constant: no seed needed
                                  initializer=tf.compat.v1.constant_initializer(0.5),
                                  partitioner=tf.compat.v1.fixed_size_partitioner(2))
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(session, str(tmp_path / "ckpt"))
    with pytest.raises(FileFormatError, match="'split/kernel' is partitioned"):
        read_tensors(tmp_path / "ckpt", tmp_path / "ckpt")


def test_reading_a_checkpoint_imports_no_tensorflow(tmp_path: Path) -> None:
    save(tmp_path / "ckpt", {"rnn/lstm_cell/kernel": np.zeros((7, 16), np.float32),
                             "rnn/lstm_cell/bias": np.zeros(16, np.float32)})
    code = ("import sys; from pathlib import Path; from equivalence.files import read; "
            f"found = read(Path({str(tmp_path / 'ckpt')!r})); "
            "assert [f.name for f in found] == ['rnn'], found; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_what_we_write_is_what_savev2_writes_and_tensorflow_reads_it(tmp_path: Path) -> None:
    """The data shard is byte-identical to SaveV2's, every entry's proto too (the tables
    differ only in key sharing), and TensorFlow's reader returns every tensor."""
    from equivalence.files.tf1.bundle import write_bundle
    from equivalence.files.tf1.index import _table_entries

    rng = np.random.default_rng(3)
    tensors = {"rnn/lstm_cell/kernel": rng.normal(size=(300, 400)).astype(np.float32),
               "rnn/lstm_cell/bias": rng.normal(size=(400,)).astype(np.float32),
               "fortran": np.asfortranarray(rng.normal(size=(3, 4))), "scalar": np.float64(3.0),
               "empty": np.zeros((2, 0), np.float32), "steps": np.arange(5)}
    write_bundle(tmp_path / "ours", tensors)
    save(tmp_path / "theirs", tensors)
    shard = "{}.data-00000-of-00001"
    assert ((tmp_path / shard.format("ours")).read_bytes()
            == (tmp_path / shard.format("theirs")).read_bytes())
    ours, theirs = (tmp_path / "ours.index", tmp_path / "theirs.index")
    assert (list(_table_entries(ours.read_bytes(), ours))
            == list(_table_entries(theirs.read_bytes(), theirs)))
    read_back = tensorflow_reads(tmp_path / "ours")
    for name, value in tensors.items():
        assert read_back[name].dtype == value.dtype and read_back[name].shape == np.shape(value)
        assert np.array_equal(read_back[name], value), name


def test_converting_a_state_dict_to_a_checkpoint_imports_no_framework(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.save(torch.nn.LSTM(3, 4).state_dict(), tmp_path / "lstm.pt")
    code = ("import sys; from equivalence.cli.main import main; "
            f"code = main(['convert', {str(tmp_path / 'lstm.pt')!r}, '--to', 'tf1', '-o', "
            f"{str(tmp_path / 'ckpt')!r}]); "
            "assert code == 0, code; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'; "
            "assert 'torch' not in sys.modules, 'torch was imported (read by our own reader)'")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_tensors(tmp_path / "ckpt", tmp_path / "ckpt")["rnn/lstm_cell/kernel"].shape == (
        7, 16)


def _rewritten(tmp_path: Path, change) -> Path:
    """A two-tensor checkpoint whose index entries pass through ``change(entries)``."""
    from equivalence.files.tf1.index import _table_entries, table_bytes

    save(tmp_path / "ckpt", {"a": np.arange(6, dtype=np.float32), "b": np.ones(6, np.float32)})
    index = tmp_path / "ckpt.index"
    index.write_bytes(table_bytes(change(list(_table_entries(index.read_bytes(), index)))))
    return tmp_path / "ckpt"


def test_a_repeated_entry_is_refused_by_name(tmp_path: Path) -> None:
    prefix = _rewritten(tmp_path, lambda entries: entries[:2] + entries[1:])
    with pytest.raises(FileFormatError, match="index entry 'a' occurs twice"):
        read_tensors(prefix, prefix)


def test_entries_sharing_bytes_are_refused(tmp_path: Path) -> None:
    """Must fail: 'b' pointed at 'a''s bytes (checksum included) reads as a second copy of
    'a' without the overlap check."""
    prefix = _rewritten(tmp_path, lambda entries: entries[:2] + [(b"b", entries[1][1])])
    with pytest.raises(FileFormatError, match="'a' and 'b' overlap"):
        read_tensors(prefix, prefix)


def test_a_name_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    prefix = _rewritten(tmp_path, lambda entries: [entries[0], (b"a\xff", entries[1][1]),
                                                   entries[2]])
    with pytest.raises(FileFormatError, match="not UTF-8"):
        read_tensors(prefix, prefix)


def test_a_message_where_a_number_belongs_is_refused(tmp_path: Path) -> None:
    size_as_message = bytes([5 << 3 | 2, 1, 0])  # field 5 (size), length-delimited
    prefix = _rewritten(tmp_path, lambda entries: [entries[0], (b"a", entries[1][1]
                                                                + size_as_message), entries[2]])
    with pytest.raises(FileFormatError, match="a message where a number belongs"):
        read_tensors(prefix, prefix)
