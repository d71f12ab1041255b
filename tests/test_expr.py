"""Expression builder, SQL rendering and vectorised evaluation (multimodal_store.expr)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal_store.errors import ColumnNotFoundError, ParameterError, QueryError
from multimodal_store.expr import (
    Aggregate,
    And,
    Between,
    Column,
    ColumnSource,
    Compare,
    Contains,
    Function,
    In,
    IsNull,
    JsonPath,
    Like,
    Literal,
    Not,
    Or,
    Param,
    TableSource,
    agg,
    bind_params,
    col,
    cosine_similarity,
    evaluate,
    func,
    lit,
    mask_from,
    param,
    to_sql,
)
from multimodal_store.sql import parse_where

# ---------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------


def test_comparison_operators_build_compare_nodes() -> None:
    for e, op in [
        (col("a") == 1, "="),
        (col("a") != 1, "!="),
        (col("a") < 1, "<"),
        (col("a") <= 1, "<="),
        (col("a") > 1, ">"),
        (col("a") >= 1, ">="),
    ]:
        assert isinstance(e, Compare)
        assert e.op == op
        assert e.left.equals(col("a"))
        assert isinstance(e.right, Literal) and e.right.value == 1
    flipped = 5 < col("a")  # noqa: SIM300  (Python reflects to col("a") > 5)
    assert flipped.equals(Compare(">", col("a"), lit(5)))
    numpy_left = np.float32(1.5) <= col("a")
    assert numpy_left.equals(Compare(">=", col("a"), lit(1.5)))
    assert Compare("<>", col("a"), lit(1)).op == "!="
    with pytest.raises(ValueError, match="unknown comparison"):
        Compare("~", col("a"), lit(1))


def test_boolean_combinators_flatten() -> None:
    a, b, c = col("a") == 1, col("b") == 2, col("c") == 3
    both = a & b & c
    assert isinstance(both, And) and len(both.args) == 3
    either = a | b | c
    assert isinstance(either, Or) and len(either.args) == 3
    mixed = (a | b) & c
    assert isinstance(mixed, And) and isinstance(mixed.args[0], Or)
    assert isinstance(~a, Not)
    assert (True & a).equals(And((lit(True), a)))


def test_truth_value_is_an_error() -> None:
    e = col("a") == 1
    with pytest.raises(TypeError, match=r"& \(and\), \| \(or\) and ~ \(not\)"):
        bool(e)
    with pytest.raises(TypeError):
        _ = (col("a") > 1) and (col("b") > 2)
    with pytest.raises(TypeError):
        if col("a") == 1:
            pass
    with pytest.raises(TypeError, match="not iterable"):
        list(col("a"))


def test_nodes_are_hashable_and_immutable() -> None:
    e = col("a") == 1
    f = col("a") == 1
    assert len({e, f}) == 2  # identity hashing: == builds expressions
    assert e.equals(f) and not e.equals(col("a") == 2)
    assert {e: 1}[e] == 1
    with pytest.raises(AttributeError):
        e.op = "<"  # type: ignore[misc]


def test_predicate_methods() -> None:
    a = col("a")
    assert a.isin([1, 2]).equals(In(a, (lit(1), lit(2)), False))
    assert a.not_in((1,)).equals(In(a, (lit(1),), True))
    assert a.isin(np.array([1, 2])).equals(In(a, (lit(1), lit(2)), False))
    assert a.isin(param("ids")).equals(In(a, Param("ids"), False))
    assert a.like("x%").equals(Like(a, lit("x%"), False, False))
    assert a.ilike("x%").equals(Like(a, lit("x%"), True, False))
    assert a.not_like("x%").equals(Like(a, lit("x%"), False, True))
    assert a.between(1, 2).equals(Between(a, lit(1), lit(2), False))
    assert a.not_between(1, 2).equals(Between(a, lit(1), lit(2), True))
    assert a.is_null().equals(IsNull(a, False))
    assert a.is_not_null().equals(IsNull(a, True))
    assert a.contains("x").equals(Contains(a, lit("x")))
    with pytest.raises(TypeError):
        a.isin("abc")


def test_json_paths() -> None:
    m = col("metadata")
    assert m["a"]["b"].equals(JsonPath(m, ("a", "b"), False))
    assert m["a"][0].astext.equals(JsonPath(m, ("a", 0), True))
    assert m["a"][np.int64(-1)].path == ("a", -1)
    with pytest.raises(TypeError):
        m["a"].astext["b"]
    with pytest.raises(TypeError):
        m[1.5]  # type: ignore[index]


def test_columns_and_params() -> None:
    e = (col("a") == param("x")) & col("m")["k"].isin(param("ids")) | (func("lower", col("s")) == "q")
    assert e.columns() == {"a", "m", "s"}
    assert e.params() == {"x", "ids"}
    assert (col("a") == param(0)).params() == {0}
    assert Param(":name").key == "name"


def test_literals_are_normalised() -> None:
    assert type(lit(np.int64(3)).value) is int
    assert type(lit(np.float32(0.5)).value) is float
    vec = lit([1, 2, 3]).value
    assert isinstance(vec, np.ndarray) and vec.dtype == np.float32
    tensor = lit(torch.ones(4)).value
    assert isinstance(tensor, np.ndarray) and tensor.shape == (4,)
    assert lit(pa.scalar(7)).value == 7
    with pytest.raises(TypeError):
        lit(col("a"))


def test_function_and_aggregate_validation() -> None:
    assert func("LOWER", col("s")).name == "lower"
    with pytest.raises(QueryError, match="unknown function"):
        func("sqrt", col("x"))
    with pytest.raises(QueryError, match="takes 1 argument"):
        func("abs", col("x"), col("y"))
    with pytest.raises(QueryError, match="2 arguments"):
        Function("cosine_similarity", (col("e"),))
    assert agg("count").arg is None
    assert agg("avg", col("x"), distinct=True).equals(Aggregate("avg", col("x"), True))
    with pytest.raises(QueryError, match="needs an argument"):
        agg("sum")
    with pytest.raises(QueryError, match="unknown aggregate"):
        agg("median", col("x"))
    sim = cosine_similarity("emb", param("q"))
    assert sim.equals(Function("cosine_similarity", (col("emb"), param("q"))))


# ---------------------------------------------------------------------------------------------
# SQL text
# ---------------------------------------------------------------------------------------------


def test_repr_is_sql() -> None:
    e = (col("a") == 1) & (col("m")["x"].astext == "it's") | ~col("s").like("a%")
    assert repr(e) == "a = 1 AND m->>'x' = 'it''s' OR NOT (s LIKE 'a%')"
    assert repr((col("a") == 1) & ((col("b") == 2) | (col("c") == 3))) == "a = 1 AND (b = 2 OR c = 3)"
    assert repr(col("my col") == None) == '"my col" = NULL'  # noqa: E711
    assert repr(col("select") == True) == '"select" = TRUE'  # noqa: E712
    assert repr(col("a").isin(param("ids"))) == "a IN :ids"
    assert repr(col("a") == param(0)) == "a = $1"
    assert repr(col("m")["tags"][-1]) == "m->'tags'->-1"
    assert repr(col("d") > dt.date(2024, 1, 2)) == "d > DATE '2024-01-02'"
    assert repr(agg("count")) == "count(*)"
    assert repr(agg("count", col("x"), distinct=True)) == "count(DISTINCT x)"
    long = cosine_similarity("e", np.arange(100, dtype=np.float32))
    assert repr(long) == "cosine_similarity(e, ARRAY[0.0, 1.0, 2.0, ... 100 values])"
    assert "99.0" in to_sql(long)


def test_duckdb_rendering_quotes_and_escapes() -> None:
    e = col("s").ilike("a\\%") & (col("x") != 2.5)
    assert to_sql(e, dialect="duckdb") == "\"s\" ILIKE 'a\\%' ESCAPE '\\' AND \"x\" != 2.5"


def test_round_trip_through_parse_where() -> None:
    exprs = [
        (col("a") == 1) & (col("m")["x"].astext == "it's") | ~col("s").like("a%"),
        col("m")["tags"][-1] == "z",
        col("a").not_in([1, None, 2.5]),
        col("weird \"name\"").between(-3, 4.5),
        col("d") >= dt.datetime(2024, 1, 2, 3, 4, 5),
        func("coalesce", col("a"), col("b"), 0) > 1,
        Not(col("flag")),
        col("x") == float("inf"),
        col("b") == b"\x00\xff",
    ]
    for e in exprs:
        back = parse_where(to_sql(e))
        assert back.equals(e), (to_sql(e), to_sql(back))


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def source() -> TableSource:
    table = pa.table(
        {
            "i": pa.array([1, 2, None, 4], pa.int64()),
            "f": pa.array([0.5, None, 2.5, -1.0], pa.float64()),
            "s": pa.array(["apple", "Banana", None, "cherry pie"], pa.string()),
            "b": pa.array([True, False, None, True], pa.bool_()),
            "d": pa.array([dt.date(2024, 1, 1), dt.date(2024, 6, 1), None, dt.date(2023, 1, 1)], pa.date32()),
            "ts": pa.array([dt.datetime(2024, 1, 1, 12), None, dt.datetime(2020, 1, 1), dt.datetime(2025, 1, 1)], pa.timestamp("us")),
            "tags": pa.array([["a", "b"], [], None, ["c"]], pa.list_(pa.string())),
            "nums": pa.array([[1, 2], [3], [None], None], pa.list_(pa.int64())),
            "emb": pa.array([[0.1, 0.2]] * 4, pa.list_(pa.float32(), 2)),
            "m": pa.array(['{"k": 1, "flag": true}', '{"k": "x"}', None, '{"flag": false}'], pa.string()),
        }
    )
    return TableSource(table, json_columns=["m"])


def values(e: object, source: TableSource, params: object = None) -> list[object]:
    return evaluate(e, source, params).to_pylist()  # type: ignore[arg-type]


def test_three_valued_logic(source: TableSource) -> None:
    gt = col("i") > 1  # [F, T, N, T]
    b = col("b")  # [T, F, N, T]
    assert values(gt, source) == [False, True, None, True]
    assert values(gt & b, source) == [False, False, None, True]
    assert values(gt | b, source) == [True, True, None, True]
    assert values(~gt, source) == [True, False, None, False]
    assert values((col("f") > 100) & b, source) == [False, False, False, False]  # FALSE AND NULL
    assert values((col("i") > 0) | b, source) == [True, True, None, True]
    assert mask_from(evaluate(gt, source)).tolist() == [False, True, False, True]


def test_comparisons_and_predicates(source: TableSource) -> None:
    assert values(col("i") == 2.0, source) == [False, True, None, False]
    assert values(col("i") < col("f"), source) == [False, None, None, False]
    assert values(col("s") >= "b", source) == [False, False, None, True]  # byte order: "B" < "b"
    assert values(col("b") == False, source) == [False, True, None, False]  # noqa: E712
    assert values(col("i").between(2, 4), source) == [False, True, None, True]
    assert values(col("f").is_null(), source) == [False, True, False, False]
    assert values(col("s").like("%an%"), source) == [False, True, None, False]
    assert values(col("s").ilike("b%"), source) == [False, True, None, False]
    assert values(col("s").not_like("%e"), source) == [False, True, None, False]
    assert values(col("i").isin([1, 4]), source) == [True, False, None, True]
    assert values(col("i").isin([1, None]), source) == [True, None, None, None]
    assert values(col("i").not_in([1, None]), source) == [False, None, None, None]
    assert values(col("i").isin([2.5, 4.0]), source) == [False, False, None, True]
    assert values(col("i").isin([]), source) == [False, False, False, False]
    assert values(col("i") == None, source) == [None] * 4  # noqa: E711
    assert values(lit(1) == 1, source) == [True] * 4
    assert values(lit(None).is_null(), source) == [True] * 4


def test_temporal_comparisons(source: TableSource) -> None:
    assert values(col("d") >= "2024-01-01", source) == [True, True, None, False]
    assert values(col("d") == dt.date(2023, 1, 1), source) == [False, False, None, True]
    assert values(col("ts") > "2024-06-01 00:00:00", source) == [False, None, False, True]
    assert values(col("ts") < dt.datetime(2021, 1, 1), source) == [False, None, True, False]
    with pytest.raises(QueryError, match="'d'"):
        evaluate(col("d") > "not a date", source)


def test_contains(source: TableSource) -> None:
    assert values(col("s").contains("an"), source) == [False, True, None, False]
    assert values(col("tags").contains("c"), source) == [False, False, None, True]
    assert values(col("nums").contains(2), source) == [True, False, False, None]
    with pytest.raises(QueryError, match="cannot compare"):
        evaluate(col("nums").contains("x"), source)
    with pytest.raises(QueryError, match="CONTAINS needs text, a list or JSON"):
        evaluate(col("i").contains(1), source)


def test_scalar_functions(source: TableSource) -> None:
    assert values(func("lower", col("s")), source) == ["apple", "banana", None, "cherry pie"]
    assert values(func("upper", col("s")), source) == ["APPLE", "BANANA", None, "CHERRY PIE"]
    assert values(func("length", col("s")), source) == [5, 6, None, 10]
    assert values(func("length", col("tags")), source) == [2, 0, None, 1]
    assert values(func("abs", col("f")), source) == [0.5, None, 2.5, 1.0]
    assert values(func("coalesce", col("i"), 0), source) == [1, 2, 0, 4]
    assert values(func("coalesce", col("i"), col("f")), source) == [1.0, 2.0, 2.5, 4.0]
    assert values(func("coalesce", col("s"), "?") == "?", source) == [False, False, True, False]
    with pytest.raises(QueryError, match="incompatible types"):
        evaluate(func("coalesce", col("i"), "x"), source)
    with pytest.raises(QueryError, match="abs\\(\\) needs a number"):
        evaluate(func("abs", col("s")), source)


def test_top_level_values(source: TableSource) -> None:
    assert values(col("i"), source) == [1, 2, None, 4]
    assert values(col("m"), source)[0] == '{"k": 1, "flag": true}'  # JSON columns: their text
    assert values(lit(3), source) == [3, 3, 3, 3]
    assert values(col("m")["flag"], source) == ["true", None, None, "false"]  # -> gives JSON text
    assert values(col("m")["flag"] & True, source) == [True, None, None, False]  # a condition: JSON booleans


def test_type_mismatch_messages(source: TableSource) -> None:
    with pytest.raises(QueryError) as err:
        evaluate(col("i") == "abc", source)
    message = str(err.value)
    assert "'i'" in message and "int64" in message and "string literal" in message
    with pytest.raises(QueryError, match=r"LIKE needs text, but column 'i' \(int64\)"):
        evaluate(col("i").like("1%"), source)
    with pytest.raises(QueryError, match="cannot compare column 'b' \\(bool\\) with 1 \\(number literal\\)"):
        evaluate(col("b") == 1, source)
    with pytest.raises(QueryError, match="cannot compare column 's'"):
        evaluate(col("s").isin(["a", 1]), source)
    with pytest.raises(QueryError, match="cannot compare column 'emb'"):
        evaluate(col("emb") == 1, source)
    with pytest.raises(QueryError, match="not a boolean condition"):
        evaluate(col("i") & col("b"), source)
    with pytest.raises(QueryError, match="pattern of LIKE must be a string"):
        evaluate(col("s").like(1), source)


def test_unknown_column_propagates(source: TableSource) -> None:
    with pytest.raises(ColumnNotFoundError, match="unknown column 'nope'; available: i, f, s, b") as err:
        evaluate(col("nope") == 1, source)
    assert isinstance(err.value, KeyError)
    with pytest.raises(ColumnNotFoundError):
        TableSource(pa.table({"a": [1]}), json_columns=["zzz"])


def test_vector_functions_and_aggregates_are_not_filters(source: TableSource) -> None:
    with pytest.raises(QueryError, match=r"cosine_similarity\(\.\.\.\) can only appear in SELECT or ORDER BY"):
        evaluate(cosine_similarity("emb", [0.1, 0.2]) > 0.5, source)
    with pytest.raises(QueryError, match="count"):
        evaluate(agg("count") > 1, source)


def test_params_during_evaluation(source: TableSource) -> None:
    e = (col("i") >= param("lo")) & col("s").isin(param("names"))
    assert values(e, source, {"lo": 2, "names": ["Banana", "x"]}) == [False, True, None, False]
    assert values(col("i") == param(0), source, [4]) == [False, False, None, True]
    with pytest.raises(ParameterError, match="missing query parameter ':lo'; given: names"):
        evaluate(e, source, {"names": []})
    with pytest.raises(ParameterError, match=":lo"):
        evaluate(e, source)
    with pytest.raises(ParameterError, match="dict"):
        evaluate(col("i") == param(0), source, {"x": 1})
    with pytest.raises(ParameterError, match="list"):
        evaluate(col("i") == param("x"), source, [1])


def test_bind_params() -> None:
    e = (col("a") == param("x")) & col("b").isin(param("ids")) & col("c").isin([param("one"), param("more")])
    bound = bind_params(e, {"x": np.int32(3), "ids": (1, 2), "one": 0, "more": [7, 8]})
    assert bound.equals((col("a") == 3) & col("b").isin([1, 2]) & col("c").isin([0, 7, 8]))
    assert e.params() == {"x", "ids", "one", "more"}  # the original is untouched
    vec = bind_params(cosine_similarity("emb", param("q")), {"q": torch.ones(3, dtype=torch.float64)})
    assert isinstance(vec, Function) and isinstance(vec.args[1], Literal)
    assert vec.args[1].value.dtype == np.float32
    with pytest.raises(ParameterError, match="single value"):
        bind_params(col("a") == param("x"), {"x": [1, 2]})
    with pytest.raises(ParameterError, match="needs a list"):
        bind_params(col("a").isin(param("ids")), {"ids": 5})
    with pytest.raises(ParameterError, match="vector"):
        bind_params(cosine_similarity("emb", param("q")), {"q": "text"})
    with pytest.raises(ParameterError, match="NaN"):
        bind_params(cosine_similarity("emb", param("q")), {"q": [1.0, float("nan")]})


def test_chunked_and_dictionary_columns() -> None:
    table = pa.table(
        {
            "s": pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(), pa.array(["a", None]).dictionary_encode()]),
            "i": pa.chunked_array([[1, 2], [3, None]]),
        }
    )
    src = TableSource(table)
    assert evaluate(col("s") == "a", src).to_pylist() == [True, False, True, None]
    assert evaluate(col("s").isin(["b"]) | (col("i") > 2), src).to_pylist() == [False, True, True, None]
    assert mask_from(pa.chunked_array([[True, None], [False]])).tolist() == [True, False, False]
    assert mask_from(pa.nulls(2)).tolist() == [False, False]
    with pytest.raises(QueryError, match="boolean"):
        mask_from(pa.array([1, 2]))


def test_table_source_protocol_and_cache(source: TableSource) -> None:
    assert isinstance(source, ColumnSource)
    assert source.num_rows == 4
    assert source.json_values("m", ("k",)) is source.json_values("m", ("k",))
    with pytest.raises(QueryError, match="not a JSON column"):
        source.json_values("s", ("k",))
    empty = TableSource(pa.table({"i": pa.array([], pa.int64())}))
    assert evaluate(col("i") > 1, empty).to_pylist() == []
    assert isinstance(Column("x"), Column)


@pytest.mark.parametrize(
    "name",
    ["date", "limit", "order", "all", "true", "select", "my col", 'say "hi"', "Émile", "1abc", "a.b", "x-y", "group"],
)
def test_identifiers_round_trip(name: str) -> None:
    e = (col(name) == 1) & col(name)["k"].astext.like("x%")
    assert parse_where(to_sql(e)).equals(e), to_sql(e)


@settings(max_examples=100, deadline=None)
@given(name=st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s))
def test_any_identifier_round_trips(name: str) -> None:
    e = col(name) >= "v"
    assert parse_where(to_sql(e)).equals(e), to_sql(e)
