"""``json_values`` gives exactly what the original row-by-row algorithm gives, whatever the route.

``json_values`` reads key paths over large string columns with ``pyarrow.json`` and builds
columns in bulk where the values share a type. The tests compare every field (types
included: ``1`` is not ``1.0``) with :func:`reference_json_values`, a copy of the original
implementation, on hand-picked edge cases and on hypothesis-generated documents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multimodal_store import jsonpath as jp
from multimodal_store.errors import DataError
from multimodal_store.jsonpath import (
    KIND_BOOL,
    KIND_NUMBER,
    KIND_STRING,
    JsonValues,
    as_float,
    classify,
    dumps_compact,
    json_values,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# the original algorithm (parse every document, walk the path, classify row by row)
# ---------------------------------------------------------------------------------------------


def _ref_loads(text: str | bytes) -> Any:
    if jp._orjson is not None:
        try:
            return jp._orjson.loads(text)
        except jp._orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _ref_parse(docs: Any) -> list[Any]:
    if isinstance(docs, pa.ChunkedArray):
        docs = docs.combine_chunks() if docs.num_chunks != 1 else docs.chunk(0)
    if not isinstance(docs, pa.Array):
        return list(docs)
    if pa.types.is_dictionary(docs.type):
        docs = docs.dictionary_decode()
    out: list[Any] = []
    for i, text in enumerate(docs.to_pylist()):
        if text is None:
            out.append(None)
            continue
        try:
            out.append(_ref_loads(text))
        except (ValueError, TypeError) as err:
            raise DataError(f"row {i} of the JSON column is not valid JSON: {err}") from None
    return out


def _ref_step(value: Any, path: tuple[str | int, ...]) -> Any:
    for key in path:
        if isinstance(key, str):
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        else:
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
                return None
            if not -len(value) <= key < len(value):
                return None
            value = value[key]
        if value is None:
            return None
    return value


def reference_json_values(docs: Any, path: tuple[str | int, ...]) -> JsonValues:
    """The original ``json_values``."""
    parsed = _ref_parse(docs)
    values = list(parsed) if not path else [None if v is None else _ref_step(v, path) for v in parsed]
    n = len(values)
    kind = np.zeros(n, dtype=np.int8)
    texts: list[str | None] = [None] * n
    nums: list[float | None] = [None] * n
    bools: list[bool | None] = [None] * n
    items: list[Any] = [None] * n
    for i, raw in enumerate(values):
        if raw is None:
            continue
        k, v = classify(raw)
        kind[i] = k
        items[i] = v
        if k == KIND_STRING:
            texts[i] = v
        elif k == KIND_NUMBER:
            texts[i] = str(v) if isinstance(v, int) else repr(float(v))
            nums[i] = as_float(v)
        elif k == KIND_BOOL:
            texts[i] = "true" if v else "false"
            bools[i] = v
        else:
            texts[i] = dumps_compact(v)
    return JsonValues(
        kind=kind,
        text=pa.array(texts, pa.string()),
        number=pa.array(nums, pa.float64()),
        boolean=pa.array(bools, pa.bool_()),
        items=items,
    )


# ---------------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type all the way down (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same(got: JsonValues, want: JsonValues) -> None:
    assert got.kind.dtype == np.int8
    assert got.kind.tolist() == want.kind.tolist()
    assert got.text.type == pa.string() and got.number.type == pa.float64() and got.boolean.type == pa.bool_()
    assert got.text.to_pylist() == want.text.to_pylist()
    assert same_value(got.number.to_pylist(), want.number.to_pylist())
    assert got.boolean.to_pylist() == want.boolean.to_pylist()
    assert len(got.items) == len(want.items)
    for i, (g, w) in enumerate(zip(got.items, want.items, strict=True)):
        assert same_value(g, w), (i, g, w)
    assert same_value(got.text_number.to_pylist(), want.text_number.to_pylist())
    assert got.json_text.to_pylist() == want.json_text.to_pylist()


def check(docs: Any, path: tuple[str | int, ...]) -> None:
    """``json_values`` (every route) raises what the reference raises or gives what it gives.

    The fast route runs with the default sample and with a one-row sample, so that the
    rows after it reach ``pyarrow.json`` unseen by Python.
    """
    try:
        want = reference_json_values(docs, path)
    except Exception as err:  # the reference's error is part of the behaviour
        for variant in ROUTES:
            with pytest.raises(type(err)) as info, mock.patch.multiple(jp, **variant):
                json_values(docs, path)
            assert str(info.value) == str(err)
        return
    for variant in ROUTES:
        with mock.patch.multiple(jp, **variant):
            assert_same(json_values(docs, path), want)
            if isinstance(docs, pa.Array) and not pa.types.is_dictionary(docs.type):
                fast = jp._arrow_json_values(docs, path)
                if fast is not None:
                    assert_same(fast, want)


#: Settings of ``json_values`` to run: the defaults, the fast route on any size, and with a tiny sample.
ROUTES: list[dict[str, Any]] = [
    {"_ARROW_MIN_ROWS": jp._ARROW_MIN_ROWS},
    {"_ARROW_MIN_ROWS": 0},
    {"_ARROW_MIN_ROWS": 0, "_SAMPLE_ROWS": 1},
]


def column(texts: list[str | None], large: bool = True) -> pa.Array:
    return pa.array(texts, pa.large_string() if large else pa.string())


# ---------------------------------------------------------------------------------------------
# the fast route is taken, and agrees, on typical columns
# ---------------------------------------------------------------------------------------------


def _typical(n: int) -> list[str | None]:
    docs: list[str | None] = []
    for i in range(n):
        doc = {
            "department": "engineering" if i % 3 else "other",
            "year": 2020 + i % 5,
            "score": i / 7 if i % 11 else float(i),
            "tiny": i * 1e-9,
            "big": i * 1e12 + 0.5,
            "ok": i % 2 == 0,
            "tags": ["a", "b"],
            "nested": {"x": i % 4 or None, "deeper": {"s": f"v{i}"}},
            "note": "Information about NaN and Inf values",  # words, not values: no row redone
        }
        if i % 13 == 0:
            del doc["department"]
        docs.append(None if i % 17 == 0 else json.dumps(doc, separators=(",", ":"), ensure_ascii=i % 2 == 0))
    return docs


@pytest.mark.parametrize(
    "path",
    [("department",), ("year",), ("score",), ("tiny",), ("big",), ("ok",), ("nested", "x"),
     ("nested", "deeper", "s"), ("absent",), ("nested", "absent")],
)
def test_fast_route_on_typical_columns(path: tuple[str, ...]) -> None:
    docs = column(_typical(3000))
    redone: list[int] = []
    python_route = jp._python_json_values

    def spy(docs: pa.Array, path: tuple[str | int, ...], rows: np.ndarray | None = None) -> JsonValues:
        redone.append(len(docs))
        return python_route(docs, path, rows)

    with mock.patch.object(jp, "_python_json_values", spy):
        fast = jp._arrow_json_values(docs, path)
    assert fast is not None, "pyarrow.json route not taken"
    # only floats that could have been written as integers are redone in Python
    integral_scores = sum(1 for i in range(3000) if i % 17 and (i % 11 == 0 or i % 7 == 0))
    assert sum(redone) == (integral_scores if path == ("score",) else 0)
    want = reference_json_values(docs, path)
    assert_same(fast, want)
    assert_same(json_values(docs, path), want)
    assert_same(json_values(docs.slice(5, 2000), path), reference_json_values(docs.slice(5, 2000), path))
    assert_same(json_values(column(_typical(1500), large=False), path), reference_json_values(column(_typical(1500)), path))


@pytest.mark.parametrize("path", [("tags",), ("nested",), ("tags", 0), ()])
def test_containers_and_index_steps_go_row_by_row(path: tuple[str | int, ...]) -> None:
    docs = column(_typical(1200))
    assert jp._arrow_json_values(docs, path) is None
    assert_same(json_values(docs, path), reference_json_values(docs, path))


def test_chunked_and_dictionary_input() -> None:
    texts = _typical(1500)
    chunked = pa.chunked_array([column(texts[:700]), column(texts[700:])])
    assert_same(json_values(chunked, ("year",)), reference_json_values(chunked, ("year",)))
    encoded = column(texts).dictionary_encode()
    assert_same(json_values(encoded, ("department",)), reference_json_values(encoded, ("department",)))


# ---------------------------------------------------------------------------------------------
# edge cases: things pyarrow.json reads differently from Python's json
# ---------------------------------------------------------------------------------------------

EDGE_DOCS: dict[str, list[str | None]] = {
    "integers written as floats": ['{"a": 1.0}', '{"a": 2.5}', '{"a": 1e2}', '{"a": -0.0}', '{"a": 3}'],
    "integers then a float": ['{"a": 1}', '{"a": -0}', '{"a": 7}', '{"a": 2.25}'],
    "beyond 64 bits": ['{"a": 1}', '{"a": 123456789012345678901234567890}', '{"a": -9223372036854775809}'],
    "int64 limits": ['{"a": 9223372036854775807}', '{"a": -9223372036854775808}', '{"a": 9007199254740993}'],
    "huge exponents": ['{"a": 1.5}', '{"a": 1e400}', '{"a": -1e400}', '{"a": 1e-400}'],
    "float spellings": ['{"a": 0.1}', '{"a": 1E-7}', '{"a": 123456789012.5}', '{"a": 0.0001}', '{"a": 9.99e-5}'],
    "NaN and Infinity": ['{"a": 1.5}', '{"a": NaN}', '{"a": Infinity}', '{"a": -Infinity}'],
    "NaN elsewhere": ['{"a": "x", "b": NaN}', '{"a": "y", "b": [Infinity]}'],
    "Arrow-only tokens": ['{"a": 1.5}', '{"a": 2.5, "b": -NaN}'],
    "Arrow-only Inf": ['{"a": "x"}', '{"a": "y", "b": Inf}'],
    "Arrow-only -Inf": ['{"a": 1.5}', '{"a": -Inf}'],
    "word Inf in text": ['{"a": "Info NaN Inf"}', '{"a": "x"}'],
    "duplicate key": ['{"a": 0}', '{"a": 1, "a": 2}', '{"a": 3}'],
    "duplicate key of another type": ['{"a": "r"}', '{"a": "s", "a": 2}', '{"a": "t"}'],
    "duplicate key, null first": ['{"a": "r"}', '{"a": null, "a": "s"}', '{"a": "t", "a": null}'],
    "duplicate sibling": ['{"a": "x", "b": 1, "b": "y"}', '{"a": "z"}'],
    "duplicate parent": ['{"a": {"b": 0}}', '{"a": {"b": 1}, "a": {"c": 2}}', '{"a": {"b": 3}}'],
    "two objects on a line": ['{"a": 0}', '{"a": 1} {"a": 2}', '{"a": 3}'],
    "two objects and an empty one": ['{"a": 0}', '{"a": 1} {"a": 2}', "", '{"a": 3}'],
    "a document across two lines": ['{"a": "w"}', '{"a": "x", "b": [', '{}]}', '{"a": "y"} {"a": "z"}'],
    "a document across two lines, with a break": ['{"a": "w"}', '{"a": "x", "b": [\n', '{}]}', '{"a": "y"} {}'],
    "blank and whitespace documents": ['{"a": "x"}', "   ", '{"a": "y"}'],
    "surrounding whitespace": ['  {"a": "x"} ', '\t{"a": "y"}\n', '{"a": "z"}'],
    "pretty printed": [json.dumps({"a": "x", "b": [1, 2]}, indent=2), '{"a": "y"}', '{\r\n"a": "z"\r\n}'],
    "raw newline in a string": ['{"a": "w"}', '{"a": "x\ny"}', '{"a": "z"}'],
    "raw tab in a string": ['{"a": "w"}', '{"a": "x\ty"}', '{"a": "z"}'],
    "byte order mark": ['{"a": 0}', '\ufeff{"a": 1}', '{"a": 2}'],
    "top-level null": ['{"a": "w"}', "null", '{"a": "x"}'],
    "top-level scalars and arrays": ['"s"', "5", "[1, 2]", '{"a": "x"}', "true"],
    "invalid": ['{"a": "x"}', "{not json", '{"a": "y"}'],
    "trailing comma": ['{"a": "w"}', '{"a": "x",}', '{"a": "y"}'],
    "trailing garbage": ['{"a": "w"}', '{"a": "x"}}', '{"a": "y"}'],
    "single quotes": ['{"a": "w"}', "{'a': 'x'}"],
    "comments": ['{"a": "w"}', '{"a": "x" /* c */}'],
    "leading zeros and plus": ['{"a": 1}', '{"a": 01}', '{"a": +1}'],
    "bare fractions": ['{"a": 1.5}', '{"a": .5}', '{"a": 1.}'],
    "escapes": [r'{"a": "\"\\\/\b\f\n\r\t\u00e9\u0000"}', r'{"\u0061": "key escape"}', '{"a": "é😀"}'],
    "escaped surrogate pair": [r'{"a": "\ud83d\ude00"}', '{"a": "x"}'],
    "lone surrogates": ['{"a": "w"}', r'{"a": "\ud800"}', r'{"a": "\udc00x"}', '{"a": "y"}'],
    "odd keys": ['{"a.b": "dotted", "a": {"b": "nested"}}', '{"": "empty", "A": "upper"}', '{"a/b": 1}'],
    "null parents": ['{"a": {"b": "x"}}', '{"a": null}', "{}", '{"a": {}}', '{"a": {"b": null}}'],
    "scalar parent": ['{"a": {"b": "x"}}', '{"a": "s"}'],
    "mixed kinds": ['{"a": "x"}', '{"a": 1}', '{"a": true}', '{"a": null}', '{"a": [1]}', '{"a": {"b": 1}}'],
    "booleans": ['{"a": true}', '{"a": false}', '{"a": null}', "{}"],
    "only missing": ["{}", '{"b": 1}', None],
    "all null": [None, None],
    "deep other key": ['{"a": "x", "b": ' + "[" * 200 + "]" * 200 + "}", '{"a": "y"}'],
}


@pytest.mark.parametrize("name", list(EDGE_DOCS))
@pytest.mark.parametrize("path", [("a",), ("a", "b"), ("b",), ("",), ("a.b",)])
def test_edge_cases(name: str, path: tuple[str, ...]) -> None:
    texts = EDGE_DOCS[name]
    check(column(texts), path)
    check(column(texts * 3, large=False), path)
    check(list(_ref_parse(column(texts))) if _parses(texts) else [], path)


def _parses(texts: list[str | None]) -> bool:
    try:
        _ref_parse(column(texts))
    except Exception:
        return False
    return True


def test_invalid_json_reports_the_first_bad_row() -> None:
    texts = _typical(1500)
    texts[700] = '{"department": Inf}'
    texts[900] = "{oops"
    with pytest.raises(DataError, match="row 700 "):
        json_values(column(texts), ("department",))
    texts[700] = '{"department": "fine"}'
    with pytest.raises(DataError, match="row 900 "):
        json_values(column(texts), ("department",))


@pytest.mark.parametrize(
    "values",
    [["x", None, "y"], [1, None, -5, 2**63 - 1], [1, 2**64], [1.5, None, 2.0, -0.0, 1e-9, float("nan")],
     [True, None, False], [1, 2.5], [True, 1], [None, None], [], [np.int64(3), np.float32(1.5), np.bool_(True)],
     [(1, 2), {"k": [1.0]}, "s"]],
)
def test_parsed_values_in_bulk(values: list[Any]) -> None:
    assert_same(json_values(values, ()), reference_json_values(values, ()))


# ---------------------------------------------------------------------------------------------
# random documents
# ---------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "a.b", "", "é", "0"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["2020", " -3.5 ", "1e3", "nan", "Inf", "x\ny"]),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3))


VALUES = st.recursive(SCALARS, _containers, max_leaves=6)
#: A leaf type per column, so that many columns are homogeneous enough for the fast route.
LEAVES = st.sampled_from([
    st.text(max_size=6),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda f: round(f, 2)),
    st.booleans(),
    st.none(),
])
PATHS = st.lists(st.one_of(KEYS, st.integers(min_value=-2, max_value=2)), min_size=0, max_size=3).map(tuple)


@st.composite
def documents(draw: st.DrawFn) -> tuple[list[str | None], tuple[str | int, ...]]:
    """A column of JSON texts and a path, mostly objects whose path holds one leaf type."""
    path = draw(st.lists(KEYS, min_size=1, max_size=3).map(tuple)) if draw(st.booleans()) else draw(PATHS)
    leaf = draw(LEAVES)
    n = draw(st.integers(min_value=1, max_value=25))
    texts: list[str | None] = []
    for _ in range(n):
        shape = draw(st.integers(min_value=0, max_value=9))
        if shape == 0:
            texts.append(None)
            continue
        if shape == 1:
            doc: Any = draw(VALUES)
        else:
            doc = draw(st.dictionaries(KEYS, VALUES, max_size=3))
            if shape >= 4 and path and all(isinstance(step, str) for step in path):
                node = doc
                for key in path[:-1]:
                    child = node.get(key)
                    node[key] = child if isinstance(child, dict) else {}
                    node = node[key]
                node[path[-1]] = draw(leaf)
        texts.append(_serialise(draw, doc))
    return texts, path


def _serialise(draw: st.DrawFn, doc: Any) -> str:
    style = draw(st.integers(min_value=0, max_value=7))
    if style == 0:
        text = json.dumps(doc, indent=1)
    elif style == 1:
        text = json.dumps(doc, ensure_ascii=False)
    elif style == 2:
        text = " " + json.dumps(doc, separators=(",", ":")) + "\t"
    else:
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=style % 2 == 0)
    if draw(st.integers(min_value=0, max_value=30)) == 0:  # now and then, something only a parser's quirks read
        text = draw(st.sampled_from([text + " {}", text[:-1], text.replace("NaN", "-NaN"), text.replace("Infinity", "Inf"),
                                     text.replace(":", ":-0.0,\"a\":", 1)]))
    return text


@SETTINGS
@given(documents(), st.booleans())
def test_random_documents_match_the_reference(case: tuple[list[str | None], tuple[str | int, ...]], large: bool) -> None:
    texts, path = case
    check(column(texts, large), path)


@SETTINGS
@given(st.lists(VALUES, max_size=20), PATHS)
def test_random_parsed_values_match_the_reference(values: list[Any], path: tuple[str | int, ...]) -> None:
    check(values, path)
