"""The storage interface: three primitives (put, put-if-absent, list/read) over a root.

Datasets never touch files directly; everything goes through a :class:`Storage`, so a new
backend (S3, GCS...) needs only these methods. Paths are relative to the dataset root,
use ``/`` and never escape it.
"""

from __future__ import annotations

import abc
from typing import IO

import pyarrow as pa

from ..errors import CorruptDatasetError

__all__ = ["Storage", "check_relative_path"]


def check_relative_path(path: str) -> str:
    """Reject paths that are absolute or escape the dataset root (``../x``)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise CorruptDatasetError(
            f"invalid path {path!r} in dataset: paths must be relative, '/'-separated and stay inside the dataset"
        )
    return path


class Storage(abc.ABC):
    """Byte storage rooted at one dataset url."""

    url: str

    @abc.abstractmethod
    def read(self, path: str) -> bytes:
        """The whole content of ``path``; ``FileNotFoundError`` when absent."""

    @abc.abstractmethod
    def put(self, path: str, data: bytes) -> None:
        """Write ``path`` durably (it must be a new, uniquely named file)."""

    @abc.abstractmethod
    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Atomically create ``path`` with ``data``; False (and nothing written) if it exists."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under the folder ``prefix`` (recursively)."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove ``path`` (no error when absent)."""

    @abc.abstractmethod
    def modified_time(self, path: str) -> float:
        """Last modification time of ``path`` (seconds since the epoch)."""

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        try:
            self.read_range(path, 0, 0)
        except FileNotFoundError:
            return False
        return True

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``offset``."""
        return self.read(path)[offset: offset + length]

    def open_input(self, path: str) -> IO[bytes]:
        """A seekable binary file over ``path``."""
        import io

        return io.BytesIO(self.read(path))

    def read_arrow(self, path: str) -> pa.Table:
        """An Arrow IPC file as a table (zero-copy where the backend can memory-map)."""
        return _read_ipc(pa.BufferReader(self.read(path)), path)

    def write_arrow(self, path: str, table: pa.Table) -> int:
        """Write ``table`` as an uncompressed Arrow IPC file (one record batch); returns bytes written."""
        sink = pa.BufferOutputStream()
        write_ipc(sink, table)
        buf = sink.getvalue()
        self.put(path, buf.to_pybytes())
        return int(buf.size)


def write_ipc(sink: pa.NativeFile | str, table: pa.Table) -> None:
    """Write ``table`` as one record batch, uncompressed, so readers can memory-map it zero-copy."""
    table = table.combine_chunks()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


def _read_ipc(source: pa.NativeFile, path: str) -> pa.Table:
    try:
        return pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise CorruptDatasetError(f"data file {path!r} is not a readable Arrow IPC file: {exc}") from exc
