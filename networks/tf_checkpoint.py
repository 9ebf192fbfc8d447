"""Read TensorFlow 1 checkpoints (tensor bundles) without TensorFlow or protobuf.

A TF1 ``tf.train.Saver`` checkpoint with prefix ``P`` is two kinds of file:

* ``P.index`` — an SSTable (LevelDB table format) whose keys are tensor names and whose values are
  serialised ``BundleEntryProto`` messages (dtype, shape, shard id, byte offset, byte size, crc32c);
  the empty key holds the ``BundleHeaderProto`` (number of shards, endianness, version);
* ``P.data-SSSSS-of-NNNNN`` — the raw tensor bytes, concatenated, one file per shard.

This module hand-parses the SSTable (footer → index block → data blocks; prefix-compressed entries with
varints) and the two protobuf messages (wire format: varint / fixed32 / fixed64 / length-delimited), then
reads each tensor with NumPy. Only what TF1 bundles use is supported: uncompressed or Snappy blocks,
little-endian, numeric dtypes, unsliced tensors.

SOURCE: tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc}, tensor_bundle.proto,
tensorflow/core/lib/io/{format.cc,block.cc,table.cc} (the LevelDB table format).

Example:
    >>> tensors = load_tf_checkpoint("weights/dped/iphone_orig")  # doctest: +SKIP
    >>> tensors["generator/W1"].shape  # doctest: +SKIP
    (9, 9, 3, 64)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TensorInfo", "checkpoint_files", "list_tf_checkpoint", "load_tf_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48  # two BlockHandles (≤ 2·10 varint bytes each), zero padding to 40, 8-byte magic
_BLOCK_TRAILER_LEN = 5  # 1 byte compression type + 4 bytes masked crc32c

# tensorflow/core/framework/types.proto → NumPy (little-endian).
_TF_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_TF_DTYPE_NAMES = {7: "DT_STRING", 14: "DT_BFLOAT16", 20: "DT_RESOURCE", 21: "DT_VARIANT"}


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, masked as LevelDB/TF store it (``crc32c::Mask``)."""
    c = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    c ^= 0xFFFFFFFF
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a bundle index: where a tensor's bytes are and how to interpret them."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


# --------------------------------------------------------------------------- low-level decoding


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode a protobuf message into (field number, wire type, value) triples (no schema needed)."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value = bytes(buf[pos : pos + n])
            if len(value) != n:
                raise ValueError("truncated length-delimited field")
            pos += n
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def _snappy_decompress(src: bytes) -> bytes:
    """Decompress a raw Snappy block (format_description.txt of google/snappy)."""
    n, pos = _varint(src, 0)
    out = bytearray()
    while pos < len(src):
        tag = src[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                nb = length - 59
                length = int.from_bytes(src[pos : pos + nb], "little")
                pos += nb
            length += 1
            out += src[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | src[pos]
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(src[pos : pos + 2], "little")
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(src[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise ValueError("corrupt snappy block (bad copy offset)")
        for _ in range(length):  # byte-wise: copies may overlap their own output
            out.append(out[-offset])
    if len(out) != n:
        raise ValueError(f"corrupt snappy block (expected {n} bytes, got {len(out)})")
    return bytes(out)


def _read_block(data: bytes, offset: int, size: int) -> bytes:
    end = offset + size
    if end + _BLOCK_TRAILER_LEN > len(data):
        raise ValueError("block handle points past the end of the index file")
    block = data[offset:end]
    compression = data[end]
    if compression == 0:
        return block
    if compression == 1:
        return _snappy_decompress(block)
    raise ValueError(f"unsupported SSTable block compression type {compression}")


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of one SSTable block (prefix-compressed keys, restart array at the end)."""
    if len(block) < 4:
        raise ValueError("SSTable block too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise ValueError("corrupt SSTable block (restart array)")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key):
            raise ValueError("corrupt SSTable block (shared prefix longer than previous key)")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _sstable_items(data: bytes, path: Path) -> list[tuple[bytes, bytes]]:
    if len(data) < _FOOTER_LEN:
        raise ValueError(f"{path}: too short to be a TensorFlow checkpoint index (SSTable)")
    footer = data[-_FOOTER_LEN:]
    magic = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)[0]
    if magic != _TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (bad SSTable magic {magic:#x})")
    _meta_off, p = _varint(footer, 0)
    _meta_size, p = _varint(footer, p)
    index_off, p = _varint(footer, p)
    index_size, p = _varint(footer, p)
    items: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_read_block(data, index_off, index_size)):
        off, q = _varint(handle, 0)
        size, _ = _varint(handle, q)
        items.extend(_block_entries(_read_block(data, off, size)))
    return items


def _parse_entry(name: str, value: bytes) -> TensorInfo:
    dtype_code = 0
    shape: list[int] = []
    shard_id = offset = size = crc = 0
    for field, _, v in _proto_fields(value):
        if field == 1:
            dtype_code = int(v)  # type: ignore[arg-type]
        elif field == 2:  # TensorShapeProto: repeated Dim dim = 2 {int64 size = 1; string name = 2}
            for f2, _, dim in _proto_fields(v):  # type: ignore[arg-type]
                if f2 == 2:
                    sizes = [int(s) for f3, _, s in _proto_fields(dim) if f3 == 1]  # type: ignore[arg-type, misc]
                    shape.append(sizes[0] if sizes else 0)
                elif f2 == 3 and v:
                    raise ValueError(f"tensor {name!r} has unknown rank")
        elif field == 3:
            shard_id = int(v)  # type: ignore[arg-type]
        elif field == 4:
            offset = int(v)  # type: ignore[arg-type]
        elif field == 5:
            size = int(v)  # type: ignore[arg-type]
        elif field == 6:
            crc = int(v)  # type: ignore[arg-type]
        elif field == 7:
            raise ValueError(f"tensor {name!r} is stored as slices (partitioned variable): not supported")
    if dtype_code not in _TF_DTYPES:
        what = _TF_DTYPE_NAMES.get(dtype_code, f"dtype enum {dtype_code}")
        raise ValueError(f"tensor {name!r}: unsupported TensorFlow dtype {what}")
    return TensorInfo(name, _TF_DTYPES[dtype_code], tuple(shape), shard_id, offset, size, crc)


# --------------------------------------------------------------------------- public API


def _prefix(prefix: str | Path) -> Path:
    p = Path(prefix)
    return p.with_suffix("") if p.suffix == ".index" else p


def checkpoint_files(prefix: str | Path, num_shards: int = 1) -> list[Path]:
    """The files a bundle with this prefix consists of: ``P.index`` and ``P.data-0000i-of-0000n``."""
    p = _prefix(prefix)
    return [Path(f"{p}.index")] + [Path(f"{p}.data-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)]


def _read_index(prefix: str | Path) -> tuple[int, dict[str, TensorInfo]]:
    index = checkpoint_files(prefix)[0]
    if not index.is_file():
        raise FileNotFoundError(f"TensorFlow checkpoint index not found: {index}")
    data = index.read_bytes()
    num_shards = 1
    tensors: dict[str, TensorInfo] = {}
    for key, value in _sstable_items(data, index):
        if key == b"":  # BundleHeaderProto {int32 num_shards = 1; Endianness endianness = 2; ...}
            for field, _, v in _proto_fields(value):
                if field == 1:
                    num_shards = int(v)  # type: ignore[arg-type]
                elif field == 2 and v != 0:
                    raise ValueError(f"{index}: big-endian checkpoints are not supported")
            continue
        name = key.decode("utf-8")
        tensors[name] = _parse_entry(name, value)
    return num_shards, tensors


def list_tf_checkpoint(prefix: str | Path) -> dict[str, TensorInfo]:
    """Name → :class:`TensorInfo` of every tensor in a TF1 checkpoint, in index (lexicographic) order.

    Args:
        prefix: checkpoint prefix (``.../iphone_orig``) or the ``.index`` path.

    Raises:
        FileNotFoundError: the ``.index`` file is missing.
        ValueError: the file is not a tensor-bundle index, or uses a feature this reader lacks.
    """
    return _read_index(prefix)[1]


def load_tf_checkpoint(
    prefix: str | Path, names: list[str] | None = None, verify: bool = True
) -> dict[str, np.ndarray]:
    """Read tensors of a TF1 checkpoint into NumPy arrays (TF layout, e.g. conv kernels HWIO).

    Args:
        prefix: checkpoint prefix (``.../iphone_orig``) or the ``.index`` path.
        names: tensors to read (default: all).
        verify: check each tensor's bytes against the crc32c recorded in the index (pure Python,
            ≈ 0.3 s per MB).

    Returns:
        name → array with the dtype and shape recorded in the index (a fresh, writable copy).

    Raises:
        FileNotFoundError: the ``.index`` or a ``.data-…`` shard is missing.
        KeyError: a requested name is not in the checkpoint.
        ValueError: malformed index, a tensor's byte size does not match its dtype and shape, or
            (``verify``) its checksum does not match.
    """
    num_shards, infos = _read_index(prefix)
    shards = checkpoint_files(prefix, num_shards)[1:]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"TensorFlow checkpoint data file(s) not found: {', '.join(missing)}")
    if names is None:
        names = list(infos)
    unknown = [n for n in names if n not in infos]
    if unknown:
        raise KeyError(f"not in checkpoint {_prefix(prefix)}: {unknown}")
    blobs = [s.read_bytes() for s in shards]
    out: dict[str, np.ndarray] = {}
    for name in names:
        info = infos[name]
        if info.size != info.numel * info.dtype.itemsize:
            raise ValueError(
                f"tensor {name!r}: {info.size} bytes stored, but dtype {info.dtype} and shape "
                f"{info.shape} need {info.numel * info.dtype.itemsize}"
            )
        blob = blobs[info.shard_id]
        if info.offset + info.size > len(blob):
            raise ValueError(f"tensor {name!r} extends past the end of {shards[info.shard_id]}")
        if verify and _masked_crc32c(blob[info.offset : info.offset + info.size]) != info.crc32c:
            raise ValueError(f"tensor {name!r}: crc32c mismatch, {shards[info.shard_id]} is corrupt")
        arr = np.frombuffer(blob, dtype=info.dtype, count=info.numel, offset=info.offset)
        out[name] = arr.reshape(info.shape).copy()
    return out
