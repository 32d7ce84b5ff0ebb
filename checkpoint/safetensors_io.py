"""safetensors files through the `safetensors` library: lazy per-tensor reads into NumPy, whole-file writes.

The library parses and validates the file (header, dtypes, offsets, coverage of the data); this module turns
its errors into `CheckpointError`s that name the file and say what is wrong in plain words, converts what it
reads to the dtype asked for, and reads bfloat16 tensors, which the library cannot give to NumPy (see
`_read_bfloat16`).

Memory: `SafetensorsFile.read` returns one tensor at a time, in an array of its own (it outlives the file), so
a loader holds the weights plus one tensor (see `_open`). Writing hands the library every array at once, so
`write_safetensors` holds whatever a dtype conversion or the stacking of parts made, for the whole file.
"""

from __future__ import annotations

import json
import math
import os
import re

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from sdcl.reference.validation import CheckpointError

# The safetensors dtypes accepted as weights (8-bit and smaller floats are not).
FLOAT_CODES = ("F64", "F32", "F16", "BF16")
# The NumPy dtypes written.
WRITE_DTYPES = (np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16))


def is_float_code(code: str) -> bool:
    """Whether a safetensors dtype name is one of the floating-point types read as weights."""
    return code in FLOAT_CODES


class SafetensorsFile:
    """A safetensors file opened with the library: the header is read and checked up front (a malformed or
    truncated file fails here, naming itself), tensors are read one at a time on request. Use as a context
    manager, or call close()."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self._offsets = None
        try:
            self._file = _open(self.path)
        except SafetensorError as e:
            raise CheckpointError(f"{self.path}: not a valid safetensors file: {_explain(self.path, e)}") from None
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot read: {e}") from None
        self.metadata = dict(self._file.metadata() or {})
        self.shapes, self.dtypes = {}, {}
        for key in self._file.keys():
            view = self._file.get_slice(key)
            self.shapes[key], self.dtypes[key] = tuple(view.get_shape()), view.get_dtype()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file = None  # the library closes (or unmaps) the file when its handle is dropped

    def read(self, key: str, dtype) -> np.ndarray:
        """The tensor as a new C-contiguous array of floating `dtype` (the one place the file's dtype becomes
        the in-memory one: returned as read when the file already holds `dtype`)."""
        code = self.dtypes[key]
        if not is_float_code(code):
            raise CheckpointError(f"{self.path}: {key} is {code}, not a floating-point tensor")
        try:
            if code == "BF16":
                # bfloat16 is the upper half of an IEEE float32: widening is exact.
                arr = (self._read_bfloat16(key).astype(np.uint32) << 16).view(np.float32)
            else:
                arr = self._file.get_tensor(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{self.path}: cannot read {key} (was the file changed while reading?): "
                                  f"{e}") from None
        return arr.astype(dtype, order="C", copy=False)

    def _read_bfloat16(self, key: str) -> np.ndarray:
        """A BF16 tensor's raw 16-bit patterns, read from the file at the offsets its header gives.

        Own code because the library cannot do it. Measured with safetensors 0.8.0 and NumPy 2.4 (which has no
        bfloat16; ml_dtypes is not installed): `safe_open(path, framework="numpy").get_tensor(key)` on a BF16
        tensor, and `get_slice(key)[:]` alike, with either backend, raise `TypeError: data type 'bfloat16' not
        understood` (the library asks NumPy for a "bfloat16" dtype), and no call returns one tensor's raw bytes
        (`safetensors.deserialize` would need the whole file in memory). The library has validated the header
        (offsets, sizes, coverage) by the time this runs, so its offsets are used as they are."""
        if self._offsets is None:
            data_start, header = _read_header(self.path)
            self._offsets = {k: (data_start + v["data_offsets"][0], data_start + v["data_offsets"][1])
                             for k, v in header.items() if k != "__metadata__"}
        begin, end = self._offsets[key]
        count = math.prod(self.shapes[key])
        with open(self.path, "rb") as fh:
            fh.seek(begin)
            raw = np.fromfile(fh, dtype="<u2", count=count)
        if raw.size != count or end - begin != 2 * count:
            raise OSError(f"{end - begin} bytes at offset {begin}, {raw.size} of {count} values read")
        return raw.reshape(self.shapes[key])


def _open(path: str):
    """The library's reader, reading with pread(2) where it offers that (safetensors 0.8.0 does). Its default,
    a memory map, keeps every page read resident in the process until the file is closed: loading a 1 GiB
    float32 file measured a peak RSS of 2 GiB (weights + mapped file) against 1 GiB with pread."""
    try:
        return safe_open(path, framework="numpy", backend="pread")
    except TypeError:  # a release without the backend argument: memory-mapped
        return safe_open(path, framework="numpy")


def write_safetensors(path: str, arrays: dict, metadata: dict) -> None:
    """Write {name: array} (each of a dtype in WRITE_DTYPES) with the library, under a temporary name renamed
    at the end, so a failed write leaves no partial file under `path` (safetensors 0.8.0 writes through a
    temporary file of its own, but the older releases pyproject.toml allows need not)."""
    # save_file writes each array's memory as it lies (it does not check contiguity): hand it dense copies.
    dense = {k: np.ascontiguousarray(a) for k, a in arrays.items()}
    tmp = path + ".partial"
    try:
        save_file(dense, tmp, metadata=metadata)
        _sort_metadata(tmp)
        os.replace(tmp, path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: cannot write: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _sort_metadata(path: str) -> None:
    """Put the header's metadata entries in key order, in place: the library writes them in a hash map's order, which
    changes from run to run, so the same weights would not give the same bytes. Same entries, same length."""
    with open(path, "r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = fh.read(n).decode("utf-8")
        start = header.find('"__metadata__":')
        if start < 0:
            return
        start += len('"__metadata__":')
        entries, end = json.JSONDecoder().raw_decode(header, start)
        text = json.dumps(dict(sorted(entries.items())), separators=(",", ":"), ensure_ascii=False)
        if len(text.encode("utf-8")) != len(header[start:end].encode("utf-8")):
            return          # written otherwise than expected: leave the library's bytes as they are
        fh.seek(8)
        fh.write((header[:start] + text + header[end:]).encode("utf-8"))


# ---------------------------------------------------------------------------------- the library's errors

_MAX_HEADER = 100_000_000  # the format's bound on the header size, which the library enforces


def _explain(path: str, error: SafetensorError) -> str:
    """The library's reason for refusing a file, said plainly. Its messages are matched on their words with
    spaces and underscores dropped, which covers both spellings the library has used ("header too small",
    "HeaderTooSmall"); anything else is passed on as the library says it."""
    message = str(error).removeprefix("Error while deserializing header: ")
    words = re.sub(r"[\s_]", "", message).lower()
    size = os.path.getsize(path)
    if "headertoosmall" in words:
        return f"{size} bytes, too short to hold the 8-byte header length"
    if "headertoolarge" in words:
        return (f"the header length field says more than the {_MAX_HEADER} bytes the format allows: not a "
                "safetensors file")
    if "invalidheaderlength" in words:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
        return f"the header length field says {n} bytes but the file has {size}: truncated, or not a safetensors file"
    if "incompletemetadata" in words or "metadataincompletebuffer" in words:
        return _coverage(path, size) or message
    if "json" in words or "deserialization" in words:
        return f"its header is not valid safetensors JSON ({message})"
    if "offset" in words:
        return f"its header is malformed: a tensor's shape, dtype and data offsets disagree ({message})"
    return message


def _coverage(path: str, size: int) -> str:
    """Why the tensor data does not end where the file does: a truncated file, or bytes after the last tensor.
    The library says only that the data does not cover the file."""
    try:
        data_start, header = _read_header(path)
    except (OSError, ValueError):
        return ""
    data = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if data_start + data > size:
        return (f"truncated: the header describes {data} bytes of tensor data but only {size - data_start} "
                "follow it")
    if data_start + data < size:
        return f"malformed: {size - data_start - data} bytes follow the last tensor's data"
    return ""


def _read_header(path: str) -> tuple:
    """(byte offset of the data, the header as a dict) of a file whose header the library has accepted."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return 8 + n, json.loads(fh.read(n))
