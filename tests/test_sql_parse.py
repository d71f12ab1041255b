"""SQL front end: parse_sql / parse_where -> plans and expressions, errors, binding."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import torch

from multimodal_store.errors import ParameterError, QueryError, QuerySyntaxError
from multimodal_store.expr import (
    Aggregate,
    And,
    Column,
    Compare,
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
    TableSource,
    agg,
    col,
    evaluate,
    func,
    lit,
    mask_from,
    param,
)
from multimodal_store.plan import OrderKey, QueryPlan, SelectItem, VectorSearch, bind
from multimodal_store.sql import parse_expr, parse_sql, parse_where

SEED_1 = """SELECT text, image, video_frame, content_type, metadata
FROM multimodal_knowledge
ORDER BY cosine_similarity(clip_embedding, :q)
LIMIT :k"""

SEED_2 = """SELECT text, image, metadata
FROM multimodal_knowledge
WHERE content_type = 'image'
ORDER BY cosine_similarity(clip_embedding, :q)
LIMIT :k"""

SEED_3 = """SELECT image, text, video_frame
FROM multimodal_knowledge
WHERE metadata->>'department' = 'engineering'
AND content_type IN ('image', 'video')
ORDER BY cosine_similarity(clip_embedding, :q)
LIMIT 10"""


def items(*names: str) -> list[SelectItem]:
    return [SelectItem(Column(n), n) for n in names]


COSINE_Q = VectorSearch("clip_embedding", Param("q"), "cosine", True)

# ---------------------------------------------------------------------------------------------
# the seed queries
# ---------------------------------------------------------------------------------------------


def test_seed_1() -> None:
    plan = parse_sql(SEED_1)
    assert plan == QueryPlan(
        source="multimodal_knowledge",
        select=items("text", "image", "video_frame", "content_type", "metadata"),
        where=None,
        vector=COSINE_Q,
        order_by=[],
        group_by=[],
        limit=Param("k"),
        offset=None,
    )
    assert plan.params() == {"q", "k"}
    assert plan.vector is not None and plan.vector.descending and plan.vector.metric == "cosine"


def test_seed_2() -> None:
    plan = parse_sql(SEED_2)
    assert plan.select == items("text", "image", "metadata")
    assert plan.where is not None and plan.where.equals(Compare("=", Column("content_type"), Literal("image")))
    assert plan.vector == COSINE_Q
    assert plan.limit is not None and plan.limit.equals(Param("k"))


def test_seed_3() -> None:
    plan = parse_sql(SEED_3)
    expected_where = And(
        (
            Compare("=", JsonPath(Column("metadata"), ("department",), True), Literal("engineering")),
            In(Column("content_type"), (Literal("image"), Literal("video")), False),
        )
    )
    assert plan == QueryPlan(
        source="multimodal_knowledge",
        select=items("image", "text", "video_frame"),
        where=expected_where,
        vector=COSINE_Q,
        limit=Literal(10),
    )
    # the Python builder produces the same tree
    built = (col("metadata")["department"].astext == "engineering") & col("content_type").isin(["image", "video"])
    assert plan.where is not None and plan.where.equals(built)
    assert plan.params() == {"q"}
    assert plan.columns() == {"image", "text", "video_frame", "metadata", "content_type", "clip_embedding"}


def test_seed_3_filters_rows() -> None:
    plan = parse_sql(SEED_3)
    table = pa.table(
        {
            "content_type": ["image", "video", "text", "image", None],
            "metadata": ['{"department": "engineering"}', '{"department": "engineering"}',
                         '{"department": "engineering"}', '{"department": "sales"}', "{}"],
        }
    )
    assert plan.where is not None
    mask = mask_from(evaluate(plan.where, TableSource(table, json_columns=["metadata"])))
    assert mask.tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("seed", [SEED_1, SEED_2, SEED_3])
def test_seeds_round_trip_through_to_sql(seed: str) -> None:
    plan = parse_sql(seed)
    assert parse_sql(plan.to_sql()) == plan


# ---------------------------------------------------------------------------------------------
# the language
# ---------------------------------------------------------------------------------------------


def where(sql: str) -> Any:
    plan = parse_sql(f"SELECT * FROM t WHERE {sql}")
    assert plan.where is not None
    return plan.where


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("a = 1", col("a") == 1),
        ("a != 1", col("a") != 1),
        ("a <> 1", col("a") != 1),
        ("a < -1", col("a") < -1),
        ("a <= 1.5", col("a") <= 1.5),
        ("a > -2.5e3", col("a") > -2500.0),
        ("a >= 1", col("a") >= 1),
        ("a IN (1, 2)", col("a").isin([1, 2])),
        ("a NOT IN ('x')", col("a").not_in(["x"])),
        ("a IN :ids", col("a").isin(param("ids"))),
        ("a = ANY(:ids)", col("a").isin(param("ids"))),
        ("a LIKE 'x%'", col("a").like("x%")),
        ("a NOT LIKE 'x%'", col("a").not_like("x%")),
        ("a ILIKE 'x_'", col("a").ilike("x_")),
        ("a NOT ILIKE 'x'", col("a").not_ilike("x")),
        ("a LIKE 'x!%%' ESCAPE '!'", col("a").like("x\\%%")),
        ("a BETWEEN 1 AND 3", col("a").between(1, 3)),
        ("a NOT BETWEEN 1 AND 3", col("a").not_between(1, 3)),
        ("a IS NULL", col("a").is_null()),
        ("a IS NOT NULL", col("a").is_not_null()),
        ("NOT a = 1", ~(col("a") == 1)),
        ("NOT (a = 1 OR b = 2)", ~((col("a") == 1) | (col("b") == 2))),
        ("a = 1 OR b = 2 AND c = 3", (col("a") == 1) | ((col("b") == 2) & (col("c") == 3))),
        ("(a = 1 OR b = 2) AND c = 3", ((col("a") == 1) | (col("b") == 2)) & (col("c") == 3)),
        ("flag", col("flag")),
        ("flag = TRUE AND other = FALSE AND x = NULL", (col("flag") == True) & (col("other") == False) & (col("x") == None)),  # noqa: E711, E712
        ("metadata->'a'->>'b' = 'x'", col("metadata")["a"]["b"].astext == "x"),
        ("metadata -> 'a' -> 0 = 1", col("metadata")["a"][0] == 1),
        ("metadata->'a'->-1 = 1", col("metadata")["a"][-1] == 1),
        ("metadata->>'a.b' = 'x'", col("metadata")["a.b"].astext == "x"),
        ("metadata['a']['b'] = 'x'", col("metadata")["a"]["b"] == "x"),
        ("metadata['tags'][0] = 'x'", col("metadata")["tags"][0] == "x"),
        ("CONTAINS(tags, 'cat')", col("tags").contains("cat")),
        ("contains(metadata->'tags', 'cat')", col("metadata")["tags"].contains("cat")),
        ("lower(name) = 'x'", func("lower", col("name")) == "x"),
        ("length(name) > 2 AND abs(x) < 1", (func("length", col("name")) > 2) & (func("abs", col("x")) < 1)),
        ("coalesce(a, b, 0) = 0", func("coalesce", col("a"), col("b"), 0) == 0),
        ("d >= DATE '2024-01-02'", col("d") >= dt.date(2024, 1, 2)),
        ("ts < TIMESTAMP '2024-01-02 03:04:05'", col("ts") < dt.datetime(2024, 1, 2, 3, 4, 5)),
        ("x = CAST('1.5' AS DOUBLE)", col("x") == 1.5),
        ("x = '7'::int", col("x") == 7),
        ("\"weird col\" = 'it''s'", col("weird col") == "it's"),
        ("t.a = 1", col("a") == 1),
        ("a IS TRUE", col("a").is_not_null() & (col("a") == True)),  # noqa: E712
        ("a IS NOT FALSE", ~(col("a").is_not_null() & (col("a") == False))),  # noqa: E712
    ],
)
def test_where_constructs(sql: str, expected: Any) -> None:
    got = where(sql)
    assert got.equals(expected), (sql, repr(got))
    assert parse_where(sql).equals(expected)


def test_parse_where_accepts_leading_where_and_keyword_case() -> None:
    assert parse_where("  where content_type = 'image'").equals(col("content_type") == "image")
    assert parse_where("a in (1) and not b like 'x'").equals(col("a").isin([1]) & col("b").not_like("x"))


def test_positional_parameters_are_numbered_in_order() -> None:
    e = parse_where("a = ? AND b IN (?, ?) AND c = ?")
    assert e.params() == {0, 1, 2, 3}
    assert e.equals((col("a") == param(0)) & col("b").isin([param(1), param(2)]) & (col("c") == param(3)))
    assert parse_where("a = $2 AND b = $1").equals((col("a") == param(1)) & (col("b") == param(0)))


def test_select_list_names_and_aliases() -> None:
    plan = parse_sql(
        "SELECT id, metadata->>'dept', lower(title) AS t, cosine_similarity(emb, :q) AS score "
        "FROM docs ORDER BY score LIMIT 5"
    )
    assert plan.select is not None
    assert [i.name for i in plan.select] == ["id", "metadata->>'dept'", "t", "score"]
    assert plan.select[3].expr.equals(Function("cosine_similarity", (col("emb"), param("q"))))
    assert plan.vector == VectorSearch("emb", Param("q"), "cosine", True, alias="score")
    assert plan.order_by == []
    unaliased = parse_sql("SELECT cosine_similarity(emb, :q) FROM d ORDER BY cosine_similarity(emb, :q)")
    assert unaliased.vector is not None and unaliased.vector.alias == "cosine_similarity(emb, :q)"


def test_select_star_forms() -> None:
    assert parse_sql("SELECT * FROM t").select is None
    plan = parse_sql("SELECT *, l2_distance(emb, :q) AS d FROM t ORDER BY d")
    assert plan.select is not None and isinstance(plan.select[0].expr, Star)
    assert plan.select_star
    assert plan.vector == VectorSearch("emb", Param("q"), "l2", False, alias="d")


@pytest.mark.parametrize(
    ("order", "metric", "descending"),
    [
        ("cosine_similarity(e, :q)", "cosine", True),
        ("cosine_similarity(e, :q) ASC", "cosine", False),
        ("cosine_similarity(e, :q) DESC", "cosine", True),
        ("inner_product(e, :q)", "ip", True),
        ("inner_product(e, :q) asc", "ip", False),
        ("l2_distance(e, :q)", "l2", False),
        ("l2_distance(e, :q) DESC", "l2", True),
        ("COSINE_SIMILARITY(:q, e)", "cosine", True),
    ],
)
def test_vector_order_direction(order: str, metric: str, descending: bool) -> None:
    plan = parse_sql(f"SELECT * FROM t ORDER BY {order}")
    assert plan.vector == VectorSearch("e", Param("q"), metric, descending)  # type: ignore[arg-type]


def test_vector_literals_and_tie_breakers() -> None:
    plan = parse_sql("SELECT * FROM t ORDER BY cosine_similarity(e, ARRAY[1, 2.5, -3]), year DESC, id LIMIT 3 OFFSET :o")
    assert plan.vector is not None
    assert isinstance(plan.vector.query, Literal)
    np.testing.assert_array_equal(plan.vector.query.value, np.array([1, 2.5, -3], np.float32))
    assert plan.vector.query.value.dtype == np.float32
    assert plan.order_by == [OrderKey(col("year"), True), OrderKey(col("id"), False)]
    assert plan.limit is not None and plan.limit.equals(lit(3))
    assert plan.offset is not None and plan.offset.equals(param("o"))
    brackets = parse_sql("SELECT * FROM t ORDER BY l2_distance(e, [0.5, 1])")
    assert brackets.vector is not None and isinstance(brackets.vector.query, Literal)
    np.testing.assert_array_equal(brackets.vector.query.value, np.array([0.5, 1], np.float32))


def test_sources() -> None:
    assert parse_sql('SELECT * FROM "s3://bucket/path/ds"').source == "s3://bucket/path/ds"
    assert parse_sql('SELECT * FROM "./local/data set"').source == "./local/data set"
    assert parse_sql("SELECT * FROM 'file:///tmp/x'").source == "file:///tmp/x"
    assert parse_sql("SELECT * FROM AnyName AS a").source == "AnyName"
    assert parse_sql("SELECT * FROM org.ds").source == "org.ds"
    assert parse_sql("SELECT * WHERE a = 1").source is None


def test_plain_order_by_alias_and_position() -> None:
    plan = parse_sql("SELECT title, lower(name) AS ln FROM t ORDER BY ln DESC, 1")
    assert plan.order_by == [OrderKey(func("lower", col("name")), True), OrderKey(col("title"), False)]


def test_group_by_and_aggregates() -> None:
    plan = parse_sql(
        "SELECT content_type, COUNT(*) AS n, sum(size), AVG(DISTINCT score), min(x), max(x) "
        "FROM t WHERE x > 0 GROUP BY content_type ORDER BY n DESC LIMIT 5"
    )
    assert plan.group_by[0].equals(col("content_type"))
    assert plan.select is not None
    exprs = [i.expr for i in plan.select]
    assert exprs[1].equals(Aggregate("count", None))
    assert exprs[2].equals(agg("sum", col("size")))
    assert exprs[3].equals(agg("avg", col("score"), distinct=True))
    assert [i.name for i in plan.select] == ["content_type", "n", "sum(size)", "avg(DISTINCT score)", "min(x)", "max(x)"]
    assert plan.order_by == [OrderKey(Aggregate("count", None), True)]
    assert plan.is_aggregate
    assert parse_sql("SELECT count(*) FROM t").is_aggregate
    assert not parse_sql(SEED_1).is_aggregate
    assert parse_sql("SELECT a AS g, count(x) FROM t GROUP BY g").group_by[0].equals(col("a"))
    assert parse_sql("SELECT a, count(x) FROM t GROUP BY 1").group_by[0].equals(col("a"))


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "line", "column", "token"),
    [
        ("SELECT * FROM t WHER x = 1", 1, 17, "WHER"),
        ("SELECT * FROM t WHERE x = ", 1, 25, "="),
        ("SELECT * FROM t ORDER BY cosine_similarity(emb :q)", 1, 48, ":"),
        ("SELECT *\nFROM t\nWHERE x = 1 AND AND y = 2", 3, 17, "AND"),
        ("SELECT *\nFROM t\n  WHERE x = 'unterminated", 3, 13, "'unterminated"),
        ("SELECT * FROM t WHERE x = 1 ORDR BY y", 1, 29, "ORDR"),
        ("SELEC * FROM t", 1, 1, "SELEC"),
        ("SELECT * FROM t WHERE (x = 1", 1, 28, "1"),
    ],
)
def test_syntax_errors_locate_the_token(sql: str, line: int, column: int, token: str) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse_sql(sql)
    e = err.value
    assert (e.line, e.column, e.token) == (line, column, token)
    assert f"line {line}, column {column}" in str(e)
    assert repr(token) in str(e)
    assert isinstance(e, QueryError) and isinstance(e, ValueError)


def test_syntax_error_hints() -> None:
    with pytest.raises(QuerySyntaxError, match="did you mean WHERE"):
        parse_sql("SELECT * FROM t WHER x = 1")
    with pytest.raises(QuerySyntaxError, match="ends too early"):
        parse_sql("SELECT * FROM t WHERE x = ")
    with pytest.raises(QuerySyntaxError, match="empty"):
        parse_sql("   ")
    with pytest.raises(QuerySyntaxError, match="line 1, column 7"):
        parse_where("a = 1 garbage")
    with pytest.raises(QuerySyntaxError, match="empty"):
        parse_where("WHERE ")


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("SELECT * FROM t JOIN u ON t.a = u.a", "JOIN"),
        ("SELECT * FROM t, u", "JOIN"),
        ("SELECT * FROM (SELECT * FROM t)", "subqueries"),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u)", "subqueries"),
        ("SELECT * FROM t WHERE EXISTS (SELECT 1)", "subqueries"),
        ("SELECT * FROM t UNION SELECT * FROM u", "UNION"),
        ("WITH x AS (SELECT 1) SELECT * FROM x", "WITH"),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t WHERE a = 1", "DELETE"),
        ("DROP TABLE t", "DROP"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        ("SELECT a FROM t GROUP BY a HAVING count(*) > 1", "HAVING"),
        ("SELECT DISTINCT a FROM t", "DISTINCT"),
        ("SELECT a, row_number() OVER (ORDER BY a) FROM t", "window"),
        ("SELECT * FROM t WHERE CASE WHEN a THEN 1 END = 1", "CASE"),
        ("SELECT a + 1 FROM t", "arithmetic (+)"),
        ("SELECT * FROM t WHERE a || 'x' = 'y'", "arithmetic (||)"),
        ("SELECT * FROM t WHERE sqrt(a) = 1", "sqrt"),
        ("SELECT * FROM t WHERE my_udf(a) = 1", "unknown function my_udf"),
        ("SELECT * FROM t WHERE a IS DISTINCT FROM 1", "DISTINCT FROM"),
        ("SELECT * FROM t; SELECT * FROM u", "one statement"),
        ("SELECT * FROM t WHERE a SIMILAR TO 'x'", "SIMILAR"),
        ("SELECT * FROM t TABLESAMPLE SYSTEM (10)", "TABLESAMPLE"),
        ("SELECT * FROM t WHERE -a = 1", "unary minus"),
        ("SELECT * FROM t WHERE CAST(a AS INT) = 1", "CAST"),
        ("SELECT * FROM t FOR UPDATE", "FOR UPDATE"),
    ],
)
def test_unsupported_constructs_are_named(sql: str, named: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_sql(sql)
    assert named.lower() in str(err.value).lower()
    assert not isinstance(err.value, QuerySyntaxError)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM t WHERE cosine_similarity(e, :q) > 0.5", r"cosine_similarity\(\.\.\.\) can only appear in SELECT or ORDER BY"),
        ("SELECT * FROM t WHERE count(*) > 1", "not allowed in WHERE"),
        ("SELECT a, count(*) FROM t", "'a' must appear in GROUP BY"),
        ("SELECT a, b FROM t GROUP BY a", "'b' must appear in GROUP BY"),
        ("SELECT * FROM t GROUP BY a", "SELECT \\* cannot be combined"),
        ("SELECT count(*) FROM t ORDER BY cosine_similarity(e, :q)", "cannot be combined with GROUP BY"),
        ("SELECT * FROM t ORDER BY cosine_similarity(a, b)", "query vector"),
        ("SELECT * FROM t ORDER BY cosine_similarity(:q, :r)", "vector column"),
        ("SELECT * FROM t ORDER BY cosine_similarity(e, 'text')", "query vector"),
        ("SELECT * FROM t ORDER BY cosine_similarity(e)", "2 arguments"),
        ("SELECT * FROM t ORDER BY a, cosine_similarity(e, :q)", "first ORDER BY key"),
        ("SELECT * FROM t ORDER BY cosine_similarity(e, :q), l2_distance(e, :q)", "only one vector"),
        ("SELECT * FROM t ORDER BY abs(cosine_similarity(e, :q))", "whole ORDER BY key"),
        ("SELECT * FROM t LIMIT -1", "LIMIT must be a non-negative integer"),
        ("SELECT * FROM t LIMIT 'x'", "LIMIT must be a non-negative integer"),
        ("SELECT * FROM t OFFSET 1.5", "OFFSET must be a non-negative integer"),
        ("SELECT a, b AS a FROM t", "duplicate output column name 'a'"),
        ("SELECT * FROM t WHERE a = ARRAY['x']", "must hold numbers"),
        ("SELECT * FROM t WHERE metadata->>'a'->>'b' = 1", "is text"),
        ("SELECT * FROM t WHERE lower(a)->'x' = 1", "read into a JSON column"),
        ("SELECT * FROM t WHERE a->>b = 1", "JSON key must be"),
        ("SELECT FROM t", "SELECT list is empty"),
        ("SELECT * FROM t WHERE a LIKE 'x!' ESCAPE '!'", "ends with the escape character"),
    ],
)
def test_query_errors(sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_sql(sql)


def test_parameter_style_errors() -> None:
    with pytest.raises(ParameterError, match="mixes parameter styles"):
        parse_sql("SELECT * FROM t WHERE a = :x AND b = ?")
    with pytest.raises(ParameterError, match="mixes parameter styles"):
        parse_where("a = ? AND b = $1")


def test_parse_expr() -> None:
    assert parse_expr("cosine_similarity(emb, :q)").equals(Function("cosine_similarity", (col("emb"), param("q"))))
    assert parse_expr("count(DISTINCT a)").equals(agg("count", col("a"), distinct=True))
    with pytest.raises(QueryError):
        parse_where("count(*) > 1")


# ---------------------------------------------------------------------------------------------
# binding
# ---------------------------------------------------------------------------------------------


def test_bind_seed_with_vectors() -> None:
    plan = parse_sql(SEED_2)
    for vector in (np.arange(4, dtype=np.float64), torch.arange(4, dtype=torch.float32), [0, 1, 2, 3], np.arange(4)[None]):
        bound = bind(plan, {"q": vector, "k": np.int64(5)})
        assert bound.vector is not None and isinstance(bound.vector.query, Literal)
        assert bound.vector.query.value.dtype == np.float32
        np.testing.assert_array_equal(bound.vector.query.value, np.arange(4, dtype=np.float32))
        assert bound.limit is not None and bound.limit.equals(lit(5))
        assert bound.params() == set()
    assert plan.params() == {"q", "k"}  # the plan is untouched


def test_bind_limits_and_missing() -> None:
    plan = parse_sql(SEED_1)
    for bad in (-1, 2.5, True, "3", None):
        with pytest.raises(ParameterError, match="LIMIT ':k' must be a non-negative integer"):
            bind(plan, {"q": [1.0], "k": bad})
    with pytest.raises(ParameterError, match="missing query parameter ':q'; given: k"):
        bind(plan, {"k": 3})
    with pytest.raises(ParameterError, match="missing query parameter ':k'; given: q, unused"):
        bind(plan, {"q": [1.0], "unused": 1})
    with pytest.raises(ParameterError, match="given as a list"):
        bind(plan, [[1.0], 3])
    with pytest.raises(ParameterError, match="must be a vector"):
        bind(plan, {"q": 3, "k": 3})
    assert bind(plan, {":q": [1.0], "k": 0, "extra": "ignored"}).limit.equals(lit(0))  # type: ignore[union-attr]


def test_bind_positional_and_lists() -> None:
    plan = parse_sql("SELECT * FROM t WHERE a IN ? AND b = ? ORDER BY inner_product(e, ?) LIMIT ?")
    assert plan.params() == {0, 1, 2, 3}
    bound = bind(plan, ([1, 2], "x", np.ones(2), 7))
    assert bound.where is not None and bound.where.equals(col("a").isin([1, 2]) & (col("b") == "x"))
    assert bound.limit is not None and bound.limit.equals(lit(7))
    with pytest.raises(ParameterError, match=r"missing query parameter '\$4' \(positional parameter 4\); given: 3"):
        bind(plan, ([1], "x", [1.0]))
    with pytest.raises(ParameterError, match="given as a dict"):
        bind(plan, {"a": 1})
    named = parse_sql("SELECT * FROM t WHERE a IN :ids OR a IN (:more)")
    out = bind(named, {"ids": np.array([1, 2]), "more": (3,)})
    assert out.where is not None and out.where.equals(col("a").isin([1, 2]) | col("a").isin([3]))
    with pytest.raises(ParameterError, match="must be a dict or a list"):
        bind(named, "ids")  # type: ignore[arg-type]


def test_plan_equality_and_repr() -> None:
    a, b = parse_sql(SEED_3), parse_sql(SEED_3)
    assert a == b and a != parse_sql(SEED_2)
    assert a != "not a plan"
    assert "LIMIT 10" in repr(a)
    assert {SelectItem(col("x"), "x"), SelectItem(col("x"), "x")} == {SelectItem(col("x"), "x")}
    assert OrderKey(col("x"), True) == OrderKey(col("x"), True)
    assert VectorSearch("e", Param("q"), "cosine", True).function().equals(Function("cosine_similarity", (col("e"), param("q"))))


def test_complex_plan_round_trip() -> None:
    sql = (
        'SELECT *, cosine_similarity(clip_embedding, :q) AS score FROM "s3://b/ds" '
        "WHERE (metadata->'year' BETWEEN 2000 AND 2010 OR tags IS NULL) AND NOT contains(title, 'x') "
        "AND metadata['a'][0] IN :ids ORDER BY score ASC, title DESC LIMIT :k OFFSET 20"
    )
    plan = parse_sql(sql)
    assert parse_sql(plan.to_sql()) == plan
    grouped = parse_sql("SELECT a, count(*) AS n FROM t GROUP BY a ORDER BY n DESC")
    assert parse_sql(grouped.to_sql()) == grouped


def test_misc_nodes() -> None:
    assert isinstance(where("NOT flag"), Not)
    assert isinstance(where("a = 1 OR b = 2"), Or)
    assert isinstance(where("a LIKE 'x'"), Like)
    assert isinstance(where("a IS NULL"), IsNull)
