"""Query results: rows with decoded media, scores best first, Arrow / pandas export.

Only the rows that won a search are ever fetched; their media is decoded when a row is
accessed (``results[i]["image"]`` is a ``PIL.Image.Image``), never for the losers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from .types import ColumnType, Image, ReadContext, Video

__all__ = ["Results"]


class Results:
    """The rows a query returned.

    ``len(results)``, iteration and ``results[i]`` give row dicts (images as PIL images,
    JSON as dict/list, embeddings as numpy, audio as bytes); ``results["col"]`` gives one
    column as a list; ``results.scores`` the similarity (or distance) of each row, best
    first, or ``None`` when the query had no vector ranking.
    """

    def __init__(self, table: pa.Table, column_types: Mapping[str, ColumnType | None],
                 scores: np.ndarray | None = None, context: ReadContext | None = None) -> None:
        self._table = table
        self._types = dict(column_types)
        self._scores = scores
        self._ctx = context
        self._rows: list[dict[str, Any]] | None = None

    @property
    def columns(self) -> list[str]:
        """The result column names, in SELECT order."""
        return list(self._table.column_names)

    @property
    def scores(self) -> np.ndarray | None:
        """Similarity of each row to the query vector (distance for L2), best first."""
        return self._scores

    def __len__(self) -> int:
        return int(self._table.num_rows)

    def _decode(self, name: str, value: Any) -> Any:
        ctype = self._types.get(name)
        return value if ctype is None else ctype.from_arrow(value, self._ctx)

    def _row(self, i: int) -> dict[str, Any]:
        return {name: self._decode(name, self._table.column(name)[i].as_py()) for name in self._table.column_names}

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self._table.column_names:
                raise KeyError(f"no column {key!r} in the results; columns: {', '.join(self.columns)}")
            return [self._decode(key, v) for v in self._table.column(key).to_pylist()]
        n = len(self)
        i = int(key)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"result row {key} out of range ({n} rows)")
        return self._row(i)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self._row(i)

    def to_arrow(self) -> pa.Table:
        """The rows in stored form (media as encoded bytes, JSON as text); scores as ``score`` if not selected."""
        table = self._table
        if self._scores is not None and "score" not in table.column_names:
            table = table.append_column("score", pa.array(self._scores, type=pa.float32()))
        return table

    def to_pandas(self) -> Any:
        """The rows as a pandas DataFrame (stored form, like :meth:`to_arrow`)."""
        return self.to_arrow().to_pandas()

    def to_pylist(self) -> list[dict[str, Any]]:
        """The rows as decoded dicts (same as ``list(results)``)."""
        return list(self)

    def _cell(self, name: str, value: Any) -> str:
        ctype = self._types.get(name)
        if value is None:
            return "None"
        if isinstance(ctype, Image) and isinstance(value, dict):
            mime = str(value.get("mime") or "").split("/")[-1].upper()
            return f"<Image {value.get('width')}x{value.get('height')} {mime}>"
        if isinstance(value, dict) and "data" in value and isinstance(value.get("data"), bytes):
            return f"<{type(ctype).__name__ if ctype else 'Blob'} {len(value['data'])} bytes>"
        if isinstance(ctype, Video):
            return repr(ctype.from_arrow(value))
        if isinstance(value, list) and len(value) > 4 and all(isinstance(x, (int, float)) for x in value):
            return "[" + ", ".join(f"{x:.3g}" for x in value[:3]) + f", ... ({len(value)})]"
        text = str(value)
        return text if len(text) <= 40 else text[:37] + "..."

    def __repr__(self) -> str:
        n = len(self)
        shown = min(n, 10)
        header = self.columns + (["score"] if self._scores is not None and "score" not in self.columns else [])
        rows = []
        for i in range(shown):
            cells = [self._cell(c, self._table.column(c)[i].as_py()) for c in self.columns]
            if len(header) > len(self.columns) and self._scores is not None:
                cells.append(f"{self._scores[i]:.4f}")
            rows.append(cells)
        widths = [max([len(h)] + [len(r[j]) for r in rows]) for j, h in enumerate(header)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)),
                 "-+-".join("-" * w for w in widths)]
        lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
        more = f"\n... {n - shown} more rows" if n > shown else ""
        return f"Results({n} rows)\n" + "\n".join(lines) + more
