"""Reading fragments: column groups (memory-mapped Arrow files) and deletion vectors, cached.

Data files are immutable, so anything derived from one (the opened table, a parsed
deletion vector, JSON values extracted from a column) can be cached by its path for the
life of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from .base import Storage
from .manifest import Fragment, field_column

__all__ = ["FileCache", "read_deletions"]

T = TypeVar("T")


class FileCache:
    """A small LRU cache for values derived from immutable files of one storage."""

    def __init__(self, storage: Storage, capacity: int = 512) -> None:
        self.storage = storage
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return,unused-ignore]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def table(self, path: str) -> pa.Table:
        """The Arrow table of a data file (memory-mapped for local storage)."""
        return self.get(("table", path), lambda: self.storage.read_arrow(path))

    def column(self, path: str, field_id: int) -> pa.Array:
        """One field of a data file as a single contiguous array."""

        def make() -> pa.Array:
            col = self.table(path).column(field_column(field_id))
            return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()

        return self.get(("column", path, field_id), make)

    def deletions(self, fragment: Fragment) -> np.ndarray:
        """Sorted physical offsets deleted from ``fragment`` in its committed state."""
        if fragment.deletions is None:
            return _EMPTY
        path = fragment.deletions
        return self.get(("deletions", path), lambda: read_deletions(self.storage, path))


_EMPTY = np.zeros(0, dtype=np.int64)
_EMPTY.setflags(write=False)


def read_deletions(storage: Storage, path: str) -> np.ndarray:
    """Load a deletion vector file."""
    table = storage.read_arrow(path)
    arr = np.asarray(table.column("offset").to_numpy(), dtype=np.int64)
    arr.setflags(write=False)
    return arr
