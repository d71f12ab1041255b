"""Typed, immutable query expressions and their vectorised evaluation.

Build expressions in Python (LanceDB / Polars style)::

    from multimodal_store.expr import col, lit, param
    pred = (col("content_type") == "image") & (col("metadata")["department"].astext == "eng")
    pred = col("year").between(2000, 2010) | col("tags").contains("cat")

or parse them from SQL with :func:`multimodal_store.sql.parse_where`; both give the same
tree. ``&``, ``|`` and ``~`` combine predicates (``and``/``or``/``not`` and ``if expr:``
raise ``TypeError`` because an expression has no truth value).

:func:`evaluate` runs an expression over a :class:`ColumnSource` with ``pyarrow.compute``
kernels and SQL three-valued logic (NULL propagates; :func:`mask_from` turns the result
into a numpy mask where NULL is false). JSON columns follow the rules documented in
:mod:`multimodal_store.jsonpath`. LIKE patterns use ``%`` and ``_`` with backslash as the
escape character (as in Postgres). NaN is neither equal to nor ordered against anything.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import functools
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol, runtime_checkable
from typing import Literal as TypingLiteral

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import ColumnNotFoundError, ParameterError, QueryError
from .jsonpath import (
    KIND_BOOL,
    KIND_CONTAINER,
    KIND_MISSING,
    KIND_NUMBER,
    KIND_STRING,
    JsonValues,
    as_float,
    json_values,
    parse_documents,
)

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "SCALAR_FUNCTIONS",
    "VECTOR_FUNCTIONS",
    "Aggregate",
    "And",
    "Between",
    "Column",
    "ColumnSource",
    "Compare",
    "Contains",
    "Expr",
    "Function",
    "In",
    "IsNull",
    "JsonPath",
    "Like",
    "Literal",
    "Not",
    "Or",
    "Param",
    "Star",
    "TableSource",
    "agg",
    "bind_params",
    "col",
    "cosine_similarity",
    "evaluate",
    "func",
    "inner_product",
    "l2_distance",
    "lit",
    "lookup_param",
    "mask_from",
    "normalize_count",
    "normalize_scalar",
    "normalize_vector",
    "param",
    "param_label",
    "structural_key",
    "to_sql",
]

COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
VECTOR_FUNCTIONS = {"cosine_similarity": "cosine", "inner_product": "ip", "l2_distance": "l2"}
SCALAR_FUNCTIONS = frozenset({"lower", "upper", "length", "abs", "coalesce"})
AGGREGATE_FUNCTIONS = frozenset({"count", "sum", "avg", "min", "max"})
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_PC_COMPARE: dict[str, Callable[..., Any]] = {
    "=": pc.equal,
    "!=": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}

# precedence levels used when rendering SQL text
_P_OR, _P_AND, _P_NOT, _P_PRED, _P_ATOM = 1, 2, 3, 4, 5


# ---------------------------------------------------------------------------------------------
# expression nodes
# ---------------------------------------------------------------------------------------------


class Expr:
    """Base class of every expression node.

    Nodes are frozen dataclasses. ``==`` and the other comparison operators build
    :class:`Compare` nodes instead of comparing, so nodes hash by identity; use
    :meth:`equals` for structural equality.
    """

    __array_ufunc__ = None  # numpy defers to our reflected operators (np.float32(1) < col("x"))
    _prec = _P_ATOM

    # -- comparison operators build Compare nodes -----------------------------------------
    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare("=", self, _to_expr(other))

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return Compare("!=", self, _to_expr(other))

    def __lt__(self, other: Any) -> Compare:
        return Compare("<", self, _to_expr(other))

    def __le__(self, other: Any) -> Compare:
        return Compare("<=", self, _to_expr(other))

    def __gt__(self, other: Any) -> Compare:
        return Compare(">", self, _to_expr(other))

    def __ge__(self, other: Any) -> Compare:
        return Compare(">=", self, _to_expr(other))

    __hash__ = object.__hash__

    # -- boolean combinators -------------------------------------------------------------
    def __and__(self, other: Any) -> And:
        return And((self, _to_expr(other)))

    def __rand__(self, other: Any) -> And:
        return And((_to_expr(other), self))

    def __or__(self, other: Any) -> Or:
        return Or((self, _to_expr(other)))

    def __ror__(self, other: Any) -> Or:
        return Or((_to_expr(other), self))

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of an expression ({self!r}) is ambiguous: combine conditions with "
            "& (and), | (or) and ~ (not) instead of and/or/not, and compare expressions with "
            ".equals() rather than =="
        )

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"expression {self!r} is not iterable")

    # -- predicate builders --------------------------------------------------------------
    def isin(self, values: Any) -> In:
        """``self IN (values...)``; ``values`` is an iterable of values/expressions or a :func:`param`."""
        return In(self, _in_values(values), False)

    def not_in(self, values: Any) -> In:
        """``self NOT IN (values...)``."""
        return In(self, _in_values(values), True)

    def like(self, pattern: Any) -> Like:
        """``self LIKE pattern`` (``%`` any run, ``_`` one character, ``\\`` escapes)."""
        return Like(self, _to_expr(pattern), False, False)

    def ilike(self, pattern: Any) -> Like:
        """Case-insensitive :meth:`like`."""
        return Like(self, _to_expr(pattern), True, False)

    def not_like(self, pattern: Any) -> Like:
        return Like(self, _to_expr(pattern), False, True)

    def not_ilike(self, pattern: Any) -> Like:
        return Like(self, _to_expr(pattern), True, True)

    def between(self, low: Any, high: Any) -> Between:
        """``low <= self AND self <= high``."""
        return Between(self, _to_expr(low), _to_expr(high), False)

    def not_between(self, low: Any, high: Any) -> Between:
        return Between(self, _to_expr(low), _to_expr(high), True)

    def is_null(self) -> IsNull:
        return IsNull(self, False)

    def is_not_null(self) -> IsNull:
        return IsNull(self, True)

    def contains(self, value: Any) -> Contains:
        """Substring test on text, membership test on lists and JSON arrays."""
        return Contains(self, _to_expr(value))

    # -- introspection -------------------------------------------------------------------
    def children(self) -> tuple[Expr, ...]:
        """The direct sub-expressions, in field order."""
        out: list[Expr] = []
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Expr):
                out.append(value)
            elif isinstance(value, tuple):
                out.extend(v for v in value if isinstance(v, Expr))
        return tuple(out)

    def walk(self) -> Iterator[Expr]:
        """This node and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def columns(self) -> set[str]:
        """Names of the columns the expression reads."""
        return {node.name for node in self.walk() if isinstance(node, Column)}

    def params(self) -> set[str | int]:
        """Keys of the parameters the expression uses (``str`` named, ``int`` positional)."""
        return {node.key for node in self.walk() if isinstance(node, Param)}

    def equals(self, other: object) -> bool:
        """Structural equality (``==`` builds a comparison instead)."""
        return isinstance(other, Expr) and structural_key(self) == structural_key(other)

    def transform(self, fn: Callable[[Expr], Expr | None]) -> Expr:
        """Rebuild the tree top-down: ``fn(node)`` returns a replacement or ``None`` to recurse."""
        replaced = fn(self)
        if replaced is not None:
            return replaced
        changes: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Expr):
                new = value.transform(fn)
                if new is not value:
                    changes[f.name] = new
            elif isinstance(value, tuple) and any(isinstance(v, Expr) for v in value):
                new_t = tuple(v.transform(fn) if isinstance(v, Expr) else v for v in value)
                if any(a is not b for a, b in zip(new_t, value, strict=True)):
                    changes[f.name] = new_t
        return replace(self, **changes) if changes else self  # type: ignore[type-var]

    def __repr__(self) -> str:
        return to_sql(self, abbreviate=True)

    __str__ = __repr__


@dataclass(frozen=True, eq=False, repr=False)
class Column(Expr):
    """A column of the dataset. ``col["key"]`` / ``col[0]`` read into a JSON column."""

    name: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"column name must be a non-empty str, got {self.name!r}")

    def __getitem__(self, key: str | int) -> JsonPath:
        return JsonPath(self, (_path_step(key),), False)


@dataclass(frozen=True, eq=False, repr=False)
class Star(Expr):
    """``*`` in a SELECT list (all columns)."""


@dataclass(frozen=True, eq=False, repr=False)
class Literal(Expr):
    """A constant: ``None``, bool, int, float, str, bytes, date/datetime, or a numpy vector."""

    value: Any


@dataclass(frozen=True, eq=False, repr=False)
class Param(Expr):
    """A query parameter: ``:name`` (``str`` key) or positional ``?`` (``int`` key, 0-based)."""

    key: str | int

    def __post_init__(self) -> None:
        if isinstance(self.key, bool) or not isinstance(self.key, (str, int)):
            raise TypeError(f"parameter key must be a str or an int, got {self.key!r}")
        if isinstance(self.key, int) and self.key < 0:
            raise ValueError("positional parameter index must be >= 0")
        if isinstance(self.key, str):
            object.__setattr__(self, "key", self.key.lstrip(":"))
            if not self.key:
                raise ValueError("parameter name must not be empty")


@dataclass(frozen=True, eq=False, repr=False)
class JsonPath(Expr):
    """``base->'a'->'b'`` (``as_text=False``, a JSON value) or ``base->'a'->>'b'`` (text)."""

    base: Column
    path: tuple[str | int, ...]
    as_text: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.base, Column):
            raise TypeError("a JSON path starts at a column")
        object.__setattr__(self, "path", tuple(_path_step(p) for p in self.path))

    def __getitem__(self, key: str | int) -> JsonPath:
        if self.as_text:
            raise TypeError("->> gives text: index the JSON value first, then take .astext")
        return JsonPath(self.base, (*self.path, _path_step(key)), False)

    @property
    def astext(self) -> JsonPath:
        """The same path read as text (``->>``)."""
        return JsonPath(self.base, self.path, True)


@dataclass(frozen=True, eq=False, repr=False)
class Compare(Expr):
    """``left op right`` with op in ``= != < <= > >=``."""

    op: str
    left: Expr
    right: Expr
    _prec = _P_PRED

    def __post_init__(self) -> None:
        op = "!=" if self.op == "<>" else self.op
        if op == "==":
            op = "="
        if op not in COMPARE_OPS:
            raise ValueError(f"unknown comparison operator {self.op!r}; use one of {', '.join(COMPARE_OPS)}")
        object.__setattr__(self, "op", op)


def _flatten(cls: type, args: Sequence[Expr]) -> tuple[Expr, ...]:
    out: list[Expr] = []
    for a in args:
        if not isinstance(a, Expr):
            a = _to_expr(a)
        if type(a) is cls:
            out.extend(a.args)  # type: ignore[attr-defined]
        else:
            out.append(a)
    return tuple(out)


@dataclass(frozen=True, eq=False, repr=False)
class And(Expr):
    """Conjunction (nested ``And`` nodes are flattened)."""

    args: tuple[Expr, ...]
    _prec = _P_AND

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _flatten(And, self.args))
        if not self.args:
            raise ValueError("And needs at least one argument")


@dataclass(frozen=True, eq=False, repr=False)
class Or(Expr):
    """Disjunction (nested ``Or`` nodes are flattened)."""

    args: tuple[Expr, ...]
    _prec = _P_OR

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", _flatten(Or, self.args))
        if not self.args:
            raise ValueError("Or needs at least one argument")


@dataclass(frozen=True, eq=False, repr=False)
class Not(Expr):
    arg: Expr
    _prec = _P_NOT


@dataclass(frozen=True, eq=False, repr=False)
class In(Expr):
    """``arg [NOT] IN (values...)`` or ``arg [NOT] IN :param`` (a list bound at execution)."""

    arg: Expr
    values: tuple[Expr, ...] | Param
    negated: bool = False
    _prec = _P_PRED

    def __post_init__(self) -> None:
        if not isinstance(self.values, Param):
            object.__setattr__(self, "values", tuple(_to_expr(v) for v in self.values))


@dataclass(frozen=True, eq=False, repr=False)
class Like(Expr):
    """``arg [NOT] LIKE/ILIKE pattern``."""

    arg: Expr
    pattern: Expr
    case_insensitive: bool = False
    negated: bool = False
    _prec = _P_PRED


@dataclass(frozen=True, eq=False, repr=False)
class Between(Expr):
    """``arg [NOT] BETWEEN low AND high`` (bounds included)."""

    arg: Expr
    low: Expr
    high: Expr
    negated: bool = False
    _prec = _P_PRED


@dataclass(frozen=True, eq=False, repr=False)
class IsNull(Expr):
    """``arg IS [NOT] NULL`` (never NULL itself)."""

    arg: Expr
    negated: bool = False
    _prec = _P_PRED


@dataclass(frozen=True, eq=False, repr=False)
class Contains(Expr):
    """``CONTAINS(arg, value)``: substring of text, element of a list or JSON array."""

    arg: Expr
    value: Expr


@dataclass(frozen=True, eq=False, repr=False)
class Function(Expr):
    """A scalar function: vector similarity (``cosine_similarity``, ``inner_product``,
    ``l2_distance``) or ``lower upper length abs coalesce``."""

    name: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        name = self.name.lower()
        if name not in VECTOR_FUNCTIONS and name not in SCALAR_FUNCTIONS:
            known = ", ".join(sorted([*VECTOR_FUNCTIONS, *SCALAR_FUNCTIONS]))
            raise QueryError(f"unknown function {self.name}(); known functions: {known}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", tuple(_to_expr(a) for a in self.args))
        if name in VECTOR_FUNCTIONS and len(self.args) != 2:
            raise QueryError(f"{name}() takes 2 arguments (a vector column and a query vector)")
        if name in ("lower", "upper", "length", "abs") and len(self.args) != 1:
            raise QueryError(f"{name}() takes 1 argument, got {len(self.args)}")
        if name == "coalesce" and not self.args:
            raise QueryError("coalesce() needs at least 1 argument")

    @property
    def is_vector(self) -> bool:
        return self.name in VECTOR_FUNCTIONS


@dataclass(frozen=True, eq=False, repr=False)
class Aggregate(Expr):
    """``count(*)`` (``arg=None``), ``count/sum/avg/min/max([DISTINCT] arg)``."""

    func: str
    arg: Expr | None
    distinct: bool = False

    def __post_init__(self) -> None:
        fn = self.func.lower()
        if fn not in AGGREGATE_FUNCTIONS:
            raise QueryError(f"unknown aggregate {self.func}(); known: {', '.join(sorted(AGGREGATE_FUNCTIONS))}")
        object.__setattr__(self, "func", fn)
        if self.arg is None and fn != "count":
            raise QueryError(f"{fn}() needs an argument; only count(*) takes none")
        if self.arg is None and self.distinct:
            raise QueryError("count(DISTINCT *) is not valid; name a column")


# ---------------------------------------------------------------------------------------------
# constructors
# ---------------------------------------------------------------------------------------------


def col(name: str) -> Column:
    """A column reference."""
    return Column(name)


def lit(value: Any) -> Literal:
    """A constant. numpy scalars become Python scalars; lists of numbers and torch tensors
    become numpy vectors."""
    return Literal(_normalize_literal(value))


def param(name_or_index: str | int) -> Param:
    """A query parameter bound at execution: ``param("q")`` is ``:q``, ``param(0)`` the first ``?``."""
    return Param(name_or_index)


def func(name: str, *args: Any) -> Function:
    """A scalar function call, e.g. ``func("lower", col("title"))``."""
    return Function(name, tuple(_to_expr(a) for a in args))


def agg(func: str, arg: Any = None, distinct: bool = False) -> Aggregate:
    """An aggregate, e.g. ``agg("count")`` (COUNT(*)), ``agg("avg", col("x"))``."""
    return Aggregate(func, None if arg is None else _to_expr(arg), distinct)


def _vector_call(name: str, column: str | Expr, query: Any) -> Function:
    column_expr = Column(column) if isinstance(column, str) else column
    return Function(name, (column_expr, query if isinstance(query, Expr) else lit(query)))


def cosine_similarity(column: str | Expr, query: Any) -> Function:
    """``cosine_similarity(column, query)``; ``query`` is a vector or a :func:`param`."""
    return _vector_call("cosine_similarity", column, query)


def inner_product(column: str | Expr, query: Any) -> Function:
    return _vector_call("inner_product", column, query)


def l2_distance(column: str | Expr, query: Any) -> Function:
    return _vector_call("l2_distance", column, query)


def _path_step(key: Any) -> str | int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("a JSON path step is a str key or an int index, not a bool")
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, str):
        return key
    raise TypeError(f"a JSON path step is a str key or an int index, got {key!r}")


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach")


def _normalize_literal(value: Any) -> Any:
    if isinstance(value, Expr):
        raise TypeError("lit() takes a constant, not an expression")
    if isinstance(value, pa.Scalar):
        return value.as_py()
    if isinstance(value, np.generic):
        return value.item()
    if _is_torch_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value, dtype=np.float32)
    return value


def _to_expr(value: Any) -> Expr:
    return value if isinstance(value, Expr) else lit(value)


def _in_values(values: Any) -> tuple[Expr, ...] | Param:
    if isinstance(values, Param):
        return values
    if isinstance(values, (str, bytes, Expr)) or not hasattr(values, "__iter__"):
        raise TypeError(f"isin() takes a list of values or a param(), got {values!r}")
    if _is_torch_tensor(values):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return tuple(_to_expr(v) for v in values)


# ---------------------------------------------------------------------------------------------
# structural identity
# ---------------------------------------------------------------------------------------------


def structural_key(obj: Any) -> Any:
    """A hashable key equal for structurally equal expressions (and values inside them)."""
    if isinstance(obj, Expr):
        return (type(obj).__name__, *(structural_key(getattr(obj, f.name)) for f in fields(obj)))  # type: ignore[arg-type]
    if isinstance(obj, tuple):
        return ("tuple", *(structural_key(v) for v in obj))
    if isinstance(obj, np.ndarray):
        return ("ndarray", str(obj.dtype), obj.shape, np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, float) and math.isnan(obj):
        return ("float", "nan")
    try:
        hash(obj)
    except TypeError:
        return (type(obj).__name__, repr(obj))
    return (type(obj).__name__, obj)


# ---------------------------------------------------------------------------------------------
# SQL text
# ---------------------------------------------------------------------------------------------

_SIMPLE_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@functools.lru_cache(maxsize=4096)
def _plain_ident_ok(name: str) -> bool:
    """True when ``name`` reads back as the same column without quotes."""
    if not _SIMPLE_IDENT.match(name):
        return False
    from .sql import is_plain_identifier  # local import: sql imports this module

    return is_plain_identifier(name)


def quote_ident(name: str, dialect: str = "default") -> str:
    """``name`` as an SQL identifier, quoted when needed (always for DuckDB)."""
    if dialect == "default" and _plain_ident_ok(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def _quote_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _float_sql(value: float) -> str:
    if math.isnan(value):
        return "CAST('NaN' AS DOUBLE)"
    if math.isinf(value):
        return "CAST('Infinity' AS DOUBLE)" if value > 0 else "CAST('-Infinity' AS DOUBLE)"
    text = repr(value)
    return text


def _literal_sql(value: Any, dialect: str, abbreviate: bool) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_sql(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        return _quote_str(value)
    if isinstance(value, (bytes, bytearray)):
        return "X'" + bytes(value).hex() + "'"
    if isinstance(value, _dt.datetime):
        kind = "TIMESTAMPTZ" if value.tzinfo is not None else "TIMESTAMP"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, _dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1).tolist()
        if abbreviate and len(flat) > 8:
            shown = ", ".join(_float_sql(float(v)) for v in flat[:3])
            return f"ARRAY[{shown}, ... {len(flat)} values]"
        return "ARRAY[" + ", ".join(_float_sql(float(v)) for v in flat) + "]"
    if isinstance(value, (list, tuple)):
        return "ARRAY[" + ", ".join(_literal_sql(v, dialect, abbreviate) for v in value) + "]"
    return _quote_str(str(value))


def param_label(key: str | int) -> str:
    """How a parameter is written in messages: ``:name`` or ``$1`` (positional, 1-based)."""
    return f":{key}" if isinstance(key, str) else f"${key + 1}"


def _json_step_sql(step: str | int) -> str:
    return _quote_str(step) if isinstance(step, str) else str(step)


def to_sql(expr: Expr, *, dialect: TypingLiteral["default", "duckdb"] = "default", abbreviate: bool = False) -> str:
    """SQL text of ``expr``.

    ``dialect="default"`` is the query language of :mod:`multimodal_store.sql` (text that
    :func:`~multimodal_store.sql.parse_where` reads back to an equal tree);
    ``dialect="duckdb"`` is DuckDB's (identifiers always quoted, LIKE with an explicit
    ESCAPE). ``abbreviate`` shortens long vector literals (for ``repr``).
    """

    def sub(e: Expr, min_prec: int) -> str:
        text = go(e)
        return f"({text})" if e._prec < min_prec else text

    def go(e: Expr) -> str:
        if isinstance(e, Column):
            return quote_ident(e.name, dialect)
        if isinstance(e, Star):
            return "*"
        if isinstance(e, Literal):
            return _literal_sql(e.value, dialect, abbreviate)
        if isinstance(e, Param):
            return param_label(e.key)
        if isinstance(e, JsonPath):
            text = quote_ident(e.base.name, dialect)
            for i, step in enumerate(e.path):
                arrow = "->>" if e.as_text and i == len(e.path) - 1 else "->"
                text += f"{arrow}{_json_step_sql(step)}"
            return text
        if isinstance(e, Compare):
            return f"{sub(e.left, _P_ATOM)} {e.op} {sub(e.right, _P_ATOM)}"
        if isinstance(e, And):
            return " AND ".join(sub(a, _P_NOT) for a in e.args)
        if isinstance(e, Or):
            return " OR ".join(sub(a, _P_AND) for a in e.args)
        if isinstance(e, Not):
            return f"NOT {sub(e.arg, _P_ATOM)}"
        if isinstance(e, In):
            neg = "NOT " if e.negated else ""
            if isinstance(e.values, Param):
                return f"{sub(e.arg, _P_ATOM)} {neg}IN {go(e.values)}"
            return f"{sub(e.arg, _P_ATOM)} {neg}IN ({', '.join(go(v) for v in e.values)})"
        if isinstance(e, Like):
            neg = "NOT " if e.negated else ""
            kw = "ILIKE" if e.case_insensitive else "LIKE"
            esc = " ESCAPE '\\'" if dialect == "duckdb" else ""
            return f"{sub(e.arg, _P_ATOM)} {neg}{kw} {sub(e.pattern, _P_ATOM)}{esc}"
        if isinstance(e, Between):
            neg = "NOT " if e.negated else ""
            return f"{sub(e.arg, _P_ATOM)} {neg}BETWEEN {sub(e.low, _P_ATOM)} AND {sub(e.high, _P_ATOM)}"
        if isinstance(e, IsNull):
            return f"{sub(e.arg, _P_ATOM)} IS {'NOT ' if e.negated else ''}NULL"
        if isinstance(e, Contains):
            return f"contains({go(e.arg)}, {go(e.value)})"
        if isinstance(e, Function):
            return f"{e.name}({', '.join(go(a) for a in e.args)})"
        if isinstance(e, Aggregate):
            if e.arg is None:
                return f"{e.func}(*)"
            return f"{e.func}({'DISTINCT ' if e.distinct else ''}{go(e.arg)})"
        raise TypeError(f"cannot render {type(e).__name__}")  # pragma: no cover

    return go(expr)


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

_SCALAR_TYPES = (str, int, float, bool, bytes, decimal.Decimal, _dt.date, _dt.time, _dt.timedelta)


def normalize_scalar(value: Any, label: str) -> Any:
    """A parameter value used as a single SQL value (numpy/torch/Arrow scalars unwrapped)."""
    if value is None or isinstance(value, _SCALAR_TYPES):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pa.Scalar):
        return value.as_py()
    if _is_torch_tensor(value) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)) or _is_torch_tensor(value):
        raise ParameterError(
            f"query parameter {label!r} must be a single value here, got a {type(value).__name__} "
            f"(only `IN {label}` and vector-function arguments take a list)"
        )
    raise ParameterError(f"query parameter {label!r} has an unsupported type {type(value).__name__}")


def normalize_vector(value: Any, label: str) -> np.ndarray:
    """A parameter value used as a query vector: a 1-D float32 numpy array."""
    if isinstance(value, Literal):
        value = value.value
    if _is_torch_tensor(value):
        value = value.detach().cpu().float().numpy()
    if isinstance(value, pa.Array | pa.ChunkedArray):
        value = value.to_numpy(zero_copy_only=False)
    if isinstance(value, (str, bytes)) or value is None or np.isscalar(value):
        raise ParameterError(f"query parameter {label!r} must be a vector (a list, numpy array or tensor), got {value!r}")
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"query parameter {label!r} must be a vector of numbers: {err}") from None
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.ndim != 1 or vec.size == 0:
        raise ParameterError(f"query parameter {label!r} must be a non-empty 1-D vector, got shape {vec.shape}")
    if not np.isfinite(vec).all():
        raise ParameterError(f"query parameter {label!r} holds NaN or infinite values")
    return vec


def normalize_count(value: Any, label: str, what: str = "LIMIT") -> int:
    """A LIMIT/OFFSET parameter: a non-negative int."""
    if isinstance(value, np.generic) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ParameterError(f"{what} {label!r} must be a non-negative integer, got {value!r}")
    return value


def lookup_param(key: str | int, params: Mapping[str, Any] | Sequence[Any] | None) -> Any:
    label = param_label(key)
    if isinstance(key, str):
        if params is None or not isinstance(params, Mapping):
            if params is not None and _is_sequence(params):
                raise ParameterError(
                    f"the query uses the named parameter {label!r} but the parameters were given as a "
                    "list; pass a dict (named parameters) or write ? placeholders"
                )
            raise ParameterError(f"missing query parameter {label!r}; given: (none)")
        for candidate in (key, ":" + key):
            if candidate in params:
                return params[candidate]
        given = ", ".join(sorted(str(k).lstrip(":") for k in params)) or "(none)"
        raise ParameterError(f"missing query parameter {label!r}; given: {given}")
    if params is None:
        raise ParameterError(f"missing query parameter {label!r} (positional parameter {key + 1}); given: (none)")
    if isinstance(params, Mapping):
        raise ParameterError(
            "the query uses positional parameters (?) but the parameters were given as a dict; "
            "pass a list, or write :name placeholders"
        )
    if not _is_sequence(params):
        raise ParameterError(f"query parameters must be a dict or a list, got {type(params).__name__}")
    if key >= len(params):
        raise ParameterError(
            f"missing query parameter {label!r} (positional parameter {key + 1}); given: {len(params)} value(s)"
        )
    return params[key]


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray))


def _check_params_container(params: Any) -> None:
    if params is not None and not isinstance(params, Mapping) and not _is_sequence(params):
        raise ParameterError(f"query parameters must be a dict or a list, got {type(params).__name__}")


def bind_params(expr: Expr, params: Mapping[str, Any] | Sequence[Any] | None) -> Expr:
    """Replace every :class:`Param` in ``expr`` by a :class:`Literal` holding its value.

    Values are bound, never spliced into text. ``IN :ids`` (and an ``IN (...)`` item bound
    to a list) expands to one literal per element; the query argument of a vector function
    becomes a float32 vector. Missing parameters raise :class:`ParameterError`.
    """
    _check_params_container(params)

    def fn(node: Expr) -> Expr | None:
        if isinstance(node, Param):
            return Literal(normalize_scalar(lookup_param(node.key, params), param_label(node.key)))
        if isinstance(node, In):
            arg = node.arg.transform(fn)
            if isinstance(node.values, Param):
                values = _expand_list(node.values.key, lookup_param(node.values.key, params))
            else:
                items: list[Expr] = []
                for v in node.values:
                    if isinstance(v, Param):
                        raw = lookup_param(v.key, params)
                        if _is_listlike(raw):
                            items.extend(_expand_list(v.key, raw))
                            continue
                    items.append(v.transform(fn))
                values = tuple(items)
            return In(arg, values, node.negated)
        if isinstance(node, Function) and node.is_vector:
            args: list[Expr] = []
            for a in node.args:
                if isinstance(a, Param):
                    args.append(Literal(normalize_vector(lookup_param(a.key, params), param_label(a.key))))
                else:
                    args.append(a.transform(fn))
            return Function(node.name, tuple(args))
        return None

    return expr.transform(fn)


def _is_listlike(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset, np.ndarray, pa.Array)) or _is_torch_tensor(value)


def _expand_list(key: str | int, value: Any) -> tuple[Expr, ...]:
    label = param_label(key)
    if _is_torch_tensor(value):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, pa.Array)):
        value = value.tolist() if isinstance(value, np.ndarray) else value.to_pylist()
    if isinstance(value, (set, frozenset)):
        value = sorted(value, key=repr)
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"IN {label} needs a list of values, got {type(value).__name__}")
    return tuple(Literal(normalize_scalar(v, label)) for v in value)


# ---------------------------------------------------------------------------------------------
# column sources
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class ColumnSource(Protocol):
    """What :func:`evaluate` reads: whole columns of one set of rows."""

    @property
    def num_rows(self) -> int: ...

    def column(self, name: str) -> pa.Array:
        """A plain column (JSON columns come back as their JSON text, ``pa.string``)."""
        ...

    def is_json(self, name: str) -> bool: ...

    def json_values(self, name: str, path: tuple[str | int, ...]) -> JsonValues: ...


class TableSource:
    """A :class:`ColumnSource` over a ``pa.Table`` whose JSON columns hold JSON text.

    Parsed documents and extracted paths are cached per column / per (column, path).
    """

    def __init__(self, table: pa.Table, json_columns: Collection[str] = ()) -> None:
        self.table = table
        self._names = list(table.column_names)
        self._json = frozenset(json_columns)
        for name in self._json:
            self._check(name)
        self._arrays: dict[str, pa.Array] = {}
        self._parsed: dict[str, list[Any]] = {}
        self._cache: dict[tuple[str, tuple[str | int, ...]], JsonValues] = {}

    @property
    def num_rows(self) -> int:
        return int(self.table.num_rows)

    def _check(self, name: str) -> None:
        if name not in self._names:
            raise ColumnNotFoundError(f"unknown column {name!r}; available: {', '.join(self._names)}")

    def column(self, name: str) -> pa.Array:
        self._check(name)
        if name not in self._arrays:
            self._arrays[name] = _combine(self.table.column(name))
        return self._arrays[name]

    def is_json(self, name: str) -> bool:
        self._check(name)
        return name in self._json

    def json_values(self, name: str, path: tuple[str | int, ...]) -> JsonValues:
        if not self.is_json(name):
            raise QueryError(f"column {name!r} is not a JSON column")
        key = (name, tuple(path))
        if key not in self._cache:
            if name not in self._parsed:
                self._parsed[name] = parse_documents(self.column(name))
            self._cache[key] = json_values(self._parsed[name], key[1])
        return self._cache[key]


def _combine(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    return arr


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class _Arr:
    array: pa.Array
    label: str


@dataclass
class _Scalar:
    value: Any
    label: str


@dataclass
class _Json:
    values: JsonValues
    as_text: bool
    label: str


_Operand = _Arr | _Scalar | _Json


def _category(t: pa.DataType) -> str:
    if pa.types.is_null(t):
        return "null"
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(t)
    ):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t) or (
        hasattr(pa.types, "is_binary_view") and pa.types.is_binary_view(t)
    ):
        return "binary"
    if pa.types.is_temporal(t):
        return "temporal"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    return "other"


def _value_category(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float, decimal.Decimal)):
        return "numeric"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "binary"
    if isinstance(value, (_dt.date, _dt.time, _dt.timedelta)):
        return "temporal"
    if isinstance(value, np.ndarray):
        return "vector"
    return "other"


_VALUE_KIND_NAMES = {
    "bool": "boolean literal",
    "numeric": "number literal",
    "string": "string literal",
    "binary": "bytes literal",
    "temporal": "date/time literal",
    "vector": "vector literal",
    "null": "NULL",
    "other": "literal",
}


def _scalar_label(value: Any) -> str:
    return f"{_literal_sql(value, 'default', True)} ({_VALUE_KIND_NAMES[_value_category(value)]})"


def _describe(op: _Operand) -> str:
    if isinstance(op, _Arr):
        return f"{op.label} ({op.array.type})"
    if isinstance(op, _Json):
        return f"{op.label} ({'JSON text' if op.as_text else 'JSON value'})"
    return op.label


def _bool_array(values: np.ndarray, valid: np.ndarray | None = None) -> pa.BooleanArray:
    if valid is None or valid.all():
        return pa.array(values, pa.bool_())
    return pa.array(values, pa.bool_(), mask=~valid)


def _nulls(n: int) -> pa.BooleanArray:
    return pa.nulls(n, pa.bool_())


def _split(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls as False, validity) of a boolean Arrow array."""
    values = np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)
    valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    return values, valid


def _arrow_call(fn: Callable[..., Any], *args: Any, what: str, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as err:
        raise QueryError(f"{what}: {err}") from None


def _broadcast(value: Any, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n)
    try:
        return pa.repeat(pa.scalar(value), n)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.repeat(pa.scalar(float(value)), n)


def mask_from(array: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """A numpy bool mask from a predicate result: NULL counts as False."""
    if isinstance(array, np.ndarray):
        if array.dtype != np.bool_:
            raise QueryError(f"a filter must be boolean, got a {array.dtype} array")
        return array
    if isinstance(array, pa.ChunkedArray):
        array = _combine(array)
    if pa.types.is_null(array.type):
        return np.zeros(len(array), dtype=bool)
    if not pa.types.is_boolean(array.type):
        raise QueryError(f"a filter must be boolean, got {array.type}")
    return _true_bits(array)


def _bits(buf: pa.Buffer, offset: int, n: int) -> np.ndarray:
    """``n`` bits of an Arrow bitmap from bit ``offset``, as a numpy bool array."""
    return np.unpackbits(np.frombuffer(buf, np.uint8), bitorder="little")[offset : offset + n].view(np.bool_)


def _true_bits(array: pa.BooleanArray) -> np.ndarray:
    """Rows of a boolean Arrow array that are TRUE (not FALSE, not NULL), unpacked from its bitmaps."""
    validity, values = array.buffers()
    n, offset = len(array), array.offset
    if n == 0:
        return np.zeros(0, dtype=bool)
    mask = _bits(values, offset, n)
    if validity is not None and array.null_count:
        mask = mask & _bits(validity, offset, n)
    return mask


def evaluate(
    expr: Expr, source: ColumnSource, params: Mapping[str, Any] | Sequence[Any] | None = None
) -> pa.Array:
    """Evaluate ``expr`` over every row of ``source``; returns an Arrow array of ``num_rows``.

    Predicates give a boolean array with SQL NULLs (see :func:`mask_from`). Parameters are
    bound from ``params`` first (:func:`bind_params`). Vector functions and aggregates are
    not evaluated here: the executor runs them.
    """
    if any(isinstance(node, Param) for node in expr.walk()):
        expr = bind_params(expr, params)
    return _Evaluator(source).top(expr)


class _Evaluator:
    def __init__(self, source: ColumnSource) -> None:
        self.source = source
        self.n = int(source.num_rows)

    # -- entry points ------------------------------------------------------------------------
    def top(self, expr: Expr) -> pa.Array:
        if isinstance(expr, Column):
            return _combine(self.source.column(expr.name))
        op = self.operand(expr)
        if isinstance(op, _Arr):
            return op.array
        if isinstance(op, _Json):
            return op.values.text if op.as_text else op.values.json_text
        if isinstance(op.value, np.ndarray):
            return pa.repeat(pa.scalar(op.value.tolist(), pa.list_(pa.float32())), self.n)
        return _broadcast(op.value, self.n)

    def boolean(self, expr: Expr) -> pa.Array:
        """``expr`` as a condition: a boolean array."""
        op = self.operand(expr)
        if isinstance(op, _Arr):
            t = op.array.type
            if pa.types.is_boolean(t):
                return op.array
            if pa.types.is_null(t):
                return _nulls(self.n)
        elif isinstance(op, _Scalar):
            if op.value is None:
                return _nulls(self.n)
            if isinstance(op.value, bool):
                return pa.repeat(pa.scalar(op.value), self.n)
        elif not op.as_text:
            return op.values.boolean  # a JSON value used as a condition: its booleans
        raise QueryError(f"{_describe(op)} is not a boolean condition; compare it with a value")

    # -- operands ----------------------------------------------------------------------------
    def operand(self, expr: Expr) -> _Operand:
        if isinstance(expr, Column):
            if self.source.is_json(expr.name):
                return _Json(self.source.json_values(expr.name, ()), False, f"column {expr.name!r}")
            return _Arr(_combine(self.source.column(expr.name)), f"column {expr.name!r}")
        if isinstance(expr, JsonPath):
            name = expr.base.name
            if not self.source.is_json(name):
                raise QueryError(
                    f"column {name!r} is not a JSON column: -> / ->> / [] only read into JSON columns"
                )
            return _Json(self.source.json_values(name, expr.path), expr.as_text, to_sql(expr))
        if isinstance(expr, Literal):
            return _Scalar(expr.value, _scalar_label(expr.value))
        if isinstance(expr, Param):
            raise ParameterError(f"query parameter {param_label(expr.key)} is not bound")
        if isinstance(expr, Star):
            raise QueryError("* can only appear in a SELECT list or in count(*)")
        if isinstance(expr, Aggregate):
            raise QueryError(f"aggregate {to_sql(expr, abbreviate=True)} can only appear in SELECT or ORDER BY")
        if isinstance(expr, Function):
            return self.function(expr)
        return _Arr(self.predicate(expr), to_sql(expr, abbreviate=True))

    def predicate(self, expr: Expr) -> pa.Array:
        if isinstance(expr, And):
            result = self.boolean(expr.args[0])
            for a in expr.args[1:]:
                result = pc.and_kleene(result, self.boolean(a))
            return result
        if isinstance(expr, Or):
            result = self.boolean(expr.args[0])
            for a in expr.args[1:]:
                result = pc.or_kleene(result, self.boolean(a))
            return result
        if isinstance(expr, Not):
            return pc.invert(self.boolean(expr.arg))
        if isinstance(expr, Compare):
            return self.compare(expr.op, self.operand(expr.left), self.operand(expr.right))
        if isinstance(expr, In):
            return self.isin(expr)
        if isinstance(expr, Between):
            arg = self.operand(expr.arg)
            low = self.compare(">=", arg, self.operand(expr.low))
            high = self.compare("<=", arg, self.operand(expr.high))
            result = pc.and_kleene(low, high)
            return pc.invert(result) if expr.negated else result
        if isinstance(expr, IsNull):
            result = self.is_null(self.operand(expr.arg))
            return pc.invert(result) if expr.negated else result
        if isinstance(expr, Like):
            result = self.like(expr)
            return pc.invert(result) if expr.negated else result
        if isinstance(expr, Contains):
            return self.contains(self.operand(expr.arg), self.operand(expr.value))
        raise QueryError(f"cannot evaluate {type(expr).__name__}")  # pragma: no cover

    # -- comparisons -------------------------------------------------------------------------
    def compare(self, op: str, left: _Operand, right: _Operand) -> pa.Array:
        if isinstance(left, _Scalar) and not isinstance(right, _Scalar):
            left, right, op = right, left, _FLIP[op]
        if isinstance(left, _Arr) and isinstance(right, _Json):
            left, right, op = right, left, _FLIP[op]
        if isinstance(left, _Scalar):  # both constants
            assert isinstance(right, _Scalar)
            one = self.compare_plain(op, _Arr(_broadcast(left.value, 1), left.label), right)
            return pa.repeat(one[0], self.n)
        if isinstance(left, _Json):
            return self.compare_json(op, left, right)
        assert not isinstance(right, _Json)
        return self.compare_plain(op, left, right)

    def compare_plain(self, op: str, left: _Arr, right: _Arr | _Scalar) -> pa.Array:
        arr = left.array
        n = len(arr)
        cat = _category(arr.type)
        if isinstance(right, _Scalar):
            value = right.value
            rcat = _value_category(value)
            if value is None or cat == "null":
                _check_comparable(cat, rcat, left, right)
                return _nulls(n)
            _check_comparable(cat, rcat, left, right)
            rhs = _scalar_for(value, arr.type, left, right)
        else:
            rcat = _category(right.array.type)
            _check_comparable(cat, rcat, left, right)
            if cat == "null" or rcat == "null":
                return _nulls(n)
            rhs = right.array
        return _arrow_call(
            _PC_COMPARE[op], arr, rhs, what=f"cannot compare {_describe(left)} with {_describe(right)}"
        )

    def json_field(self, j: _Json, cat: str) -> tuple[pa.Array, int]:
        """The JsonValues field that a value of category ``cat`` compares with, and its kind."""
        v = j.values
        if cat == "bool":
            return v.boolean, KIND_BOOL
        if cat == "numeric":
            return (v.text_number if j.as_text else v.number), KIND_NUMBER
        if cat == "string":
            if j.as_text:
                return v.text, KIND_STRING
            strings = pc.if_else(pa.array(v.kind == KIND_STRING), v.text, pa.scalar(None, pa.string()))
            return strings, KIND_STRING
        raise AssertionError(cat)  # pragma: no cover

    def compare_json(self, op: str, left: _Json, right: _Operand) -> pa.Array:
        n = len(left.values)
        if isinstance(right, _Json):
            return self.compare_json_json(op, left, right)
        if isinstance(right, _Scalar):
            value = right.value
            cat = _value_category(value)
            if cat == "null":
                return _nulls(n)
            if cat not in ("bool", "numeric", "string"):
                raise QueryError(f"cannot compare {_describe(left)} with {right.label}")
            rhs: Any = pa.scalar(as_float(value) if cat == "numeric" else value)
        else:
            cat = _category(right.array.type)
            if cat == "null":
                return _nulls(n)
            if cat not in ("bool", "numeric", "string"):
                raise QueryError(f"cannot compare {_describe(left)} with {_describe(right)}")
            rhs = right.array
            if cat == "numeric":
                rhs = _arrow_call(pc.cast, rhs, pa.float64(), what=f"cannot compare with {_describe(right)}")
        fieldarr, kind = self.json_field(left, cat)
        base = _arrow_call(_PC_COMPARE[op], fieldarr, rhs, what=f"cannot compare {_describe(left)}")
        if left.as_text:
            return base
        # a JSON value of another (non-missing) kind: = is FALSE, != TRUE, ordering NULL
        values, valid = _split(base)
        other = (left.values.kind != kind) & (left.values.kind != KIND_MISSING)
        if isinstance(right, _Arr):
            other &= np.asarray(pc.is_valid(right.array).to_numpy(zero_copy_only=False), dtype=bool)
        if op in ("=", "!="):
            values = np.where(other, op == "!=", values)
            valid = valid | other
        return _bool_array(values, valid)

    def compare_json_json(self, op: str, left: _Json, right: _Json) -> pa.Array:
        a, b = left.values, right.values
        if left.as_text or right.as_text:
            return _arrow_call(_PC_COMPARE[op], a.text, b.text, what="cannot compare JSON texts")
        n = len(a)
        values = np.zeros(n, dtype=bool)
        valid = np.zeros(n, dtype=bool)
        for kind, fa, fb in (
            (KIND_STRING, a.text, b.text),
            (KIND_NUMBER, a.number, b.number),
            (KIND_BOOL, a.boolean, b.boolean),
        ):
            same = (a.kind == kind) & (b.kind == kind)
            if same.any():
                v, ok = _split(_PC_COMPARE[op](fa, fb))
                values[same] = v[same]
                valid[same] = ok[same]
        containers = (a.kind == KIND_CONTAINER) & (b.kind == KIND_CONTAINER)
        if containers.any() and op in ("=", "!="):
            v, ok = _split(_PC_COMPARE[op](a.text, b.text))
            values[containers] = v[containers]
            valid[containers] = ok[containers]
        differ = (a.kind != b.kind) & (a.kind != KIND_MISSING) & (b.kind != KIND_MISSING)
        if op in ("=", "!="):
            values[differ] = op == "!="
            valid[differ] = True
        return _bool_array(values, valid)

    def isin(self, expr: In) -> pa.Array:
        if isinstance(expr.values, Param):
            raise ParameterError(f"query parameter {param_label(expr.values.key)} is not bound")
        arg = self.operand(expr.arg)
        values = [self.operand(v) for v in expr.values]
        result: pa.Array | None = None
        if isinstance(arg, _Arr) and all(isinstance(v, _Scalar) for v in values):
            result = self.isin_fast(arg, [v for v in values if isinstance(v, _Scalar)])
        if result is None:
            result = pa.array(np.zeros(self.n, dtype=bool), pa.bool_())
            for v in values:
                result = pc.or_kleene(result, self.compare("=", arg, v))
        return pc.invert(result) if expr.negated else result

    def isin_fast(self, arg: _Arr, values: list[_Scalar]) -> pa.Array | None:
        arr = arg.array
        cat = _category(arr.type)
        for v in values:
            _check_comparable(cat, _value_category(v.value), arg, v)
        if not values:  # an empty list: nothing is in it, not even NULL
            return pa.array(np.zeros(len(arr), dtype=bool), pa.bool_())
        if cat in ("null", "temporal"):
            return None
        present = [v.value for v in values if v.value is not None]
        has_null = len(present) < len(values)
        if pa.types.is_floating(arr.type):
            # SQL equality, not hashing: -0.0 = 0.0, and NaN equals nothing
            present = [v for v in present if not (isinstance(v, float) and math.isnan(v))]
            if any(v == 0 for v in present):
                present += [0.0, -0.0]
        try:
            value_set = pa.array(present).cast(arr.type) if present else pa.array([], arr.type)
            if cat == "numeric" and pc.any(pc.not_equal(value_set.cast(pa.float64()), pa.array(present, pa.float64()))).as_py():
                return None  # e.g. 2.5 in an integer column: compare numerically instead
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            return None
        hit = pc.is_in(arr, value_set=value_set, skip_nulls=True)
        hit_np, _ = _split(hit)
        valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
        if has_null:
            valid = valid & hit_np
        return _bool_array(hit_np, valid)

    def is_null(self, op: _Operand) -> pa.Array:
        if isinstance(op, _Arr):
            return pc.is_null(op.array)
        if isinstance(op, _Json):
            return pa.array(op.values.kind == KIND_MISSING, pa.bool_())
        return pa.repeat(pa.scalar(op.value is None), self.n)

    def text_of(self, op: _Operand, what: str) -> pa.Array:
        """String array for LIKE / lower / upper."""
        if isinstance(op, _Arr):
            cat = _category(op.array.type)
            if cat == "string":
                return op.array
            if cat == "null":
                return pa.nulls(len(op.array), pa.string())
            raise QueryError(f"{what} needs text, but {_describe(op)} is not text")
        if isinstance(op, _Json):
            return op.values.text
        if op.value is None:
            return pa.nulls(self.n, pa.string())
        if not isinstance(op.value, str):
            raise QueryError(f"{what} needs text, but {op.label} is not text")
        return pa.repeat(pa.scalar(op.value, pa.string()), self.n)

    def like(self, expr: Like) -> pa.Array:
        kw = "ILIKE" if expr.case_insensitive else "LIKE"
        pattern = self.operand(expr.pattern)
        if not isinstance(pattern, _Scalar):
            raise QueryError(f"the pattern of {kw} must be a string literal or parameter, not {_describe(pattern)}")
        if pattern.value is None:
            return _nulls(self.n)
        if not isinstance(pattern.value, str):
            raise QueryError(f"the pattern of {kw} must be a string, got {pattern.label}")
        arg = self.operand(expr.arg)
        text = self.text_of(arg, kw)
        result = _arrow_call(
            pc.match_like, text, pattern.value, ignore_case=expr.case_insensitive, what=f"{kw} failed"
        )
        if isinstance(arg, _Json) and not arg.as_text:  # JSON value: strings only, other kinds FALSE
            values, valid = _split(result)
            kinds = arg.values.kind
            other = (kinds != KIND_STRING) & (kinds != KIND_MISSING)
            return _bool_array(np.where(other, False, values), valid | other)
        return result

    def contains(self, arg: _Operand, value: _Operand) -> pa.Array:
        if not isinstance(value, _Scalar):
            raise QueryError(f"the second argument of CONTAINS must be a literal or parameter, not {_describe(value)}")
        v = value.value
        if v is None:
            return _nulls(self.n)
        if isinstance(arg, _Scalar):
            arg = _Arr(_broadcast(arg.value, self.n), arg.label)
        if isinstance(arg, _Json):
            if arg.as_text:
                if not isinstance(v, str):
                    raise QueryError(f"CONTAINS on text needs a string, got {value.label}")
                return pc.match_substring(arg.values.text, v)
            return _json_contains(arg.values, v, value.label)
        cat = _category(arg.array.type)
        if cat == "string":
            if not isinstance(v, str):
                raise QueryError(f"CONTAINS on {_describe(arg)} needs a string, got {value.label}")
            return pc.match_substring(arg.array, v)
        if cat == "list":
            return _list_contains(arg, v, value)
        if cat == "null":
            return _nulls(self.n)
        raise QueryError(f"CONTAINS needs text, a list or JSON, but {_describe(arg)} is none of these")

    # -- scalar functions --------------------------------------------------------------------
    def function(self, expr: Function) -> _Arr:
        label = to_sql(expr, abbreviate=True)
        if expr.is_vector:
            raise QueryError(f"{expr.name}(...) can only appear in SELECT or ORDER BY")
        ops = [self.operand(a) for a in expr.args]
        name = expr.name
        if name in ("lower", "upper"):
            text = self.text_of(ops[0], f"{name}()")
            return _Arr(pc.utf8_lower(text) if name == "lower" else pc.utf8_upper(text), f"expression {label}")
        if name == "length":
            return _Arr(self.length(ops[0]), f"expression {label}")
        if name == "abs":
            return _Arr(self.abs(ops[0]), f"expression {label}")
        return _Arr(self.coalesce(ops, label), f"expression {label}")

    def length(self, op: _Operand) -> pa.Array:
        if isinstance(op, _Json):
            if op.as_text:
                return pc.utf8_length(op.values.text)
            out: list[int | None] = []
            for kind, item in zip(op.values.kind.tolist(), op.values.items, strict=True):
                out.append(len(item) if kind in (KIND_STRING, KIND_CONTAINER) else None)
            return pa.array(out, pa.int64())
        arr = op.array if isinstance(op, _Arr) else _broadcast(op.value, self.n)
        cat = _category(arr.type)
        if cat == "string":
            return pc.utf8_length(arr)
        if cat == "binary":
            return pc.binary_length(arr)
        if cat == "list":
            return pc.list_value_length(arr)
        if cat == "null":
            return pa.nulls(len(arr), pa.int64())
        raise QueryError(f"length() needs text, bytes or a list, but {_describe(op)} is none of these")

    def abs(self, op: _Operand) -> pa.Array:
        if isinstance(op, _Json):
            return pc.abs(op.values.text_number if op.as_text else op.values.number)
        arr = op.array if isinstance(op, _Arr) else _broadcast(op.value, self.n)
        cat = _category(arr.type)
        if cat == "null":
            return arr
        if cat != "numeric":
            raise QueryError(f"abs() needs a number, but {_describe(op)} is not numeric")
        return _arrow_call(pc.abs_checked, arr, what="abs() failed")

    def coalesce(self, ops: list[_Operand], label: str) -> pa.Array:
        arrays: list[pa.Array] = []
        for op in ops:
            if isinstance(op, _Arr):
                arrays.append(op.array)
            elif isinstance(op, _Json):
                arrays.append(op.values.text)
            else:
                arrays.append(_broadcast(op.value, self.n))
        types = [a.type for a in arrays if not pa.types.is_null(a.type)]
        if not types:
            return arrays[0]
        cats = {_category(t) for t in types}
        if len(cats) > 1:
            raise QueryError(f"{label}: arguments have incompatible types ({', '.join(str(t) for t in types)})")
        target = types[0]
        if cats == {"numeric"} and any(pa.types.is_floating(t) for t in types):
            target = pa.float64()
        elif cats == {"numeric"} and len(set(types)) > 1:
            target = pa.int64() if all(pa.types.is_integer(t) for t in types) else pa.float64()
        cast = [_arrow_call(pc.cast, a, target, what=f"{label}: cannot unify argument types") for a in arrays]
        return pc.coalesce(*cast)


def _check_comparable(cat: str, rcat: str, left: _Operand, right: _Operand) -> None:
    if cat == "null" or rcat == "null":
        return
    if cat in ("list", "other") or rcat in ("list", "other", "vector"):
        raise QueryError(f"cannot compare {_describe(left)} with {_describe(right)}: not a comparable type")
    if cat == rcat:
        return
    if cat == "temporal" and rcat == "string" and isinstance(right, _Scalar):
        return  # the string is parsed as the column's type
    raise QueryError(f"cannot compare {_describe(left)} with {_describe(right)}")


def _scalar_for(value: Any, target: pa.DataType, left: _Arr, right: _Scalar) -> pa.Scalar:
    cat = _category(target)
    try:
        if cat == "numeric":
            if isinstance(value, int):
                try:
                    return pa.scalar(value, pa.int64())
                except (OverflowError, pa.ArrowInvalid):
                    return pa.scalar(float(value), pa.float64())
            if isinstance(value, decimal.Decimal) and not pa.types.is_decimal(target):
                return pa.scalar(float(value), pa.float64())
            return pa.scalar(value)
        if cat == "string":
            return pa.scalar(value, pa.string())
        if cat == "binary":
            return pa.scalar(bytes(value), pa.binary())
        if cat == "temporal":
            return pa.scalar(value).cast(target)
        return pa.scalar(value)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError) as err:
        raise QueryError(f"cannot compare {_describe(left)} with {right.label}: {err}") from None


def _json_equal(element: Any, value: Any) -> bool:
    if isinstance(value, bool):
        return isinstance(element, bool) and element == value
    if isinstance(value, (int, float, decimal.Decimal)):
        return isinstance(element, (int, float)) and not isinstance(element, bool) and float(element) == float(value)
    if isinstance(value, str):
        return isinstance(element, str) and element == value
    return False


def _json_contains(jv: JsonValues, value: Any, label: str) -> pa.Array:
    if not isinstance(value, (bool, int, float, str, decimal.Decimal)):
        raise QueryError(f"CONTAINS on JSON needs a string, number or boolean, got {label}")
    n = len(jv)
    out = np.zeros(n, dtype=bool)
    kinds = jv.kind
    valid = kinds != KIND_MISSING
    if isinstance(value, str):
        is_str = kinds == KIND_STRING
        if is_str.any():
            sub, _ = _split(pc.match_substring(jv.text, value))
            out[is_str] = sub[is_str]
    for i in np.flatnonzero(kinds == KIND_CONTAINER).tolist():
        item = jv.items[i]
        if isinstance(item, (list, tuple)):
            out[i] = any(_json_equal(e, value) for e in item)
    return _bool_array(out, valid)


def _list_contains(arg: _Arr, value: Any, vop: _Scalar) -> pa.Array:
    arr = arg.array
    n = len(arr)
    flat = pc.list_flatten(arr)
    cat = _category(flat.type)
    _check_comparable(cat, _value_category(value), _Arr(flat, f"elements of {arg.label}"), vop)
    parents = np.asarray(pc.list_parent_indices(arr).to_numpy(zero_copy_only=False))
    if cat == "null" or len(flat) == 0:
        hits = np.zeros(len(flat), dtype=bool)
    else:
        rhs = _scalar_for(value, flat.type, _Arr(flat, arg.label), vop)
        hits, _ = _split(_arrow_call(pc.equal, flat, rhs, what="CONTAINS failed"))
    out = np.zeros(n, dtype=bool)
    out[parents[hits]] = True
    valid = np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)
    return _bool_array(out, valid)
