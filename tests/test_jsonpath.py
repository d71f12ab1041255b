"""JSON path extraction and the JSON comparison rules (see ``multimodal_store.jsonpath``).

The property tests evaluate random predicates over random documents with ``evaluate`` and
compare with a direct Python implementation of the documented rules.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_store.errors import DataError, QueryError
from multimodal_store.expr import Expr, JsonPath, TableSource, col, evaluate, lit, mask_from, to_sql
from multimodal_store.jsonpath import (
    NUMERIC_TEXT_PATTERN,
    JsonValues,
    dumps_compact,
    json_values,
)
from multimodal_store.sql import parse_where

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# json_values
# ---------------------------------------------------------------------------------------------


def test_fields_per_kind() -> None:
    docs = pa.array(
        [
            '{"a": "x"}',
            '{"a": 5}',
            '{"a": 2.5}',
            '{"a": true}',
            '{"a": [1, "b"]}',
            '{"a": {"k": null}}',
            '{"a": null}',
            "{}",
            None,
            '{"a": "2020"}',
        ]
    )
    jv = json_values(docs, ("a",))
    assert jv.kind.tolist() == [1, 2, 2, 3, 4, 4, 0, 0, 0, 1]
    assert jv.kind.dtype == np.int8
    assert jv.text.to_pylist() == ["x", "5", "2.5", "true", '[1,"b"]', '{"k":null}', None, None, None, "2020"]
    assert jv.number.to_pylist() == [None, 5.0, 2.5, None, None, None, None, None, None, None]
    assert jv.boolean.to_pylist() == [None, None, None, True, None, None, None, None, None, None]
    assert jv.items == ["x", 5, 2.5, True, [1, "b"], {"k": None}, None, None, None, "2020"]
    assert jv.text_number.to_pylist() == [None, 5.0, 2.5, None, None, None, None, None, None, 2020.0]
    assert jv.json_text.to_pylist() == ['"x"', "5", "2.5", "true", '[1,"b"]', '{"k":null}', None, None, None, '"2020"']
    assert len(jv) == 10


def test_paths_keys_indices_and_mismatches() -> None:
    docs = [{"a": [10, {"b": "deep"}, 30]}, {"a": {"0": "key zero"}}, [1, 2], "scalar", None]
    assert json_values(docs, ("a", 0)).items == [10, None, None, None, None]
    assert json_values(docs, ("a", -1)).items == [30, None, None, None, None]
    assert json_values(docs, ("a", 1, "b")).items == ["deep", None, None, None, None]
    assert json_values(docs, ("a", "0")).items == [None, "key zero", None, None, None]
    assert json_values(docs, (1,)).items == [None, None, 2, None, None]
    assert json_values(docs, ("a", 3)).items == [None] * 5
    assert json_values(docs, ()).kind.tolist() == [4, 4, 4, 1, 0]


def test_numeric_text() -> None:
    strings = ["2020", " -3.5 ", "1e3", "+7", ".5", "5.", "nan", "inf", "0x10", "1_000", "", "12abc", "1e999"]
    jv = json_values([{"v": s} for s in strings], ("v",))
    expected = [2020.0, -3.5, 1000.0, 7.0, 0.5, 5.0, None, None, None, None, None, None, math.inf]
    assert jv.text_number.to_pylist() == expected
    assert all(re.match(NUMERIC_TEXT_PATTERN, s) for s, e in zip(strings, expected, strict=True) if e is not None)


def test_large_and_odd_numbers() -> None:
    jv = json_values(pa.array(['{"n": 123456789012345678901234567890}', '{"n": 1e300}', '{"n": -0.0}']), ("n",))
    assert jv.kind.tolist() == [2, 2, 2]
    assert jv.number.to_pylist()[0] == pytest.approx(1.2345678901234568e29)  # beyond 64 bits: a float
    assert jv.number.to_pylist()[1] == 1e300


def test_invalid_json_names_the_row() -> None:
    with pytest.raises(DataError, match="row 1"):
        json_values(pa.array(['{"a": 1}', "{not json"]), ("a",))


def test_binary_and_chunked_input() -> None:
    binary = pa.array([b'{"a": 1}', None], pa.binary())
    assert json_values(binary, ("a",)).items == [1, None]
    chunked = pa.chunked_array([pa.array(['{"a": 1}']), pa.array(['{"a": "x"}'])])
    assert json_values(chunked, ("a",)).kind.tolist() == [2, 1]


def test_take_and_concat() -> None:
    jv = json_values([{"a": i} for i in range(5)] + [{"a": "s"}], ("a",))
    _ = jv.text_number  # cached fields follow take()
    part = jv.take([5, 0, 2])
    assert part.items == ["s", 0, 2]
    assert part.kind.tolist() == [1, 2, 2]
    assert part.text_number.to_pylist() == [None, 0.0, 2.0]
    both = JsonValues.concat([part, jv.take([1])])
    assert both.items == ["s", 0, 2, 1]
    assert both.text.to_pylist() == ["s", "0", "2", "1"]
    assert len(JsonValues.concat([])) == 0


def test_dumps_compact() -> None:
    assert dumps_compact({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert dumps_compact({"big": 10**30}) == '{"big":1000000000000000000000000000000}'


# ---------------------------------------------------------------------------------------------
# reference implementation of the documented comparison rules
# ---------------------------------------------------------------------------------------------

MISSING = None
_NUM = re.compile(NUMERIC_TEXT_PATTERN)


def ref_get(doc: Any, path: tuple[str | int, ...]) -> Any:
    v = doc
    for step in path:
        if isinstance(step, str):
            if not isinstance(v, dict) or step not in v:
                return MISSING
            v = v[step]
        else:
            if not isinstance(v, list) or not -len(v) <= step < len(v):
                return MISSING
            v = v[step]
        if v is None:
            return MISSING
    return v


def ref_kind(v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, str):
        return 1
    if isinstance(v, bool):
        return 3
    if isinstance(v, (int, float)):
        return 2
    return 4


def ref_text(v: Any) -> str | None:
    k = ref_kind(v)
    if k == 0:
        return None
    if k == 1:
        return str(v)
    if k == 3:
        return "true" if v else "false"
    if k == 2:
        return str(v) if isinstance(v, int) else repr(float(v))
    return dumps_compact(v)


def ref_text_number(v: Any) -> float | None:
    k = ref_kind(v)
    if k == 2:
        return float(v)
    if k == 1 and _NUM.match(v):
        return float(v.strip(" \t\n\r\f"))
    return None


def ref_cmp(op: str, a: Any, b: Any) -> bool:
    return {
        "=": a == b,
        "!=": a != b,
        "<": a < b,
        "<=": a <= b,
        ">": a > b,
        ">=": a >= b,
    }[op]


def lit_kind(value: Any) -> int:
    return ref_kind(value)


def ref_compare(v: Any, as_text: bool, op: str, value: Any) -> bool | None:
    if value is None:
        return None
    k = ref_kind(v)
    if as_text:
        if isinstance(value, bool):
            return ref_cmp(op, v, value) if k == 3 else None
        if isinstance(value, (int, float)):
            n = ref_text_number(v)
            return None if n is None else ref_cmp(op, n, float(value))
        return None if k == 0 else ref_cmp(op, ref_text(v), value)
    if k == 0:
        return None
    if k == lit_kind(value):
        if k == 2:
            return ref_cmp(op, float(v), float(value))
        return ref_cmp(op, v, value)
    if op == "=":
        return False
    if op == "!=":
        return True
    return None


def kleene_or(values: list[bool | None]) -> bool | None:
    if any(v is True for v in values):
        return True
    if any(v is None for v in values):
        return None
    return False


def kleene_not(v: bool | None) -> bool | None:
    return None if v is None else not v


def like_regex(pattern: str, ci: bool) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ci else 0))


def ref_like(v: Any, as_text: bool, pattern: str, ci: bool) -> bool | None:
    k = ref_kind(v)
    if k == 0:
        return None
    if not as_text and k != 1:
        return False
    text = ref_text(v)
    assert text is not None
    return like_regex(pattern, ci).fullmatch(text) is not None


def json_equal(e: Any, value: Any) -> bool:
    if ref_kind(e) != ref_kind(value):
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(e) == float(value)
    return bool(e == value)


def ref_contains(v: Any, as_text: bool, value: Any) -> bool | None:
    k = ref_kind(v)
    if k == 0:
        return None
    if as_text:
        text = ref_text(v)
        assert text is not None
        return value in text
    if k == 1:
        return isinstance(value, str) and value in v
    if isinstance(v, list):
        return any(json_equal(e, value) for e in v)
    return False


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------

KEYS = ["a", "b", "c"]
STRINGS = st.one_of(
    st.text(alphabet="ab1.-e ", max_size=4),
    st.sampled_from(["12", " 3.5", "-1e2", "abc", "true", "1_0", "nan", ".5", "5.", "+7", "2020"]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    STRINGS,
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.sampled_from(KEYS), children, max_size=3)
    ),
    max_leaves=8,
)
DOCS = st.one_of(st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3), JSON)
PATHS = st.lists(st.one_of(st.sampled_from(KEYS), st.integers(-2, 2)), min_size=1, max_size=3).map(tuple)
LITERALS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    STRINGS,
)
OPS = ["=", "!=", "<", "<=", ">", ">="]


@st.composite
def json_tables(draw: st.DrawFn) -> tuple[pa.Table, list[Any]]:
    rows = draw(st.lists(st.one_of(st.just("SQL NULL"), DOCS), min_size=0, max_size=12))
    docs = [None if r == "SQL NULL" else r for r in rows]
    texts = [None if r == "SQL NULL" else json.dumps(r) for r in rows]
    return pa.table({"m": pa.array(texts, pa.string())}), docs


def _path_expr(path: tuple[str | int, ...], as_text: bool) -> JsonPath:
    e: JsonPath = col("m")[path[0]]
    for step in path[1:]:
        e = e[step]
    return e.astext if as_text else e


def _check(expr: Expr, table: pa.Table, expected: list[bool | None]) -> None:
    source = TableSource(table, json_columns=["m"])
    got = evaluate(expr, source).to_pylist()
    assert got == expected, to_sql(expr)
    # the same predicate through SQL text
    parsed = parse_where(to_sql(expr))
    assert parsed.equals(expr), (to_sql(expr), to_sql(parsed))
    assert evaluate(parsed, TableSource(table, json_columns=["m"])).to_pylist() == expected


@SETTINGS
@given(data=json_tables(), path=PATHS, as_text=st.booleans(), op=st.sampled_from(OPS), value=LITERALS)
def test_compare_matches_reference(
    data: tuple[pa.Table, list[Any]], path: tuple[str | int, ...], as_text: bool, op: str, value: Any
) -> None:
    table, docs = data
    left = _path_expr(path, as_text)
    expr = {"=": left == value, "!=": left != value, "<": left < value, "<=": left <= value, ">": left > value, ">=": left >= value}[op]
    expected = [ref_compare(ref_get(d, path), as_text, op, value) for d in docs]
    _check(expr, table, expected)
    # the literal on the left: same result with the operator flipped
    flipped = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
    from multimodal_store.expr import Compare

    _check(Compare(flipped, lit(value), left), table, expected)


@SETTINGS
@given(
    data=json_tables(),
    path=PATHS,
    as_text=st.booleans(),
    values=st.lists(LITERALS, min_size=1, max_size=4),
    negated=st.booleans(),
)
def test_in_matches_reference(
    data: tuple[pa.Table, list[Any]], path: tuple[str | int, ...], as_text: bool, values: list[Any], negated: bool
) -> None:
    table, docs = data
    left = _path_expr(path, as_text)
    expr = left.not_in(values) if negated else left.isin(values)
    expected = [kleene_or([ref_compare(ref_get(d, path), as_text, "=", v) for v in values]) for d in docs]
    if negated:
        expected = [kleene_not(v) for v in expected]
    _check(expr, table, expected)


@SETTINGS
@given(data=json_tables(), path=PATHS, as_text=st.booleans(), negated=st.booleans())
def test_is_null_matches_reference(
    data: tuple[pa.Table, list[Any]], path: tuple[str | int, ...], as_text: bool, negated: bool
) -> None:
    table, docs = data
    left = _path_expr(path, as_text)
    expr = left.is_not_null() if negated else left.is_null()
    expected = [(ref_get(d, path) is None) != negated for d in docs]
    _check(expr, table, expected)


@SETTINGS
@given(
    data=json_tables(),
    path=PATHS,
    as_text=st.booleans(),
    pattern=st.text(alphabet="ab1%_.", max_size=4),
    ci=st.booleans(),
)
def test_like_matches_reference(
    data: tuple[pa.Table, list[Any]], path: tuple[str | int, ...], as_text: bool, pattern: str, ci: bool
) -> None:
    table, docs = data
    left = _path_expr(path, as_text)
    expr = left.ilike(pattern) if ci else left.like(pattern)
    expected = [ref_like(ref_get(d, path), as_text, pattern, ci) for d in docs]
    _check(expr, table, expected)


@SETTINGS
@given(
    data=json_tables(),
    path=st.one_of(st.just(()), PATHS),
    as_text=st.booleans(),
    value=st.one_of(st.booleans(), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False), STRINGS),
)
def test_contains_matches_reference(
    data: tuple[pa.Table, list[Any]], path: tuple[str | int, ...], as_text: bool, value: Any
) -> None:
    table, docs = data
    if not path:  # the whole JSON column
        expr: Expr = col("m").contains(value)
        as_text = False
    else:
        if as_text and not isinstance(value, str):
            value = str(value)
        expr = _path_expr(path, as_text).contains(value)
    expected = [ref_contains(ref_get(d, path), as_text, value) for d in docs]
    _check(expr, table, expected)


# ---------------------------------------------------------------------------------------------
# examples of the documented rules
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def source() -> TableSource:
    docs = [
        {"year": 2020, "dept": "engineering", "tags": ["cat", "dog", 3], "ok": True},
        {"year": "2020", "dept": "sales", "tags": "category", "ok": False},
        {"year": 1999.5, "dept": None, "tags": [], "nested": {"a": {"b": "x"}}},
        {"ok": "true"},
        None,
    ]
    table = pa.table(
        {
            "metadata": pa.array([None if d is None else json.dumps(d) for d in docs], pa.string()),
            "dept": ["engineering", "x", None, "sales", "y"],
            "year_col": [2020, 2020, 1999, 1, 2],
        }
    )
    return TableSource(table, json_columns=["metadata"])


def rows(expr: Expr | str, source: TableSource) -> list[int]:
    e = parse_where(expr) if isinstance(expr, str) else expr
    return np.flatnonzero(mask_from(evaluate(e, source))).tolist()


def test_text_path_string_literal_matches_numbers(source: TableSource) -> None:
    assert rows("metadata->>'year' = '2020'", source) == [0, 1]
    assert rows("metadata->'year' = '2020'", source) == [1]
    assert rows("metadata['year'] = 2020", source) == [0]
    assert rows("metadata->>'year' = 2020", source) == [0, 1]
    assert rows("metadata->>'year' < 2000", source) == [2]


def test_value_path_kinds(source: TableSource) -> None:
    assert rows("metadata->'year' != 2020", source) == [1, 2]  # other kinds are unequal, missing is NULL
    assert rows("metadata->'year' > 0", source) == [0, 2]  # ordering only within numbers
    assert rows("metadata->'ok' = TRUE", source) == [0]
    assert rows("metadata->>'ok' = 'true'", source) == [0, 3]
    assert rows("metadata->>'ok' = TRUE", source) == [0]
    assert rows("metadata->'ok' = 1", source) == []  # booleans are not numbers


def test_null_and_missing(source: TableSource) -> None:
    assert rows("metadata->>'dept' IS NULL", source) == [2, 3, 4]
    assert rows("metadata->'nested'->'a'->>'b' = 'x'", source) == [2]
    assert rows("metadata['nested']['a']['b'] = 'x'", source) == [2]
    assert rows("metadata IS NULL", source) == [4]


def test_contains_arrays_and_strings(source: TableSource) -> None:
    assert rows("CONTAINS(metadata->'tags', 'cat')", source) == [0, 1]  # array element, substring
    assert rows("CONTAINS(metadata->'tags', 3)", source) == [0]
    assert rows("NOT CONTAINS(metadata->'tags', 'cat')", source) == [2]
    assert rows("CONTAINS(metadata, 'x')", source) == []  # objects contain nothing
    assert rows("CONTAINS(metadata->>'tags', '\"dog\"')", source) == [0]  # text: substring of the JSON text


def test_in_and_like_on_json(source: TableSource) -> None:
    assert rows("metadata->>'dept' IN ('engineering', 'sales')", source) == [0, 1]
    assert rows("metadata->>'dept' NOT IN ('engineering')", source) == [1]
    assert rows("metadata->>'dept' LIKE 'eng%'", source) == [0]
    assert rows("metadata->'year' LIKE '20%'", source) == [1]  # JSON value: strings only
    assert rows("metadata->>'year' LIKE '20%'", source) == [0, 1]


def test_json_against_plain_column(source: TableSource) -> None:
    assert rows("metadata->>'dept' = dept", source) == [0]
    assert rows("dept = metadata->>'dept'", source) == [0]
    assert rows("metadata->'year' = year_col", source) == [0]
    assert rows("metadata->>'year' = year_col", source) == [0, 1]


def test_json_functions(source: TableSource) -> None:
    assert evaluate(parse_where("length(metadata->'tags')"), source).to_pylist() == [3, 8, 0, None, None]
    assert evaluate(parse_where("upper(metadata->>'dept')"), source).to_pylist() == ["ENGINEERING", "SALES", None, None, None]
    assert evaluate(col("metadata")["year"], source).to_pylist() == ["2020", '"2020"', "1999.5", None, None]
    assert evaluate(col("metadata")["year"].astext, source).to_pylist() == ["2020", "2020", "1999.5", None, None]


def test_json_errors(source: TableSource) -> None:
    with pytest.raises(QueryError, match="not a JSON column"):
        evaluate(col("dept")["a"] == 1, source)
    with pytest.raises(QueryError, match="cannot compare"):
        evaluate(col("metadata")["a"] == b"x", source)
    with pytest.raises(QueryError, match="is text"):
        parse_where("metadata->>'a'->'b' = 1")
    with pytest.raises(TypeError):
        col("metadata")["a"].astext["b"]
