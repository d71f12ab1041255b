"""Normalising what users pass to ``append`` / ``upsert`` into columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import DataError

__all__ = ["Columns", "to_columns"]

Columns = dict[str, Any]  # name -> list | numpy array | pyarrow array, all of one length


def _is_column_value(v: Any) -> bool:
    if isinstance(v, (list, tuple, pa.Array, pa.ChunkedArray)):
        return True
    if isinstance(v, np.ndarray):
        return v.ndim >= 1
    return hasattr(v, "detach") and hasattr(v, "shape") and len(v.shape) >= 1  # torch tensor


def to_columns(rows: Any) -> tuple[Columns, int]:
    """Turn a list of row dicts, a dict of columns, a pyarrow Table or a pandas DataFrame into columns.

    A dict whose values are scalars (str, numbers, dicts, None) is taken as one row.
    Returns the columns and the row count.
    """
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        return {name: rows.column(name) for name in rows.column_names}, rows.num_rows
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "columns") and hasattr(rows, "to_dict"):
        cols: Columns = {}
        for name in rows.columns:
            series = rows[name]
            values = series.tolist()
            cols[str(name)] = [None if _is_nan(v) else v for v in values]
        return cols, len(rows)
    if isinstance(rows, Mapping):
        if rows and all(_is_column_value(v) for v in rows.values()):
            cols = {}
            n: int | None = None
            for name, v in rows.items():
                if hasattr(v, "detach"):
                    v = v.detach().cpu().numpy()
                length = len(v)
                if n is not None and length != n:
                    raise DataError(
                        f"columns have different lengths: {name!r} has {length} values, expected {n}"
                    )
                n = length
                cols[str(name)] = v
            return cols, int(n or 0)
        rows = [rows]
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        names: dict[str, None] = {}
        for i, r in enumerate(rows):
            if not isinstance(r, Mapping):
                raise DataError(
                    f"append expects a list of row dicts, a dict of columns, a pyarrow Table or a pandas "
                    f"DataFrame; row {i} is a {type(r).__name__}"
                )
            for k in r:
                names.setdefault(str(k), None)
        return {name: [r.get(name) for r in rows] for name in names}, len(rows)
    raise DataError(
        "append expects a list of row dicts, a dict of columns, a pyarrow Table or a pandas DataFrame; "
        f"got {type(rows).__name__}"
    )


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v
