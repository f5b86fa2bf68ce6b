"""CRC-32C (Castagnoli) of a buffer with numpy alone, and TensorFlow's masked form of it.

A TF checkpoint stores, for every tensor, the masked CRC-32C of its bytes; checking it is
what tells a damaged data file from weights. A byte-at-a-time loop in Python reads a few
MB/s, too slow for a 1 GB checkpoint, so the buffer is cut into lanes that run side by side
as numpy columns (the CRC register of every lane from zero), and the lanes are joined in
order: the CRC of A then B is the register after A pushed through len(B) zero bytes, XOR
the register of B from zero. That push is linear in the register's 32 bits, so it is four
256-entry tables.
"""

from __future__ import annotations

from math import isqrt

import numpy as np

POLYNOMIAL = 0x82F63B78  # reflected Castagnoli
MASK_DELTA = 0xA282EAD8  # leveldb / TensorFlow crc32c::Mask
SMALL = 1 << 16  # below this many bytes the plain loop is fast enough


def _byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLYNOMIAL), table >> 1)
    return table.astype(np.uint32)


TABLE = _byte_table()
_TABLE_LIST = [int(v) for v in TABLE]


def _registers(columns: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Every lane's register after its bytes: ``columns`` is steps x lanes (uint8, or uint32
    for the 32 basis lanes)."""
    register = start.copy()
    index = np.empty_like(register)
    for column in columns:
        np.bitwise_xor(register, column, out=index)
        np.bitwise_and(index, 0xFF, out=index)
        np.right_shift(register, 8, out=register)
        register ^= TABLE[index]
    return register


def _push_tables(zeros: int) -> list[list[int]]:
    """Four byte tables whose lookups XORed give a register pushed through ``zeros`` zero
    bytes (linear: each register bit's image, run as 32 lanes at once)."""
    basis = _registers(np.zeros((zeros, 32), np.uint32),
                       np.uint32(1) << np.arange(32, dtype=np.uint32))
    tables = []
    for byte in range(4):
        images = basis[8 * byte: 8 * byte + 8]
        values = np.zeros(256, np.uint32)
        for bit in range(8):
            values ^= np.where((np.arange(256) >> bit) & 1, images[bit], np.uint32(0))
        tables.append([int(v) for v in values])
    return tables


def _update(register: int, data: bytes) -> int:
    table = _TABLE_LIST
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


def crc32c(data: bytes) -> int:
    """The CRC-32C of ``data``."""
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size < SMALL:
        return _update(0xFFFFFFFF, buffer.tobytes()) ^ 0xFFFFFFFF
    lanes = 4 * isqrt(buffer.size)
    steps = buffer.size // lanes
    head = buffer.size - lanes * steps
    register = _update(0xFFFFFFFF, buffer[:head].tobytes())
    columns = np.ascontiguousarray(buffer[head:].reshape(lanes, steps).T)  # bytes, one copy
    pieces = _registers(columns, np.zeros(lanes, np.uint32))
    t0, t1, t2, t3 = _push_tables(steps)
    for piece in pieces.tolist():
        register = (t0[register & 0xFF] ^ t1[(register >> 8) & 0xFF]
                    ^ t2[(register >> 16) & 0xFF] ^ t3[register >> 24] ^ piece)
    return register ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    """TensorFlow's stored form: rotated right by 15 bits, plus a constant."""
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF
