"""LangChain / Chroma style metadata filters translated to the store's expression tree.

A filter is a dict over the keys of ``Document.metadata``::

    {"genre": "sf"}                                  # equality
    {"year": {"$gte": 2000, "$lt": 2010}}            # several operators on one key: AND
    {"genre": "sf", "year": {"$gt": 2000}}           # several keys: AND
    {"$or": [{"genre": "sf"}, {"tags": {"$in": ["a", "b"]}}]}

Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists`` on a key, ``$and $or`` (a
non-empty list of filters) at any level. The tree is built with
:func:`multimodal_store.col` (``col(column)[key] ...``), never as SQL text, so keys and
values need no quoting.

Semantics (Chroma's documented behaviour; JSON ``null`` counts as a missing key)
------------------------------------------------------------------------------
* Comparison is typed: a string operand matches string values only, a number matches
  numbers only (``1`` equals ``1.0``; ``True`` is not a number) and a bool matches bools
  only. Lists and objects stored in metadata never equal a scalar.
* ``$eq``, ``$in`` and the orderings need the key: rows without it never match.
* ``$ne`` and ``$nin`` match every row whose value is not equal to (not among) the
  operand, **including rows without the key** and rows holding another type (Chroma >= 1.0).
* ``$gt $gte $lt $lte`` take a number (numeric order) or a string (code-point order,
  i.e. the byte order of UTF-8); values of another type never match.
* ``$in: []`` matches nothing, ``$nin: []`` everything. ``$exists: True/False`` tests
  whether the key holds a non-null value.
* Operands are ``str``, ``int``, ``float`` (finite) or ``bool``; anything else (``None``,
  lists as ``$eq`` operands, unknown ``$`` operators) raises :class:`ValueError`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from multimodal_store import col
from multimodal_store.expr import And, Expr, Or

__all__ = ["COMPARISON_OPERATORS", "LOGICAL_OPERATORS", "filter_to_expr"]

COMPARISON_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"})
LOGICAL_OPERATORS = frozenset({"$and", "$or"})
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


def filter_to_expr(filter: Mapping[str, Any] | None, column: str = "metadata") -> Expr | None:
    """The store expression selecting the rows whose JSON ``column`` matches ``filter``.

    ``None`` and ``{}`` give ``None`` (no filter). Raises :class:`ValueError` for a
    malformed filter (see the module documentation for the language).
    """
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise ValueError(f"a filter must be a dict such as {{'year': {{'$gt': 2000}}}}, got {type(filter).__name__}")
    if not filter:
        return None
    return _filter(filter, column)


def _filter(filter: Mapping[str, Any], column: str) -> Expr:
    if not isinstance(filter, Mapping) or not filter:
        raise ValueError(f"each filter must be a non-empty dict, got {filter!r}")
    parts = []
    for key, value in filter.items():
        if not isinstance(key, str):
            raise ValueError(f"filter keys must be strings, got {key!r}")
        if key in LOGICAL_OPERATORS:
            if not isinstance(value, Sequence) or isinstance(value, (str, bytes)) or not value:
                raise ValueError(f"{key} needs a non-empty list of filters, got {value!r}")
            subs = tuple(_filter(v, column) for v in value)
            parts.append(subs[0] if len(subs) == 1 else (And(subs) if key == "$and" else Or(subs)))
        elif key.startswith("$"):
            raise ValueError(
                f"unknown operator {key!r} at the top of a filter; use $and / $or there, "
                f"and {', '.join(sorted(COMPARISON_OPERATORS))} inside a key's dict"
            )
        else:
            parts.append(_key_filter(key, value, column))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _key_filter(key: str, condition: Any, column: str) -> Expr:
    if not isinstance(condition, Mapping):
        return _compare(key, "$eq", condition, column)
    if not condition:
        raise ValueError(f"the condition on {key!r} is an empty dict; give an operator such as {{'$eq': value}}")
    parts = []
    for op, operand in condition.items():
        if op not in COMPARISON_OPERATORS:
            raise ValueError(
                f"unknown operator {op!r} on {key!r}; supported: {', '.join(sorted(COMPARISON_OPERATORS))} "
                "(nested objects cannot be compared)"
            )
        parts.append(_compare(key, op, operand, column))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _scalar(op: str, key: str, value: Any) -> str | int | float | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{op} on {key!r}: the operand must be finite, got {value!r}")
        return value
    # numpy scalars and the like
    item = getattr(value, "item", None)
    if callable(item):
        return _scalar(op, key, item())
    raise ValueError(f"{op} on {key!r}: the operand must be a str, int, float or bool, got {value!r}")


def _compare(key: str, op: str, operand: Any, column: str) -> Expr:
    value = col(column)[key]
    if op == "$exists":
        if not isinstance(operand, bool):
            raise ValueError(f"$exists on {key!r} takes True or False, got {operand!r}")
        return ~value.is_null() if operand else value.is_null()
    if op in ("$in", "$nin"):
        if not isinstance(operand, Sequence | set | frozenset) or isinstance(operand, str | bytes):
            raise ValueError(f"{op} on {key!r} takes a list of values, got {operand!r}")
        values = [_scalar(op, key, v) for v in operand]
        if op == "$in":
            return value.isin(values)
        return value.not_in(values) | value.is_null()
    scalar = _scalar(op, key, operand)
    if op == "$eq":
        return value == scalar
    if op == "$ne":
        return (value != scalar) | value.is_null()
    if isinstance(scalar, bool):
        raise ValueError(f"{op} on {key!r} compares numbers or strings, got the bool {scalar!r}")
    result: Expr = _ORDER[op](value, scalar)
    return result
