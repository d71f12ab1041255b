"""Differential tests: ``evaluate`` over a TableSource against DuckDB on the same Arrow table.

Hypothesis draws a table (int, float, text and bool columns with NULLs) and a predicate
tree (comparisons, IN / NOT IN, LIKE / ILIKE with % _ and escapes, BETWEEN, IS NULL,
scalar functions, AND / OR / NOT). The matching row sets must be identical (NULL = no
match). The same predicate, rendered to SQL and read back with ``parse_where``, must give
an equal tree and the same rows.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_store.expr import (
    Expr,
    TableSource,
    col,
    evaluate,
    func,
    lit,
    mask_from,
    to_sql,
)
from multimodal_store.sql import parse_where

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# characters with LIKE meaning, case pairs, a non-ASCII pair, blanks and newlines
CHARS = "abAB%_\\ \néÉ"
LITERAL_CHARS = "abAB \néÉ"  # pattern characters without LIKE meaning

ints = st.integers(-4, 4)
floats = st.one_of(
    st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 3.75]),
    st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=64),
)
texts = st.text(alphabet=CHARS, max_size=4)


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    n = draw(st.integers(0, 25))

    def column(values: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(st.one_of(st.none(), values), min_size=n, max_size=n))

    return pa.table(
        {
            "rid": pa.array(range(n), pa.int64()),
            "i": pa.array(column(ints), pa.int64()),
            "f": pa.array(column(floats), pa.float64()),
            "s": pa.array(column(texts), pa.string()),
            "b": pa.array(column(st.booleans()), pa.bool_()),
        }
    )


OPS = ["=", "!=", "<", "<=", ">", ">="]


def _cmp(left: Expr, op: str, right: Any) -> Expr:
    right_e = right if isinstance(right, Expr) else lit(right)
    return {
        "=": left == right_e,
        "!=": left != right_e,
        "<": left < right_e,
        "<=": left <= right_e,
        ">": left > right_e,
        ">=": left >= right_e,
    }[op]


@st.composite
def like_patterns(draw: st.DrawFn) -> str:
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(["%", "_", "\\%", "\\_", "\\\\"]),
                st.text(alphabet=LITERAL_CHARS, min_size=1, max_size=2),
            ),
            max_size=4,
        )
    )
    return "".join(parts)


numeric_cols = st.sampled_from(["i", "f"])
numbers = st.one_of(ints, floats)


@st.composite
def leaves(draw: st.DrawFn) -> Expr:
    kind = draw(st.sampled_from(["num", "text", "bool", "colcol", "in", "like", "between", "null", "func", "flip"]))
    if kind == "num":
        return _cmp(col(draw(numeric_cols)), draw(st.sampled_from(OPS)), draw(st.one_of(numbers, st.none())))
    if kind == "text":
        return _cmp(col("s"), draw(st.sampled_from(OPS)), draw(texts))
    if kind == "bool":
        choice = draw(st.integers(0, 2))
        if choice == 0:
            return col("b")
        return _cmp(col("b"), draw(st.sampled_from(OPS)), draw(st.booleans()))
    if kind == "colcol":
        return _cmp(col(draw(numeric_cols)), draw(st.sampled_from(OPS)), col(draw(numeric_cols)))
    if kind == "in":
        which = draw(st.sampled_from(["i", "f", "s"]))
        values = st.one_of(st.none(), ints) if which == "i" else st.one_of(st.none(), numbers if which == "f" else texts)
        vals = draw(st.lists(values, min_size=1, max_size=4))
        return col(which).not_in(vals) if draw(st.booleans()) else col(which).isin(vals)
    if kind == "like":
        pattern = draw(like_patterns())
        ci, neg = draw(st.booleans()), draw(st.booleans())
        method = {(False, False): "like", (True, False): "ilike", (False, True): "not_like", (True, True): "not_ilike"}
        return getattr(col("s"), method[(ci, neg)])(pattern)  # type: ignore[no-any-return]
    if kind == "between":
        if draw(st.booleans()):
            c, lo, hi = col(draw(numeric_cols)), draw(numbers), draw(numbers)
        else:
            c, lo, hi = col("s"), draw(texts), draw(texts)
        return c.not_between(lo, hi) if draw(st.booleans()) else c.between(lo, hi)
    if kind == "null":
        c = col(draw(st.sampled_from(["i", "f", "s", "b"])))
        return c.is_not_null() if draw(st.booleans()) else c.is_null()
    if kind == "func":
        which = draw(st.integers(0, 4))
        if which == 0:
            return _cmp(func(draw(st.sampled_from(["lower", "upper"])), col("s")), "=", draw(texts))
        if which == 1:
            return _cmp(func("length", col("s")), draw(st.sampled_from(OPS)), draw(st.integers(0, 4)))
        if which == 2:
            return _cmp(func("abs", col(draw(numeric_cols))), draw(st.sampled_from(OPS)), draw(numbers))
        if which == 3:
            return _cmp(func("coalesce", col("i"), draw(ints)), draw(st.sampled_from(OPS)), draw(ints))
        return _cmp(func("coalesce", col("s"), draw(texts)), draw(st.sampled_from(OPS)), draw(texts))
    # "flip": the literal on the left
    return _cmp(lit(draw(ints)), draw(st.sampled_from(OPS)), col(draw(numeric_cols)))


def predicates() -> st.SearchStrategy[Expr]:
    return st.recursive(
        leaves(),
        lambda children: st.one_of(
            st.lists(children, min_size=2, max_size=3).map(lambda xs: xs[0] & xs[1] if len(xs) == 2 else xs[0] & xs[1] & xs[2]),
            st.lists(children, min_size=2, max_size=3).map(lambda xs: xs[0] | xs[1] if len(xs) == 2 else xs[0] | xs[1] | xs[2]),
            children.map(lambda x: ~x),
        ),
        max_leaves=6,
    )


@pytest.fixture(scope="module")
def con() -> Any:
    connection = duckdb.connect()
    yield connection
    connection.close()


def _ours(expr: Expr, table: pa.Table) -> list[int]:
    mask = mask_from(evaluate(expr, TableSource(table)))
    return [int(r) for r in np.asarray(table.column("rid"))[mask]]


def _duckdb(con: Any, expr: Expr, table: pa.Table) -> list[int]:
    con.register("t", table)
    try:
        rows = con.execute(f"SELECT rid FROM t WHERE {to_sql(expr, dialect='duckdb')} ORDER BY rid").fetchall()
    finally:
        con.unregister("t")
    return [r[0] for r in rows]


@SETTINGS
@given(table=tables(), expr=predicates())
def test_matches_duckdb(con: Any, table: pa.Table, expr: Expr) -> None:
    expected = _duckdb(con, expr, table)
    assert _ours(expr, table) == expected, to_sql(expr, dialect="duckdb")


@SETTINGS
@given(table=tables(), expr=predicates())
def test_parse_where_round_trip(table: pa.Table, expr: Expr) -> None:
    text = to_sql(expr)
    parsed = parse_where(text)
    assert parsed.equals(expr), (text, repr(parsed))
    assert _ours(parsed, table) == _ours(expr, table)


def test_null_literal_comparisons_match_nothing(con: Any) -> None:
    table = pa.table({"rid": [0, 1], "i": [1, None], "f": [1.0, None], "s": ["a", None], "b": [True, None]})
    for expr in (col("i") == None, col("i") != None, ~(col("i") == None)):  # noqa: E711
        assert _ours(expr, table) == _duckdb(con, expr, table) == []


def test_in_with_null_matches_duckdb(con: Any) -> None:
    table = pa.table({"rid": [0, 1, 2], "i": [1, 2, None], "f": [1.0, 2.0, None], "s": ["a", "b", None], "b": [True, False, None]})
    for expr in (col("i").isin([1, None]), col("i").not_in([1, None]), col("i").not_in([3]), col("s").not_in(["a"])):
        assert _ours(expr, table) == _duckdb(con, expr, table), to_sql(expr)
