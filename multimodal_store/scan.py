"""Reading a fragment's columns for expression evaluation.

:class:`FragmentSource` implements :class:`multimodal_store.expr.ColumnSource` over some rows
of one fragment (its live rows, or the winners of a search). Only the columns an
expression reads are touched. JSON key lookups are extracted once per immutable data file
and cached, so repeated queries on ``metadata->>'key'`` do not re-parse the documents.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .storage.transaction import FragmentView
from .types import Json

if TYPE_CHECKING:
    from .dataset import Dataset
    from .expr import Expr
    from .jsonpath import JsonValues

__all__ = ["FragmentSource", "fragment_mask", "to_predicate"]


def to_predicate(where: Expr | str) -> Expr:
    """An expression from an :class:`Expr` or a SQL predicate string."""
    from .expr import Expr
    from .sql import parse_where

    if isinstance(where, str):
        return parse_where(where)
    if not isinstance(where, Expr):
        raise TypeError(f"where must be an expression or a SQL predicate string, got {type(where).__name__}")
    return where


class FragmentSource:
    """Columns of the rows ``offsets`` (physical) of one fragment."""

    def __init__(self, ds: Dataset, fv: FragmentView, offsets: np.ndarray | None = None) -> None:
        self._ds = ds
        self._fv = fv
        self._all_live = offsets is None and len(fv.deleted) == 0
        # every physical row, in order, needs no offsets (and no take)
        self._offsets = offsets if offsets is not None else (None if self._all_live else fv.live_offsets())

    @property
    def num_rows(self) -> int:
        return self._fv.rows if self._offsets is None else len(self._offsets)

    def _take(self, arr: pa.Array) -> pa.Array:
        if self._offsets is None:
            return arr
        return arr.take(pa.array(self._offsets, type=pa.int64()))

    def column(self, name: str) -> pa.Array:
        arr = self._ds.physical_column(self._fv, self._ds.schema.field(name).id)
        if isinstance(arr.type, pa.ExtensionType):
            arr = arr.storage
        return self._take(arr)

    def is_json(self, name: str) -> bool:
        return isinstance(self._ds.schema[name], Json)

    def json_values(self, name: str, path: tuple[str | int, ...]) -> JsonValues:
        from .jsonpath import json_values

        fid = self._ds.schema.field(name).id
        group = next((g.path for g in self._fv.groups if fid in g.fields), None)

        def physical() -> JsonValues:
            arr = self._ds.physical_column(self._fv, fid)
            return json_values(arr.storage if isinstance(arr.type, pa.ExtensionType) else arr, path)

        if group is None:  # a column added after this fragment was written: its default for every row
            values = physical()
        else:
            values = self._ds._cache.get(("json", group, fid, path), physical)
        return values if self._offsets is None else values.take(self._offsets)


def fragment_mask(ds: Dataset, fv: FragmentView, predicate: Expr, params: Any = None) -> np.ndarray:
    """Boolean mask over the live rows of ``fv`` (NULL counts as false)."""
    from .expr import evaluate, mask_from

    return mask_from(evaluate(predicate, FragmentSource(ds, fv), params))
