"""A frame in a sealed memfd: written once by the process that loads data, mapped by one child.

The process that forks sandbox children (:mod:`strategyq.sandbox.forkserver`)
never holds market data: the data side writes each frame into its own
``memfd`` and seals it (no write, grow, shrink or further seal), and the fork
server hands that descriptor to the one child that runs on it. The child maps
it (privately: a page it writes to becomes its own copy, the memfd never
changes) and builds its DataFrame over the mapping, so a numeric column costs
no copy at all. An Arrow-backed string column's bytes are not copied either (an
Arrow string array over the mapped buffers). A Python-backed one (the loader's
``ticker``, ``str`` with the python storage) travels dictionary-encoded: one
int32 code per row and each distinct string once; the child rebuilds the column
the loader made, one ``str`` object per distinct value and a pointer per row, so
``df["ticker"].to_numpy()`` hands out that array instead of making a Python
string per row (25 M rows: 200 MiB instead of about 2 GiB).

Layout: ``SQF1``, a 4-byte big-endian header length, the JSON header (rows,
index, and per column its kind, dtype and the offsets of its buffers), then
the buffers, each aligned to 64 bytes.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import orjson

_MAGIC = b"SQF1"
_HEAD = struct.Struct(">4sI")
_ALIGN = 64
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


@dataclass
class SharedFrame:
    """A sealed memfd holding one frame; the descriptor is closed when this object goes."""

    fd: int
    size: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


def _column_buffers(series: Any) -> tuple[dict[str, Any], list[Any]]:
    """(header entry without offsets, buffers) of one column."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
        values = np.ascontiguousarray(series.to_numpy(copy=False))
        # Dates and times travel as their int64 ticks (memoryview has no datetime format).
        raw = values.view(np.uint8) if values.ndim == 1 else values
        return {"kind": "numpy", "dtype": values.dtype.str}, [raw]
    if isinstance(dtype, pd.StringDtype) or dtype is np.dtype(object):
        values = pa.array(series.to_numpy(dtype=object, na_value=None), type=pa.large_string())
        if isinstance(dtype, pd.StringDtype):
            entry: dict[str, Any] = {
                "kind": "string",
                "na": "nan" if dtype.na_value is not pd.NA else "NA",
            }
        else:
            entry = {"kind": "object_string"}
        entry.update(length=len(values), null_count=values.null_count)
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
            # A null is a dictionary entry of its own, so every code is valid.
            encoded = pc.dictionary_encode(values, null_encoding="encode")
            dictionary = encoded.dictionary
            codes = np.ascontiguousarray(encoded.indices.to_numpy(), dtype="<i4")
            entry.update(
                encoding="dictionary",
                dictionary_length=len(dictionary),
                dictionary_null_count=dictionary.null_count,
            )
            return entry, [codes.view(np.uint8), *dictionary.buffers()]
        return entry, list(values.buffers())
    raise TypeError(f"a frame column of dtype {dtype} cannot be shared with a sandbox child")


def share(frame: Any) -> SharedFrame:
    """Write ``frame`` (a DataFrame with a RangeIndex) into a sealed memfd."""
    import pandas as pd

    index = frame.index
    if not isinstance(index, pd.RangeIndex):
        raise TypeError("only frames with a RangeIndex can be shared with a sandbox child")
    columns: list[dict[str, Any]] = []
    pending: list[tuple[int, Any]] = []
    at = 0
    for name in frame.columns:
        entry, buffers = _column_buffers(frame[name])
        spans: list[list[int] | None] = []
        for buffer in buffers:
            if buffer is None:
                spans.append(None)
                continue
            view = memoryview(buffer).cast("B")
            spans.append([at, view.nbytes])
            pending.append((at, view))
            at = _aligned(at + view.nbytes)
        entry.update(name=str(name), buffers=spans)
        columns.append(entry)
    header = orjson.dumps(
        {"rows": len(frame), "index": [index.start, index.stop, index.step], "columns": columns}
    )
    base = _aligned(_HEAD.size + len(header))
    size = max(base + at, 1)
    fd = os.memfd_create("strategyq-frame", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[: _HEAD.size + len(header)] = _HEAD.pack(_MAGIC, len(header)) + header
            for offset, view in pending:
                m[base + offset : base + offset + view.nbytes] = view
        # The writable mapping is gone: from here on nobody can change these bytes.
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return SharedFrame(fd, size)


def attach(fd: int) -> Any:
    """The DataFrame over a shared frame's memfd (in the child, before lock-down)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from pandas.core.internals.construction import arrays_to_mgr

    size = os.fstat(fd).st_size
    if fcntl.fcntl(fd, fcntl.F_GET_SEALS) & _SEALS != _SEALS:
        raise ValueError("the frame handed to the child is not sealed")
    # Private: what the strategy writes into its frame stays in its own pages.
    m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    magic, length = _HEAD.unpack_from(m)
    if magic != _MAGIC:
        raise ValueError("not a shared frame")
    header = orjson.loads(m[_HEAD.size : _HEAD.size + length])
    base = _aligned(_HEAD.size + length)
    rows = int(header["rows"])
    data: dict[str, Any] = {}
    for column in header["columns"]:
        spans = column["buffers"]
        if column["kind"] == "numpy":
            offset, nbytes = spans[0]
            dtype = np.dtype(column["dtype"])
            data[column["name"]] = np.frombuffer(
                m, dtype=dtype, count=nbytes // dtype.itemsize, offset=base + offset
            )
            continue
        buffers = [
            None
            if span is None
            else pa.py_buffer(memoryview(m)[base + span[0] : base + span[0] + span[1]])
            for span in spans
        ]
        if column.get("encoding") == "dictionary":
            data[column["name"]] = _python_strings(column, buffers)
            continue
        array = pa.Array.from_buffers(
            pa.large_string(), int(column["length"]), buffers, int(column["null_count"])
        )
        if column["kind"] == "string":
            dtype = pd.StringDtype("pyarrow", na_value=np.nan if column["na"] == "nan" else pd.NA)
            data[column["name"]] = pd.arrays.ArrowStringArray(
                pa.chunked_array([array]),
                dtype=dtype,  # type: ignore[call-arg]  # pandas-stubs lag pandas 3
            )
        else:
            # Inferred as DataFrame(dict) infers a column of Python strings (pandas' `str`).
            values = array.to_numpy(zero_copy_only=False)
            data[column["name"]] = pd.Series(values, copy=False).array
    start, stop, step = header["index"]
    index = pd.RangeIndex(start, stop, step)
    assert len(index) == rows
    # Every page of the forking parent a child touches is copied, so the child builds
    # its frame the short way: the labels as the `str` Index that DataFrame(dict)
    # would infer (made from one Arrow array, without inference), and the frame from
    # the columns as they are (one block each, not consolidated, so nothing is copied),
    # as DataFrame(data, copy=False) would; each column's length is checked first.
    labels = pa.array(list(data), type=pa.large_string())
    columns = pd.Index(
        pd.arrays.ArrowStringArray(
            pa.chunked_array([labels]),
            dtype=pd.StringDtype("pyarrow", na_value=np.nan),  # type: ignore[call-arg]
        )
    )
    for name, values in data.items():
        if len(values) != rows:
            raise ValueError(f"the shared frame's column {name!r} has the wrong length")
    manager = arrays_to_mgr(
        list(data.values()), columns, index, verify_integrity=False, consolidate=False
    )
    return pd.DataFrame._from_mgr(manager, axes=manager.axes)  # type: ignore[attr-defined]


def _python_strings(column: dict[str, Any], buffers: list[Any]) -> Any:
    """A dictionary-encoded column (``buffers``: its codes, then its dictionary's Arrow
    buffers) as the Python-backed ``str`` array the loader made: each distinct string
    one object, each row a pointer to it."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    codes = np.frombuffer(buffers[0], dtype="<i4")
    if len(codes) != int(column["length"]):
        raise ValueError(f"the shared frame's column {column['name']!r} has the wrong length")
    dictionary = pa.Array.from_buffers(
        pa.large_string(),
        int(column["dictionary_length"]),
        buffers[1:],
        int(column["dictionary_null_count"]),
    )
    na = np.nan if column["na"] == "nan" else pd.NA
    names = np.array(
        [na if name is None else name for name in dictionary.to_pylist()], dtype=object
    )
    dtype = pd.StringDtype("python", na_value=na)  # type: ignore[call-arg]
    return pd.arrays.StringArray(names.take(codes), dtype=dtype)  # type: ignore[call-arg]


class FrameRefused(ValueError):
    """A memfd the trusted side will not read: not sealed, or not a well-formed frame."""


@dataclass
class SealedFrame:
    """A shared frame mapped read-only by a trusted process (the executor).

    The mapping is shared, so it costs no copy: its pages are the memfd's own,
    which the sandbox host already holds. The seals were verified before the
    mapping was made, so no process (a sandbox child included) can change a byte
    of it for as long as it lives.
    """

    mapping: mmap.mmap
    rows: int
    inode: tuple[int, int]
    _base: int
    _columns: dict[str, dict[str, Any]]

    @classmethod
    def open(cls, fd: int) -> SealedFrame:
        """Map the memfd ``fd`` read-only; ``fd`` stays the caller's to close.

        Raises:
            FrameRefused: it lacks a seal (write, grow, shrink, seal) or its header is
                not a frame's.
        """
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError as exc:
            raise FrameRefused(f"not a memfd: {exc}") from None
        if seals & _SEALS != _SEALS:
            raise FrameRefused("the frame's memfd is not sealed against writes")
        st = os.fstat(fd)
        if st.st_size < _HEAD.size:
            raise FrameRefused("the frame's memfd is too short")
        mapping = mmap.mmap(fd, st.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        try:
            magic, length = _HEAD.unpack_from(mapping)
            if magic != _MAGIC or _HEAD.size + length > st.st_size:
                raise FrameRefused("not a shared frame")
            header = orjson.loads(mapping[_HEAD.size : _HEAD.size + length])
            columns = {str(c["name"]): c for c in header["columns"]}
            rows = int(header["rows"])
            if header["index"] != [0, rows, 1]:
                raise FrameRefused("the shared frame's index is not 0..rows")
        except FrameRefused:
            mapping.close()
            raise
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            mapping.close()
            raise FrameRefused(f"the shared frame's header is malformed: {exc}") from None
        base = _aligned(_HEAD.size + length)
        return cls(mapping, rows, (st.st_dev, st.st_ino), base, columns)

    def _span(self, span: Any) -> tuple[int, int]:
        try:
            offset, nbytes = int(span[0]), int(span[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise FrameRefused("a buffer of the shared frame is malformed") from None
        if offset < 0 or nbytes < 0 or self._base + offset + nbytes > len(self.mapping):
            raise FrameRefused("a buffer of the shared frame lies outside it")
        return self._base + offset, nbytes

    def numbers(self, name: str, dtype: str) -> Any:
        """Column ``name`` as a read-only NumPy array over the mapping, if it is ``dtype``.

        Raises:
            FrameRefused: no such column, another dtype, or the wrong length.
        """
        import numpy as np

        column = self._columns.get(name)
        want = np.dtype(dtype)
        if column is None or column.get("kind") != "numpy" or column.get("dtype") != want.str:
            raise FrameRefused(f"the shared frame has no {dtype} column {name!r}")
        offset, nbytes = self._span(column["buffers"][0])
        if nbytes != self.rows * want.itemsize:
            raise FrameRefused(f"the shared frame's column {name!r} has the wrong length")
        return np.frombuffer(self.mapping, dtype=want, count=self.rows, offset=offset)

    def strings(self, name: str) -> Any:
        """Column ``name`` of strings, without nulls, as an Arrow array over the mapping:
        a string array, or a dictionary array (int32 codes) for a dictionary-encoded
        column.

        Raises:
            FrameRefused: no such column, a null in it, or its buffers do not hold.
        """
        import pyarrow as pa

        column = self._columns.get(name)
        if column is None or column.get("kind") not in ("string", "object_string"):
            raise FrameRefused(f"the shared frame has no string column {name!r}")
        if int(column["length"]) != self.rows or int(column["null_count"]) != 0:
            raise FrameRefused(f"the shared frame's column {name!r} has nulls or a wrong length")
        view = memoryview(self.mapping)
        buffers: list[Any] = []
        for span in column["buffers"]:
            if span is None:
                buffers.append(None)
                continue
            offset, nbytes = self._span(span)
            buffers.append(pa.py_buffer(view[offset : offset + nbytes]))
        try:
            array: Any
            if column.get("encoding") == "dictionary":
                codes = pa.Array.from_buffers(pa.int32(), self.rows, [None, buffers[0]], 0)
                dictionary = pa.Array.from_buffers(
                    pa.large_string(), int(column["dictionary_length"]), buffers[1:], 0
                )
                array = pa.DictionaryArray.from_arrays(codes, dictionary)
            else:
                array = pa.Array.from_buffers(pa.large_string(), self.rows, buffers, 0)
            # Offsets inside the data buffer, ascending, and every code inside the
            # dictionary: checked once, in C.
            array.validate(full=True)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise FrameRefused(f"the shared frame's column {name!r} is malformed: {exc}") from None
        return array
