"""Local filesystem storage: data files are memory-mapped, commits use ``os.link``."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import IO

import pyarrow as pa

from .base import Storage, _read_ipc, check_relative_path

__all__ = ["LocalStorage"]


class LocalStorage(Storage):
    """A dataset folder on the local filesystem."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()
        self.url = str(self.root)

    def _path(self, path: str) -> Path:
        return self.root / check_relative_path(path)

    def read(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(self._path(path), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def open_input(self, path: str) -> IO[bytes]:
        return open(self._path(path), "rb")

    def put(self, path: str, data: bytes) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def put_if_absent(self, path: str, data: bytes) -> bool:
        # write a private temp file, fsync it, then hard-link it to the final name: the link
        # fails if the name exists, so exactly one writer wins and readers never see a partial file
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            _fsync_dir(target.parent)
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                out.append(rel.replace(os.sep, "/"))
        return sorted(out)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(path).unlink()

    def modified_time(self, path: str) -> float:
        return self._path(path).stat().st_mtime

    def read_arrow(self, path: str) -> pa.Table:
        return _read_ipc(pa.memory_map(str(self._path(path)), "r"), path)

    def write_arrow(self, path: str, table: pa.Table) -> int:
        from .base import write_ipc

        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(target), "wb") as sink:
            write_ipc(sink, table)
            size = int(sink.tell())
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return size


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
