"""LlamaIndex ``MetadataFilters`` as multimodal-store expression trees.

Every filter becomes a two-valued predicate (TRUE or FALSE, never NULL), so ``NOT``, ``NE`` and
``NIN`` behave exactly as in LlamaIndex's own ``SimpleVectorStore``
(``llama_index.core.vector_stores.utils.build_metadata_filter_fn``), which evaluates
``metadata.get(key)`` with plain Python operators:

* a missing key (or a JSON ``null``) matches only ``NE``, ``NIN`` and ``IS_EMPTY``;
* equality is Python's: ``1 == 1.0``, and ``True == 1`` / ``False == 0`` (booleans are ints);
  a string never equals a number; a list value for ``EQ`` / ``NE`` compares whole lists;
* ``CONTAINS`` / ``ANY`` / ``ALL`` test list membership, or a substring when the metadata
  value is a string; ``ALL`` of an empty list matches every present value, ``ANY`` none;
* ``TEXT_MATCH`` (``_INSENSITIVE``) is a substring test on string values;
* ``IS_EMPTY`` matches a missing key, ``null``, ``""`` and ``[]``;
* conditions: ``AND`` all, ``OR`` any, ``NOT`` none of the filters; an empty filter list
  matches everything. Nested ``MetadataFilters`` are supported (``SimpleVectorStore`` refuses
  them) with the same rules applied recursively.

Where LlamaIndex raises ``TypeError`` (ordering a string against a number, ``CONTAINS`` of a
number in a string, a text match on a non-string) the filter simply does not match here.
A scalar value given to ``IN`` / ``NIN`` / ``ANY`` / ``ALL`` is taken as a one-element list.

The keys ``doc_id``, ``document_id`` and ``ref_doc_id`` are read from the store's ref-doc-id
column (else, for ``ds.ingest`` rows, the source column; ``"None"`` when a node has neither),
as ``SimpleVectorStore`` overwrites them with the node's ``ref_doc_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from multimodal_store import col, lit
from multimodal_store.expr import Expr, func
from multimodal_store.jsonpath import dumps_compact

__all__ = ["REF_DOC_KEYS", "filters_to_expr"]

#: Filter keys that LlamaIndex's own stores answer with the node's ``ref_doc_id``.
REF_DOC_KEYS = frozenset({"doc_id", "document_id", "ref_doc_id"})

_TRUE: Expr = lit(True)
_FALSE: Expr = lit(False)
_ORDER = {
    FilterOperator.GT: (">", lambda a, b: a > b),
    FilterOperator.GTE: (">=", lambda a, b: a >= b),
    FilterOperator.LT: ("<", lambda a, b: a < b),
    FilterOperator.LTE: ("<=", lambda a, b: a <= b),
}


def _is_true(e: Expr) -> Expr:
    """``e IS TRUE``: NULL becomes FALSE, so that negations stay two-valued."""
    return func("coalesce", e, _FALSE)


def _any(parts: Sequence[Expr]) -> Expr:
    if not parts:
        return _FALSE
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out


def _all(parts: Sequence[Expr]) -> Expr:
    if not parts:
        return _TRUE
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _python_equals(v: Any) -> list[Any]:
    """The JSON scalars equal to ``v`` under Python's ``==`` (1 also equals true, 0 false)."""
    out = [v]
    if _is_number(v):
        if v == 1:
            out.append(True)
        elif v == 0:
            out.append(False)
    return out


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _JsonKey:
    """Predicates on one key of the JSON metadata column (NULL only where the key is missing)."""

    def __init__(self, metadata_column: str, key: str) -> None:
        self.value = col(metadata_column)[key]

    def present(self) -> Expr:
        return self.value.is_not_null()

    def eq(self, v: Any) -> Expr:
        if isinstance(v, (list, tuple)):  # whole-list equality: same JSON text, and not a string
            return (self.value.astext == dumps_compact(list(v))) & ~self.value.like("%")
        return _any([self.value == x for x in _python_equals(v)])

    def order(self, op: FilterOperator, v: Any) -> Expr:
        sql_op, py_op = _ORDER[op]
        parts = [_compare(self.value, sql_op, v)]
        if _is_number(v):  # booleans order as 0 / 1 in Python
            parts += [self.value == b for b in (True, False) if py_op(int(b), v)]
        return _any(parts)

    def contains(self, v: Any) -> Expr:
        return _any([self.value.contains(x) for x in _python_equals(v)])

    def text_match(self, v: str, insensitive: bool) -> Expr:
        pattern = f"%{_escape_like(v)}%"
        return self.value.ilike(pattern) if insensitive else self.value.like(pattern)

    def is_empty(self) -> Expr:
        empty_list = (self.value.astext == "[]") & ~self.value.like("%")
        return self.value.is_null() | (self.value == "") | empty_list


class _RefDocKey:
    """Predicates on the ref-doc-id text column (else the source column, as for ingested rows),
    read as ``"None"`` where a node has neither."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.value = func("coalesce", *[col(c) for c in columns], lit("None"))

    def present(self) -> Expr:
        return _TRUE

    def eq(self, v: Any) -> Expr:
        return (self.value == v) if isinstance(v, str) else _FALSE

    def order(self, op: FilterOperator, v: Any) -> Expr:
        return _compare(self.value, _ORDER[op][0], v) if isinstance(v, str) else _FALSE

    def contains(self, v: Any) -> Expr:
        return self.value.contains(v) if isinstance(v, str) else _FALSE

    def text_match(self, v: str, insensitive: bool) -> Expr:
        pattern = f"%{_escape_like(v)}%"
        return self.value.ilike(pattern) if insensitive else self.value.like(pattern)

    def is_empty(self) -> Expr:
        return self.value == ""


def _compare(e: Expr, op: str, v: Any) -> Expr:
    return {">": e > v, ">=": e >= v, "<": e < v, "<=": e <= v}[op]


def _check_value(f: MetadataFilter, *, scalar: bool = False, string: bool = False) -> None:
    v = f.value
    if string and not isinstance(v, str):
        raise ValueError(f"filter {f.key!r} {f.operator.name}: the value must be a string, got {v!r}")
    if scalar and (v is None or isinstance(v, (list, tuple))):
        raise ValueError(f"filter {f.key!r} {f.operator.name}: the value must be a string or number, got {v!r}")


def _leaf(f: MetadataFilter, metadata_column: str, ref_doc_id_column: str | None,
          source_column: str | None) -> Expr:
    key: _JsonKey | _RefDocKey
    ref_columns = [c for c in (ref_doc_id_column, source_column) if c is not None]
    if f.key in REF_DOC_KEYS and ref_columns:
        key = _RefDocKey(ref_columns)
    else:
        key = _JsonKey(metadata_column, f.key)
    op, v = f.operator, f.value
    if op == FilterOperator.IS_EMPTY:
        return _is_true(key.is_empty())
    if op in (FilterOperator.EQ, FilterOperator.NE):
        eq = _FALSE if v is None else _is_true(key.eq(v))
        return eq if op == FilterOperator.EQ else ~eq
    if op in _ORDER:
        _check_value(f, scalar=True)
        return _is_true(key.order(op, v))
    if op in (FilterOperator.IN, FilterOperator.NIN):
        if v is None:
            raise ValueError(f"filter {f.key!r} {op.name}: the value must be a list")
        hit = _is_true(_any([key.eq(x) for x in _as_list(v)]))
        return hit if op == FilterOperator.IN else ~hit
    if op == FilterOperator.CONTAINS:
        _check_value(f, scalar=True)
        return _is_true(key.contains(v))
    if op in (FilterOperator.ANY, FilterOperator.ALL):
        if v is None:
            raise ValueError(f"filter {f.key!r} {op.name}: the value must be a list")
        parts = [key.contains(x) for x in _as_list(v)]
        if op == FilterOperator.ANY:
            return _is_true(_any(parts))
        return _is_true(_all(parts) if parts else key.present())
    if op in (FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE):
        _check_value(f, string=True)
        return _is_true(key.text_match(str(v), op == FilterOperator.TEXT_MATCH_INSENSITIVE))
    raise ValueError(f"unsupported filter operator {op!r}")


def filters_to_expr(
    filters: MetadataFilters | None,
    metadata_column: str = "metadata",
    ref_doc_id_column: str | None = "ref_doc_id",
    source_column: str | None = None,
) -> Expr | None:
    """The expression selecting the rows that ``filters`` keep (``None``: no filtering).

    Args:
        filters: LlamaIndex filters, possibly nested.
        metadata_column: the JSON column holding each node's metadata.
        ref_doc_id_column: the text column answering ``doc_id`` / ``document_id`` /
            ``ref_doc_id`` keys, or ``None`` to read those keys from the metadata.
        source_column: a text column read for those keys where the ref-doc-id column is null
            (``ds.ingest`` rows, whose ``ref_doc_id`` is their source file).
    """
    if filters is None or not filters.filters:
        return None
    return _group(filters, metadata_column, ref_doc_id_column, source_column)


def _group(filters: MetadataFilters, metadata_column: str, ref_doc_id_column: str | None,
           source_column: str | None) -> Expr:
    if not filters.filters:
        return _TRUE
    parts = [
        _group(f, metadata_column, ref_doc_id_column, source_column) if isinstance(f, MetadataFilters)
        else _leaf(f, metadata_column, ref_doc_id_column, source_column)
        for f in filters.filters
    ]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return _all(parts)
    if condition == FilterCondition.OR:
        return _any(parts)
    if condition == FilterCondition.NOT:
        return ~_any(parts)
    raise ValueError(f"unsupported filter condition {condition!r}")
