"""In-memory storage for ``mem://name`` urls (shared by handles of the same process)."""

from __future__ import annotations

import threading
import time

from .base import Storage, check_relative_path

__all__ = ["MemoryStorage"]

_STORES: dict[str, dict[str, tuple[bytes, float]]] = {}
_LOCK = threading.Lock()


class MemoryStorage(Storage):
    """A dataset held in process memory; lives until the process exits."""

    def __init__(self, name: str) -> None:
        self.url = f"mem://{name}"
        with _LOCK:
            self._files = _STORES.setdefault(name, {})

    def read(self, path: str) -> bytes:
        try:
            return self._files[check_relative_path(path)][0]
        except KeyError:
            raise FileNotFoundError(f"{self.url}/{path}") from None

    def exists(self, path: str) -> bool:
        return check_relative_path(path) in self._files

    def put(self, path: str, data: bytes) -> None:
        self._files[check_relative_path(path)] = (bytes(data), time.time())

    def put_if_absent(self, path: str, data: bytes) -> bool:
        with _LOCK:
            if check_relative_path(path) in self._files:
                return False
            self._files[path] = (bytes(data), time.time())
            return True

    def list(self, prefix: str) -> list[str]:
        pre = prefix.rstrip("/") + "/" if prefix else ""
        return sorted(p for p in list(self._files) if p.startswith(pre))

    def delete(self, path: str) -> None:
        self._files.pop(path, None)

    def modified_time(self, path: str) -> float:
        try:
            return self._files[path][1]
        except KeyError:
            raise FileNotFoundError(f"{self.url}/{path}") from None
