"""The SQL front end: SQL text -> :class:`~multimodal_store.plan.QueryPlan`.

The text is parsed by sqlglot (Postgres dialect, which knows ``->``/``->>``, with 0-based
``[]`` subscripts) and the syntax tree is translated into the expression nodes of
:mod:`multimodal_store.expr`. The language is the read-only subset of Deeplake 4's SQL used
for retrieval::

    SELECT text, image, metadata, cosine_similarity(clip_embedding, :q) AS score
    FROM multimodal_knowledge                      -- any name, or FROM "path/or/url"
    WHERE metadata->>'department' = 'engineering'
      AND content_type IN ('image', 'video')
    ORDER BY score                                 -- best match first unless ASC/DESC
    LIMIT :k

Supported: column lists, ``*``, ``AS``; ``= != <> < <= > >=``, ``[NOT] IN (...)``,
``IN :list``, ``= ANY(:list)``, ``[NOT] LIKE/ILIKE [ESCAPE]``, ``[NOT] BETWEEN``,
``IS [NOT] NULL``, ``IS [NOT] TRUE/FALSE``, ``AND OR NOT``; JSON access ``->``, ``->>`` and
``col['a'][0]``; ``CONTAINS(col, value)``; ``lower upper length abs coalesce``;
``cosine_similarity``, ``inner_product``, ``l2_distance`` (SELECT and ORDER BY);
``COUNT(*)``, ``COUNT/SUM/AVG/MIN/MAX([DISTINCT] x)`` with ``GROUP BY``; ``ORDER BY``;
``LIMIT``/``OFFSET`` (literal or parameter); literals ``TRUE FALSE NULL``, numbers,
strings, ``DATE '...'``, ``TIMESTAMP '...'``, ``ARRAY[...]``/``[...]`` vectors.
Parameters: ``:name``, ``?`` (positional, in order) or ``$1`` (positional, 1-based); one
style per query.

Anything else (JOIN, subqueries, UNION, WITH, HAVING, window functions, arithmetic,
INSERT/UPDATE/DELETE/DROP: a query never changes data) raises
:class:`~multimodal_store.errors.QueryError` naming the construct; text that does not
parse raises :class:`~multimodal_store.errors.QuerySyntaxError` with the line, column and
offending token.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import functools
import re
from typing import Any, ClassVar

import numpy as np
import sqlglot
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError

from .errors import ParameterError, QueryError, QuerySyntaxError
from .expr import (
    VECTOR_FUNCTIONS,
    Aggregate,
    And,
    Between,
    Column,
    Compare,
    Contains,
    Expr,
    Function,
    In,
    IsNull,
    JsonPath,
    Like,
    Literal,
    Not,
    Or,
    Param,
    Star,
    structural_key,
    to_sql,
)
from .plan import OrderKey, QueryPlan, SelectItem, VectorSearch, metric_of

__all__ = ["MultimodalSQL", "is_plain_identifier", "parse_expr", "parse_sql", "parse_where"]


class MultimodalSQL(Postgres):
    """Postgres, except that ``[]`` subscripts are 0-based (``col['tags'][0]`` is the first
    element, as in Python and in the ``->`` operator) and that ``x -> y`` inside a function
    call is the JSON operator, never a lambda (``CONTAINS(metadata->'tags', 'cat')``)."""

    INDEX_OFFSET = 0

    class Parser(Postgres.Parser):  # type: ignore[misc,valid-type]
        LAMBDAS: ClassVar[dict[Any, Any]] = {}


_KEYWORDS = ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "GROUP", "BY", "LIMIT", "OFFSET", "LIKE", "ILIKE", "BETWEEN", "IN", "IS", "NULL", "ASC", "DESC", "AS", "TRUE", "FALSE", "CONTAINS"]


# ---------------------------------------------------------------------------------------------
# syntax errors
# ---------------------------------------------------------------------------------------------


def _linecol(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _tokens(text: str) -> list[Any]:
    try:
        return list(MultimodalSQL().tokenize(text))
    except (TokenError, ParseError):
        return []


def _clean_description(desc: str) -> str:
    desc = re.sub(r"<class '(?:[\w.]*\.)?(\w+)'>", r"\1", desc)
    if re.match(r"Required keyword: '\w+' missing for \w+", desc):
        return "incomplete expression"
    if desc.startswith("Invalid expression / Unexpected token"):
        return "unexpected token"
    m = re.match(r"Expecting (\S+)", desc)
    if m:
        return f"expected {m.group(1)!r}"
    return desc


def _syntax_error(text: str, err: ParseError) -> QuerySyntaxError:
    info: dict[str, Any] = err.errors[0] if getattr(err, "errors", None) else {}
    line: int | None = info.get("line")
    col: int | None = info.get("col")
    token: str | None = info.get("highlight") or None
    desc = _clean_description(str(info.get("description") or err))
    tokens = _tokens(text)
    idx = next((i for i, t in enumerate(tokens) if t.line == line and t.col == col), None)
    if idx is not None:
        tok = tokens[idx]
        line, col = _linecol(text, tok.start)
        token = text[tok.start : tok.end + 1]
        # a misspelled keyword often parses as a name and the error shows on the next token
        for j in (idx, idx - 1, 0):
            if j < 0:
                continue
            cand = tokens[j]
            if cand.token_type.name != "VAR" or (j == 0 and idx > 2):
                continue
            word = cand.text.upper()
            close = difflib.get_close_matches(word, _KEYWORDS, n=1, cutoff=0.75)
            if close and close[0] != word:
                found = text[cand.start : cand.end + 1]
                line, col = _linecol(text, cand.start)
                if j == idx - 1:
                    desc = f"unexpected {token!r} after {found!r}"
                elif j != idx:
                    desc = "unexpected token"
                token = found
                desc += f" (did you mean {close[0]}?)"
                break
        if idx == len(tokens) - 1 and "incomplete" in desc:
            desc += "; the query ends too early"
    elif line is not None and col is not None and token and "\n" not in token:
        col = max(1, col - len(token) + 1)
    where = f" at line {line}, column {col}" if line is not None else ""
    near = f" near {token!r}" if token else ""
    return QuerySyntaxError(f"SQL syntax error{where}{near}: {desc}", line=line, column=col, token=token)


def _unterminated_quote(text: str) -> int | None:
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return i
            i = end + 2
        elif ch in "'\"":
            j = i + 1
            while True:
                k = text.find(ch, j)
                if k < 0:
                    return i
                if text.startswith(ch * 2, k):
                    j = k + 2
                    continue
                i = k + 1
                break
        else:
            i += 1
    return None


def _token_error(text: str, err: TokenError) -> QuerySyntaxError:
    pos = _unterminated_quote(text)
    if pos is None:
        return QuerySyntaxError(f"SQL syntax error: {err}")
    line, col = _linecol(text, pos)
    token = text[pos : pos + 20].split("\n")[0]
    what = "comment" if text.startswith("/*", pos) else "quoted text"
    return QuerySyntaxError(
        f"SQL syntax error at line {line}, column {col} near {token!r}: unterminated {what}",
        line=line,
        column=col,
        token=token,
    )


def _parse(text: str, into: Any = None) -> list[Any]:
    try:
        if into is not None:
            return [sqlglot.parse_one(text, read=MultimodalSQL, into=into)]
        return list(sqlglot.parse(text, read=MultimodalSQL))
    except TokenError as err:
        raise _token_error(text, err) from None
    except ParseError as err:
        raise _syntax_error(text, err) from None


@functools.lru_cache(maxsize=4096)
def is_plain_identifier(name: str) -> bool:
    """True when ``name`` can be written without double quotes and reads back as itself."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        return False
    def is_name(node: Any) -> bool:
        return (
            isinstance(node, exp.Column)
            and not node.table
            and isinstance(node.this, exp.Identifier)
            and node.this.this == name
        )

    try:
        cond = sqlglot.parse_one(f"{name} = 1", read=MultimodalSQL, into=exp.Condition)
        stmt = sqlglot.parse_one(
            f"SELECT {name} AS {name} FROM {name} WHERE {name} = 1 ORDER BY {name}", read=MultimodalSQL
        )
    except (ParseError, TokenError):
        return False
    if not (isinstance(cond, exp.EQ) and is_name(cond.this)) or not isinstance(stmt, exp.Select):
        return False
    select = stmt.expressions
    from_node = stmt.args.get("from_") or stmt.args.get("from")
    table = from_node.this if from_node is not None else None
    where = stmt.args.get("where")
    order = stmt.args.get("order")
    return (
        len(select) == 1
        and isinstance(select[0], exp.Alias)
        and select[0].alias == name
        and is_name(select[0].this)
        and isinstance(table, exp.Table)
        and table.name == name
        and where is not None
        and isinstance(where.this, exp.EQ)
        and is_name(where.this.this)
        and order is not None
        and is_name(order.expressions[0].this)
    )


# ---------------------------------------------------------------------------------------------
# translation
# ---------------------------------------------------------------------------------------------

_COMPARE: dict[type[exp.Expression], str] = {exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_SCALAR_FUNCS: dict[type[exp.Expression], str] = {exp.Lower: "lower", exp.Upper: "upper", exp.Length: "length", exp.Abs: "abs"}
_AGGREGATES: dict[type[exp.Expression], str] = {exp.Count: "count", exp.Sum: "sum", exp.Avg: "avg", exp.Min: "min", exp.Max: "max"}
_ARITHMETIC: dict[type[exp.Expression], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.Mod: "%",
    exp.DPipe: "||",
}
_CLAUSES = {
    "with": "WITH (common table expressions)",
    "with_": "WITH (common table expressions)",
    "joins": "JOIN",
    "laterals": "LATERAL",
    "distinct": "SELECT DISTINCT",
    "having": "HAVING",
    "qualify": "QUALIFY",
    "windows": "WINDOW",
    "locks": "FOR UPDATE / FOR SHARE",
    "into": "SELECT INTO",
    "sample": "TABLESAMPLE",
    "pivots": "PIVOT",
    "prewhere": "PREWHERE",
    "connect": "CONNECT BY",
    "cluster": "CLUSTER BY",
    "distribute": "DISTRIBUTE BY",
    "sort": "SORT BY",
    "match": "MATCH_RECOGNIZE",
    "settings": "SETTINGS",
    "format": "FORMAT",
    "hint": "query hints",
}
_WRITES = ("Insert", "Update", "Delete", "Merge", "Drop", "Create", "Alter", "TruncateTable", "Copy")


_ARGS_EXPR = frozenset({"this", "expression"})
# The arguments of each translated node that the translation understands. Any other
# argument that is set (a newer sqlglot, an exotic clause) is refused rather than ignored.
_KNOWN_ARGS: dict[type[exp.Expression], frozenset[str]] = {
    exp.Column: frozenset({"this", "table", "db", "catalog"}),
    exp.Identifier: frozenset({"this", "quoted"}),
    exp.Literal: frozenset({"this", "is_string"}),
    exp.Boolean: frozenset({"this"}),
    exp.Null: frozenset(),
    exp.Star: frozenset(),
    exp.Paren: frozenset({"this"}),
    exp.Neg: frozenset({"this"}),
    exp.Not: frozenset({"this"}),
    exp.HexString: frozenset({"this", "is_integer"}),
    exp.Array: frozenset({"expressions", "bracket_notation", "struct_name_inheritance"}),
    exp.Cast: frozenset({"this", "to"}),
    exp.Placeholder: frozenset({"this", "jdbc", "kind"}),
    exp.Parameter: frozenset({"this"}),
    exp.JSONExtract: frozenset({"this", "expression", "only_json_types"}),
    exp.JSONExtractScalar: frozenset({"this", "expression", "only_json_types"}),
    exp.Bracket: frozenset({"this", "expressions"}),
    exp.And: _ARGS_EXPR,
    exp.Or: _ARGS_EXPR,
    exp.EQ: _ARGS_EXPR,
    exp.NEQ: _ARGS_EXPR,
    exp.GT: _ARGS_EXPR,
    exp.GTE: _ARGS_EXPR,
    exp.LT: _ARGS_EXPR,
    exp.LTE: _ARGS_EXPR,
    exp.In: frozenset({"this", "expressions", "field", "query", "unnest", "negate"}),
    exp.Like: frozenset({"this", "expression", "escape", "negate"}),
    exp.ILike: frozenset({"this", "expression", "escape", "negate"}),
    exp.Escape: _ARGS_EXPR,
    exp.Between: frozenset({"this", "low", "high", "symmetric", "negate"}),
    exp.Is: frozenset({"this", "expression", "negate"}),
    exp.Contains: _ARGS_EXPR,
    exp.Lower: frozenset({"this"}),
    exp.Upper: frozenset({"this"}),
    exp.Abs: frozenset({"this"}),
    exp.Length: frozenset({"this", "binary"}),
    exp.Coalesce: frozenset({"this", "expressions", "is_nvl", "is_null"}),
    exp.Count: frozenset({"this", "expressions", "big_int"}),
    exp.Sum: frozenset({"this", "expressions"}),
    exp.Avg: frozenset({"this", "expressions"}),
    exp.Min: frozenset({"this", "expressions"}),
    exp.Max: frozenset({"this", "expressions"}),
    exp.Distinct: frozenset({"expressions"}),
    exp.Anonymous: frozenset({"this", "expressions"}),
    exp.Any: frozenset({"this"}),
    exp.Alias: frozenset({"this", "alias"}),
    exp.Ordered: frozenset({"this", "desc", "nulls_first"}),
}


def _check_args(node: exp.Expression) -> None:
    known = _KNOWN_ARGS.get(type(node))
    if known is None:
        return
    for key, value in node.args.items():
        if key not in known and value not in (None, False, []):
            text = node.sql(dialect=MultimodalSQL)
            raise QueryError(f"unsupported SQL syntax in {text[:60]!r} ({key.upper()})")


class _Translator:
    """sqlglot tree -> expression nodes. One instance per statement (it numbers ``?``)."""

    def __init__(self) -> None:
        self.positional = 0
        self.styles: set[str] = set()

    # -- literals ------------------------------------------------------------------------
    def number(self, text: str) -> int | float:
        return int(text) if re.fullmatch(r"[0-9]+", text) else float(text)

    def constant(self, node: exp.Expression) -> tuple[bool, Any]:
        """``(True, value)`` when ``node`` is a constant, else ``(False, None)``."""
        _check_args(node)
        if isinstance(node, exp.Paren):
            return self.constant(node.this)
        if isinstance(node, exp.Literal):
            return True, (node.this if node.is_string else self.number(node.this))
        if isinstance(node, exp.Boolean):
            return True, bool(node.this)
        if isinstance(node, exp.Null):
            return True, None
        if isinstance(node, exp.Neg):
            ok, value = self.constant(node.this)
            if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
                return True, -value
            return False, None
        if isinstance(node, exp.HexString):
            return True, bytes.fromhex(node.this)
        if isinstance(node, exp.Array):
            values = []
            for item in node.expressions:
                ok, value = self.constant(item)
                if not ok or isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise QueryError(
                        f"array literals are query vectors and must hold numbers: {node.sql(dialect=MultimodalSQL)}"
                    )
                values.append(value)
            if not values:
                raise QueryError("an empty ARRAY[] is not a query vector")
            return True, np.asarray(values, dtype=np.float32)
        if isinstance(node, exp.Cast):
            ok, value = self.constant(node.this)
            if not ok:
                return False, None
            return True, self.cast(value, node)
        return False, None

    def cast(self, value: Any, node: exp.Cast) -> Any:
        target = getattr(node.to.this, "name", str(node.to.this)).upper()
        if value is None:
            return None
        try:
            if target == "DATE":
                return _dt.date.fromisoformat(str(value))
            if target in ("TIMESTAMP", "DATETIME", "TIMESTAMPNTZ"):
                return _dt.datetime.fromisoformat(str(value))
            if target in ("TIMESTAMPTZ", "TIMESTAMPLTZ"):
                stamp = _dt.datetime.fromisoformat(str(value))
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.timezone.utc)
            if target in ("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "BIGDECIMAL"):
                return float(value)
            if target in ("INT", "BIGINT", "SMALLINT", "TINYINT", "MEDIUMINT", "UINT", "UBIGINT"):
                return int(value)
            if target in ("TEXT", "VARCHAR", "CHAR", "NVARCHAR", "NCHAR"):
                return str(value)
            if target == "BOOLEAN":
                if isinstance(value, str) and value.lower() in ("true", "false", "t", "f", "1", "0"):
                    return value.lower() in ("true", "t", "1")
                return bool(value)
        except (TypeError, ValueError) as err:
            raise QueryError(f"cannot cast {value!r} to {target}: {err}") from None
        raise QueryError(f"CAST to {target} is not supported")

    # -- expressions ---------------------------------------------------------------------
    def expr(self, node: exp.Expression) -> Expr:
        _check_args(node)
        ok, value = self.constant(node)
        if ok:
            return Literal(value)
        if isinstance(node, exp.Paren):
            return self.expr(node.this)
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                return Star()
            return Column(node.name)
        if isinstance(node, exp.Star):
            return Star()
        if isinstance(node, exp.Identifier):
            return Column(node.this)
        if isinstance(node, exp.Placeholder):
            return self.placeholder(node)
        if isinstance(node, exp.Parameter):
            return self.dollar(node)
        if isinstance(node, (exp.JSONExtractScalar, exp.JSONExtract)):
            return self.json_access(
                self.expr(node.this), self.json_steps(node.expression), isinstance(node, exp.JSONExtractScalar)
            )
        if isinstance(node, exp.Bracket):
            return self.json_access(self.expr(node.this), self.bracket_steps(node), False)
        for cls, op in _COMPARE.items():
            if type(node) is cls:
                if op == "=" and isinstance(node.expression, exp.Any):
                    return self.any_in(node)
                return Compare(op, self.expr(node.this), self.expr(node.expression))
        if isinstance(node, exp.And):
            return And((self.expr(node.this), self.expr(node.expression)))
        if isinstance(node, exp.Or):
            return Or((self.expr(node.this), self.expr(node.expression)))
        if isinstance(node, exp.Not):
            return self.negation(node.this)
        if isinstance(node, exp.In):
            return self.in_(node)
        if isinstance(node, (exp.Like, exp.ILike, exp.Escape)):
            return self.like(node)
        if isinstance(node, exp.Between):
            if node.args.get("symmetric"):
                raise QueryError("BETWEEN SYMMETRIC is not supported")
            return Between(
                self.expr(node.this),
                self.expr(node.args["low"]),
                self.expr(node.args["high"]),
                bool(node.args.get("negate")),
            )
        if isinstance(node, exp.Is):
            return self.is_(node)
        if isinstance(node, exp.Contains):
            return Contains(self.expr(node.this), self.expr(node.expression))
        for cls, fname in _SCALAR_FUNCS.items():
            if type(node) is cls:
                return Function(fname, (self.expr(node.this),))
        if isinstance(node, exp.Coalesce):
            return Function("coalesce", tuple(self.expr(a) for a in [node.this, *node.expressions]))
        for cls, agg in _AGGREGATES.items():
            if type(node) is cls:
                return self.aggregate(agg, node)
        if isinstance(node, exp.Anonymous):
            return self.anonymous(node)
        raise self.unsupported(node)

    def unsupported(self, node: exp.Expression) -> QueryError:
        text = node.sql(dialect=MultimodalSQL)
        if len(text) > 60:
            text = text[:57] + "..."
        for cls, op in _ARITHMETIC.items():
            if isinstance(node, cls):
                return QueryError(f"arithmetic ({op}) is not supported in queries: {text}")
        if isinstance(node, exp.Neg):
            return QueryError(f"unary minus is only supported on numbers: {text}")
        if isinstance(node, (exp.Subquery, exp.Select, exp.Exists, exp.Union)):
            return QueryError(f"subqueries are not supported: {text}")
        if isinstance(node, (exp.Case, exp.If)):
            return QueryError(f"CASE expressions are not supported: {text}")
        if isinstance(node, exp.Window):
            return QueryError(f"window functions (OVER) are not supported: {text}")
        if isinstance(node, (exp.NullSafeEQ, exp.NullSafeNEQ)):
            return QueryError(f"IS [NOT] DISTINCT FROM is not supported: {text}")
        if isinstance(node, exp.Cast):
            return QueryError(f"CAST is only supported on literals: {text}")
        if isinstance(node, exp.Func):
            return QueryError(f"function {node.sql_name()}() is not supported: {text}")
        return QueryError(f"unsupported SQL construct {type(node).__name__.upper()}: {text}")

    def placeholder(self, node: exp.Placeholder) -> Param:
        name = node.name
        if node.args.get("jdbc") or not name or name == "?":
            self.styles.add("?")
            index = self.positional
            self.positional += 1
            return Param(index)
        self.styles.add(":name")
        return Param(name)

    def dollar(self, node: exp.Parameter) -> Param:
        ok, value = self.constant(node.this) if isinstance(node.this, exp.Expression) else (False, None)
        if not ok or not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise QueryError(f"unsupported parameter {node.sql(dialect=MultimodalSQL)}; use :name, ? or $1")
        self.styles.add("$n")
        return Param(value - 1)

    def json_steps(self, node: exp.Expression) -> tuple[str | int, ...]:
        if isinstance(node, exp.JSONPath):
            steps: list[str | int] = []
            for part in node.expressions:
                if isinstance(part, exp.JSONPathRoot):
                    continue
                if (isinstance(part, exp.JSONPathKey) and isinstance(part.this, str)) or (isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, int)):
                    steps.append(part.this)
                else:
                    raise QueryError(f"unsupported JSON path step {part.sql(dialect=MultimodalSQL)}")
            return tuple(steps)
        return (self.json_step(node),)

    def json_step(self, node: exp.Expression) -> str | int:
        ok, value = self.constant(node)
        if ok and (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            return value
        raise QueryError(
            f"a JSON key must be a string or integer literal, got {node.sql(dialect=MultimodalSQL)}"
        )

    def bracket_steps(self, node: exp.Bracket) -> tuple[str | int, ...]:
        if len(node.expressions) != 1 or isinstance(node.expressions[0], exp.Slice):
            raise QueryError(f"unsupported subscript {node.sql(dialect=MultimodalSQL)}; use col['key'] or col[0]")
        return (self.json_step(node.expressions[0]),)

    def json_access(self, base: Expr, steps: tuple[str | int, ...], as_text: bool) -> JsonPath:
        if isinstance(base, Column):
            return JsonPath(base, steps, as_text)
        if isinstance(base, JsonPath):
            if base.as_text:
                raise QueryError(
                    f"{to_sql(base)} is text (->>): use -> for every step but the last, e.g. "
                    f"{to_sql(JsonPath(base.base, base.path, False))}->..."
                )
            return JsonPath(base.base, base.path + steps, as_text)
        raise QueryError(f"-> / ->> / [] read into a JSON column, not into {to_sql(base, abbreviate=True)}")

    def negation(self, child: exp.Expression) -> Expr:
        if isinstance(child, (exp.In, exp.Like, exp.ILike, exp.Escape, exp.Between)) or (
            isinstance(child, exp.Is) and isinstance(child.expression, exp.Null)
        ):
            inner = self.expr(child)
            if isinstance(inner, In):
                return In(inner.arg, inner.values, not inner.negated)
            if isinstance(inner, Like):
                return Like(inner.arg, inner.pattern, inner.case_insensitive, not inner.negated)
            if isinstance(inner, Between):
                return Between(inner.arg, inner.low, inner.high, not inner.negated)
            if isinstance(inner, IsNull):
                return IsNull(inner.arg, not inner.negated)
            return Not(inner)
        return Not(self.expr(child))

    def in_(self, node: exp.In) -> In:
        if node.args.get("query") is not None:
            raise QueryError(f"subqueries are not supported: {node.sql(dialect=MultimodalSQL)}")
        if node.args.get("unnest") is not None:
            raise QueryError("IN UNNEST(...) is not supported; use IN (...) or IN :list")
        arg = self.expr(node.this)
        negate = bool(node.args.get("negate"))
        field = node.args.get("field")
        if field is not None:
            values = self.expr(field)
            if not isinstance(values, Param):
                raise QueryError(f"IN needs a parenthesised list or a parameter, got {field.sql()}")
            return In(arg, values, negate)
        return In(arg, tuple(self.expr(v) for v in node.expressions), negate)

    def any_in(self, node: exp.Expression) -> In:
        inner = node.expression.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        arg = self.expr(node.this)
        if isinstance(inner, exp.Array):
            return In(arg, tuple(self.expr(v) for v in inner.expressions), False)
        values = self.expr(inner)
        if not isinstance(values, Param):
            raise QueryError("= ANY(...) needs a parameter or an ARRAY[...] of values")
        return In(arg, values, False)

    def like(self, node: exp.Expression) -> Like:
        escape: str | None = None
        if isinstance(node, exp.Escape):
            ok, esc = self.constant(node.expression)
            if not ok or not isinstance(esc, str) or len(esc) > 1:
                raise QueryError("ESCAPE takes a single character")
            escape = esc
            node = node.this
            if not isinstance(node, (exp.Like, exp.ILike)):
                raise self.unsupported(node)
            _check_args(node)
        if node.args.get("escape") is not None:
            ok, esc = self.constant(node.args["escape"])
            if not ok or not isinstance(esc, str) or len(esc) > 1:
                raise QueryError("ESCAPE takes a single character")
            escape = esc
        pattern = self.expr(node.expression)
        if escape is not None and escape != "\\":
            if not (isinstance(pattern, Literal) and isinstance(pattern.value, str)):
                raise QueryError("ESCAPE needs a literal pattern")
            pattern = Literal(_rewrite_escape(pattern.value, escape))
        return Like(self.expr(node.this), pattern, isinstance(node, exp.ILike), bool(node.args.get("negate")))

    def is_(self, node: exp.Is) -> Expr:
        negate = bool(node.args.get("negate"))
        arg = self.expr(node.this)
        target = node.expression
        if isinstance(target, exp.Null):
            return IsNull(arg, negate)
        if isinstance(target, exp.Boolean):
            cond = And((IsNull(arg, True), Compare("=", arg, Literal(bool(target.this)))))
            return Not(cond) if negate else cond
        raise self.unsupported(node)

    def aggregate(self, name: str, node: exp.Expression) -> Aggregate:
        if node.expressions:
            raise QueryError(f"{name}() takes one argument: {node.sql(dialect=MultimodalSQL)}")
        target = node.this
        distinct = False
        if isinstance(target, exp.Distinct):
            if len(target.expressions) != 1:
                raise QueryError(f"{name}(DISTINCT ...) takes one argument")
            distinct = True
            target = target.expressions[0]
        if target is None or isinstance(target, exp.Star):
            if name != "count":
                raise QueryError(f"{name}(*) is not valid; name a column")
            return Aggregate("count", None, distinct)
        arg = self.expr(target)
        if any(isinstance(n, Aggregate) for n in arg.walk()):
            raise QueryError("aggregates cannot be nested")
        return Aggregate(name, arg, distinct)

    def anonymous(self, node: exp.Anonymous) -> Expr:
        name = str(node.name).lower()
        args = [self.expr(a) for a in node.expressions]
        if name in VECTOR_FUNCTIONS:
            return _vector_function(name, args)
        if name == "contains":
            if len(args) != 2:
                raise QueryError("CONTAINS takes 2 arguments: CONTAINS(column, value)")
            return Contains(args[0], args[1])
        known = ", ".join(sorted([*VECTOR_FUNCTIONS, "lower", "upper", "length", "abs", "coalesce", "contains"]))
        raise QueryError(f"unknown function {node.name}(); supported functions: {known}")

    # -- statements ----------------------------------------------------------------------
    def check_param_styles(self) -> None:
        if len(self.styles) > 1:
            raise ParameterError(
                f"the query mixes parameter styles ({', '.join(sorted(self.styles))}); use one style"
            )

    def select(self, stmt: exp.Select) -> QueryPlan:
        for key, value in stmt.args.items():
            if key in ("expressions", "from", "from_", "where", "group", "order", "limit", "offset"):
                continue
            if value:
                raise QueryError(f"{_CLAUSES.get(key, key.upper())} is not supported")
        source = self.source(stmt.args.get("from_") or stmt.args.get("from"))
        if not stmt.expressions:
            raise QueryError("the SELECT list is empty; write SELECT * or name the columns")

        items: list[SelectItem] = []
        aliases: dict[str, SelectItem] = {}
        for node in stmt.expressions:
            if isinstance(node, exp.Alias):
                e = self.expr(node.this)
                if isinstance(e, Star):
                    raise QueryError("* cannot be renamed")
                item = SelectItem(e, node.alias)
                aliases[node.alias] = item
            else:
                e = self.expr(node)
                item = SelectItem(e, _default_name(e))
            items.append(item)
        names = [i.name for i in items if not isinstance(i.expr, Star)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise QueryError(f"duplicate output column name {dupes[0]!r}; rename one with AS")
        for item in items:
            _check_select_item(item)
        select: list[SelectItem] | None = items
        if len(items) == 1 and isinstance(items[0].expr, Star):
            select = None

        where_node = stmt.args.get("where")
        where = self.expr(where_node.this) if where_node is not None else None
        if where is not None:
            _check_condition(where, "WHERE")

        group_by: list[Expr] = []
        group_node = stmt.args.get("group")
        if group_node is not None:
            for key in ("rollup", "cube", "grouping_sets", "totals"):
                if group_node.args.get(key):
                    raise QueryError(f"GROUP BY {key.upper().replace('_', ' ')} is not supported")
            for g in group_node.expressions:
                group_by.append(self.resolve(g, items, aliases)[0])
            for g in group_by:
                _check_condition(g, "GROUP BY")

        vector: VectorSearch | None = None
        order_by: list[OrderKey] = []
        order_node = stmt.args.get("order")
        for ordered in order_node.expressions if order_node is not None else []:
            _check_args(ordered)
            e, alias = self.resolve(ordered.this, items, aliases)
            desc = ordered.args.get("desc")
            if isinstance(e, Function) and e.is_vector:
                if vector is not None:
                    raise QueryError("only one vector similarity can order the results")
                if order_by:
                    raise QueryError("the vector similarity must be the first ORDER BY key")
                column, query = e.args
                assert isinstance(column, Column)
                metric = metric_of(e.name)
                descending = (metric != "l2") if desc is None else bool(desc)
                if alias is None:
                    alias = next((i.name for i in items if structural_key(i.expr) == structural_key(e)), None)
                vector = VectorSearch(column.name, query, metric, descending, alias)
                continue
            for node in e.walk():
                if isinstance(node, Function) and node.is_vector:
                    raise QueryError(f"{node.name}(...) must be a whole ORDER BY key")
                if isinstance(node, Star):
                    raise QueryError("* cannot be an ORDER BY key")
            order_by.append(OrderKey(e, bool(desc)))

        limit = self.count_clause(stmt.args.get("limit"), "LIMIT")
        offset = self.count_clause(stmt.args.get("offset"), "OFFSET")
        plan = QueryPlan(
            source=source,
            select=select,
            where=where,
            vector=vector,
            order_by=order_by,
            group_by=group_by,
            limit=limit,
            offset=offset,
        )
        _check_aggregation(plan, items)
        return plan

    def source(self, from_node: exp.Expression | None) -> str | None:
        if from_node is None:
            return None
        table = from_node.this
        if isinstance(table, exp.Subquery):
            raise QueryError("subqueries are not supported (FROM (SELECT ...))")
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise QueryError(f"unsupported FROM source: {table.sql(dialect=MultimodalSQL)}")
        for key, value in table.args.items():
            if key not in ("this", "db", "catalog", "alias") and value:
                raise QueryError(f"{_CLAUSES.get(key, key.upper())} is not supported in FROM")
        parts = [table.args.get("catalog"), table.args.get("db"), table.this]
        return ".".join(p.name for p in parts if p is not None)

    def resolve(
        self, node: exp.Expression, items: list[SelectItem], aliases: dict[str, SelectItem]
    ) -> tuple[Expr, str | None]:
        """An ORDER BY / GROUP BY key: a SELECT alias, a 1-based position, or an expression."""
        if isinstance(node, exp.Column) and not node.table and isinstance(node.this, exp.Identifier):
            item = aliases.get(node.name)
            if item is not None:
                return item.expr, item.name
        if isinstance(node, exp.Literal) and not node.is_string and re.fullmatch(r"[0-9]+", node.this):
            pos = int(node.this)
            if not 1 <= pos <= len(items) or isinstance(items[pos - 1].expr, Star):
                raise QueryError(f"position {pos} does not name a SELECT item")
            item = items[pos - 1]
            return item.expr, item.name
        return self.expr(node), None

    def count_clause(self, node: exp.Expression | None, what: str) -> Expr | None:
        if node is None:
            return None
        if isinstance(node, exp.Fetch):
            value_node = node.args.get("count")
        elif isinstance(node, (exp.Limit, exp.Offset)):
            if node.args.get("expressions"):
                raise QueryError(f"{what} BY is not supported")
            value_node = node.expression
        else:
            value_node = node
        if value_node is None or (isinstance(value_node, exp.Var) and value_node.name.upper() == "ALL"):
            return None
        e = self.expr(value_node)
        if isinstance(e, Param):
            return e
        if isinstance(e, Literal) and isinstance(e.value, int) and not isinstance(e.value, bool) and e.value >= 0:
            return e
        raise QueryError(f"{what} must be a non-negative integer or a parameter, got {to_sql(e, abbreviate=True)}")


def _rewrite_escape(pattern: str, escape: str) -> str:
    """A LIKE pattern with a custom ESCAPE character, rewritten to backslash escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if escape and ch == escape:
            if i + 1 >= len(pattern):
                raise QueryError(f"LIKE pattern {pattern!r} ends with the escape character")
            nxt = pattern[i + 1]
            out.append("\\" + nxt if nxt in "%_\\" else nxt)
            i += 2
            continue
        out.append("\\\\" if ch == "\\" else ch)
        i += 1
    return "".join(out)


def _vector_function(name: str, args: list[Expr]) -> Function:
    if len(args) != 2:
        raise QueryError(f"{name}() takes 2 arguments: {name}(vector_column, query_vector)")
    a, b = args
    if isinstance(b, Column) and not isinstance(a, Column):
        a, b = b, a
    if not isinstance(a, Column):
        raise QueryError(f"{name}() needs a vector column as one argument")
    if not (isinstance(b, Param) or (isinstance(b, Literal) and isinstance(b.value, np.ndarray))):
        raise QueryError(
            f"{name}() needs a query vector as its other argument: a parameter such as :q, or ARRAY[...]"
        )
    return Function(name, (a, b))


def _default_name(e: Expr) -> str:
    if isinstance(e, Column):
        return e.name
    if isinstance(e, Star):
        return "*"
    return to_sql(e, abbreviate=True)


def _check_select_item(item: SelectItem) -> None:
    e = item.expr
    for node in e.walk():
        if node is not e and isinstance(node, Function) and node.is_vector:
            raise QueryError(f"{node.name}(...) must be a whole SELECT item (name it with AS)")
        if node is not e and isinstance(node, Star):
            raise QueryError("* can only appear alone or in count(*)")
        if node is not e and isinstance(node, Aggregate):
            raise QueryError(f"{to_sql(node)} must be a whole SELECT item (expressions over aggregates are not supported)")


def _check_condition(e: Expr, clause: str) -> None:
    for node in e.walk():
        if isinstance(node, Function) and node.is_vector:
            raise QueryError(f"{node.name}(...) can only appear in SELECT or ORDER BY")
        if isinstance(node, Aggregate):
            raise QueryError(f"aggregate {to_sql(node)} is not allowed in {clause} (HAVING is not supported)")
        if isinstance(node, Star):
            raise QueryError(f"* is not allowed in {clause}")


def _check_aggregation(plan: QueryPlan, items: list[SelectItem]) -> None:
    has_agg = any(isinstance(i.expr, Aggregate) for i in items) or any(
        isinstance(n, Aggregate) for k in plan.order_by for n in k.expr.walk()
    )
    if not has_agg and not plan.group_by:
        return
    if plan.vector is not None:
        raise QueryError("ORDER BY a vector similarity cannot be combined with GROUP BY or aggregates")
    keys = {structural_key(g) for g in plan.group_by}
    for item in items:
        if isinstance(item.expr, Star):
            raise QueryError("SELECT * cannot be combined with GROUP BY or aggregates; name the columns")
        if isinstance(item.expr, Aggregate) or structural_key(item.expr) in keys:
            continue
        raise QueryError(f"{item.name!r} must appear in GROUP BY or be used in an aggregate function")
    for key in plan.order_by:
        if isinstance(key.expr, Aggregate) or structural_key(key.expr) in keys:
            continue
        raise QueryError(f"ORDER BY {to_sql(key.expr)} must appear in GROUP BY or be an aggregate")


def _statement_kind(stmt: exp.Expression) -> str:
    if isinstance(stmt, exp.Command):
        return str(stmt.this).upper()
    return type(stmt).__name__.upper()


def parse_sql(text: str) -> QueryPlan:
    """Parse one SELECT statement into a :class:`~multimodal_store.plan.QueryPlan`."""
    if not isinstance(text, str):
        raise TypeError(f"parse_sql takes SQL text, got {type(text).__name__}")
    statements = [s for s in _parse(text) if s is not None]
    if not statements:
        raise QuerySyntaxError("empty query: expected SELECT ...", line=1, column=1, token=None)
    if len(statements) > 1:
        raise QueryError(f"one statement per query, got {len(statements)}")
    stmt = statements[0]
    if not isinstance(stmt, exp.Select):
        kind = _statement_kind(stmt)
        writes = tuple(getattr(exp, n) for n in _WRITES if hasattr(exp, n))
        if isinstance(stmt, writes) or kind in ("INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "TRUNCATE"):
            raise QueryError(
                f"{kind} is not supported: a query only reads data (SELECT); change data with the "
                "Dataset methods (append, update, delete, ...)"
            )
        if isinstance(stmt, (exp.Union, exp.Intersect, exp.Except)):
            raise QueryError(f"{kind} is not supported: one SELECT per query")
        raise QueryError(f"only SELECT queries are supported, got {kind}")
    translator = _Translator()
    plan = translator.select(stmt)
    translator.check_param_styles()
    return plan


def _condition_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected SQL text, got {type(text).__name__}")
    m = re.match(r"^\s*WHERE\b", text, flags=re.IGNORECASE)
    if m:  # blank the keyword out so that error columns still match the caller's text
        text = text[: m.end() - 5] + " " * 5 + text[m.end() :]
    if not text.strip():
        raise QuerySyntaxError("SQL syntax error: empty condition", line=1, column=1, token=None)
    return text


def parse_where(text: str) -> Expr:
    """Parse a bare predicate such as ``"content_type = 'image' AND year > 2000"``
    (a leading ``WHERE`` is allowed)."""
    node = _parse(_condition_text(text), into=exp.Condition)[0]
    assert node is not None
    translator = _Translator()
    e = translator.expr(node)
    _check_condition(e, "WHERE")
    translator.check_param_styles()
    return e


def parse_expr(text: str) -> Expr:
    """Parse one expression (e.g. ``"lower(title)"``, ``"cosine_similarity(emb, :q)"``)."""
    if not isinstance(text, str):
        raise TypeError(f"expected SQL text, got {type(text).__name__}")
    node = _parse(text, into=exp.Condition)[0]
    assert node is not None
    translator = _Translator()
    e = translator.expr(node)
    translator.check_param_styles()
    return e
