"""JSON path extraction and the comparison rules of the query language.

A JSON column holds one JSON document per row (as text in storage). A path is a tuple of
steps: a ``str`` step reads an object key, an ``int`` step reads an array element
(0-based, negative counts from the end as in Python). A step that does not apply (a key on
an array, an index on an object, an index out of range, a missing key) gives *missing*.

:func:`json_values` extracts one path from every row into :class:`JsonValues`, a columnar
layout that the evaluator compares with vectorised ``pyarrow.compute`` kernels:

``kind``
    int8 per row: 0 = missing or JSON ``null``, 1 = string, 2 = number, 3 = boolean,
    4 = object or array.
``text``
    the ``->>`` text: strings unquoted, numbers as JSON text (``"5"``, ``"2.5"``), booleans
    ``"true"``/``"false"``, objects and arrays as compact JSON; null where kind is 0.
``number``
    the value where kind is 2, else null (float64: integers beyond 2**53 are rounded, and
    integers beyond 64 bits may also read as floats in ``text``).
``boolean``
    the value where kind is 3, else null.
``items``
    the Python value at the path (``None`` when missing), used by ``CONTAINS`` and
    ``length`` over arrays.
``text_number`` (derived)
    the number that the ``->>`` text spells: JSON numbers, and strings made of a decimal
    number (``"2020"``, ``" -3.5 "``, ``"1e3"``; ASCII blanks around it are allowed;
    ``"nan"``, ``"inf"``, ``"0x10"`` or ``"1_000"`` are not numbers); else null.

Comparison semantics (SQL three-valued logic: a NULL result never matches)
--------------------------------------------------------------------------
``col->>'k'`` (text, like Postgres):
    * a string literal compares with ``text``, so ``metadata->>'year' = '2020'`` matches the
      JSON number 2020 and the string ``"2020"``; ordering is by text (byte order);
    * a numeric literal compares numerically with ``text_number``, so
      ``metadata->>'year' > 2000`` matches 2020 and ``"2020"``; rows whose text is not a
      number give NULL;
    * a boolean literal compares with JSON booleans only (other kinds give NULL).
``col->'k'`` and ``col['k']`` (JSON value):
    * a string literal matches JSON strings only, a number JSON numbers only (booleans are
      not numbers), a boolean JSON booleans only;
    * ``=`` against a value of another kind is FALSE (and ``!=`` TRUE), like ``jsonb``
      equality; ``< <= > >=`` across kinds are NULL;
    * objects and arrays never equal a scalar literal.
    Two JSON values compare kind-aware (same kind required); a text path compared with a
    JSON value compares the two texts.
Missing keys and JSON ``null`` are NULL in every comparison; ``IS NULL`` is TRUE for them.
``IN (...)`` is the OR of equalities under the same rules, ``NOT IN`` its negation.
``LIKE``/``ILIKE`` apply to the ``->>`` text; on a JSON value (``->``) they match strings,
are FALSE for other kinds and NULL when missing.
``CONTAINS(json, v)`` is TRUE when the JSON value is an array holding an element equal to
``v`` (same kind) or a string holding ``v`` as a substring, FALSE for other values, NULL
when missing. On a ``->>`` text it is a substring test.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from .errors import DataError

_orjson: Any
try:  # a dependency, but the stdlib json still works without it (~2-4x slower per document)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = [
    "KIND_BOOL",
    "KIND_CONTAINER",
    "KIND_MISSING",
    "KIND_NUMBER",
    "KIND_STRING",
    "NUMERIC_TEXT_PATTERN",
    "as_float",
    "classify",
    "JsonValues",
    "dumps_compact",
    "extract",
    "json_values",
    "parse_documents",
]

KIND_MISSING = 0
KIND_STRING = 1
KIND_NUMBER = 2
KIND_BOOL = 3
KIND_CONTAINER = 4

#: The strings that ``->>`` comparisons with a number read as numbers (RE2 and ``re`` syntax).
NUMERIC_TEXT_PATTERN = r"^[ \t\n\r\f]*[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[ \t\n\r\f]*$"

PathStep = str | int


def _loads(text: str | bytes) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError:
            pass  # json accepts a few things orjson does not (NaN, huge integers)
    return json.loads(text)


def dumps_compact(value: Any) -> str:
    """Compact JSON text of ``value`` (no blanks, non-ASCII kept as is)."""
    if _orjson is not None:
        try:
            return str(_orjson.dumps(value).decode())
        except TypeError:
            pass  # integers beyond 64 bits, non-str keys
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def parse_documents(docs: pa.Array | pa.ChunkedArray | Sequence[Any]) -> list[Any]:
    """Parse a column of JSON text (nulls allowed) into Python values.

    A sequence that is not an Arrow array is taken as already-parsed values and returned
    as a list. Invalid JSON raises :class:`~multimodal_store.errors.DataError` naming the row.
    """
    docs = _text_array(docs)
    if not isinstance(docs, pa.Array):
        return list(docs)
    return _parse_extract(docs.to_pylist(), (), None)


def _text_array(docs: pa.Array | pa.ChunkedArray | Sequence[Any]) -> pa.Array | Sequence[Any]:
    """A JSON text column as one plain Arrow array (chunks combined, dictionary decoded);
    a sequence of parsed values is returned as it is."""
    if isinstance(docs, pa.ChunkedArray):
        docs = docs.combine_chunks() if docs.num_chunks != 1 else docs.chunk(0)
    if isinstance(docs, pa.Array) and pa.types.is_dictionary(docs.type):
        docs = docs.dictionary_decode()
    return docs


def _step(value: Any, path: tuple[PathStep, ...]) -> Any:
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


def extract(values: Sequence[Any], path: tuple[PathStep, ...]) -> list[Any]:
    """The value at ``path`` in each parsed document (``None`` where missing)."""
    if not path:
        return list(values)
    return [None if v is None else _step(v, path) for v in values]


def _number_text(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def as_float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def classify(value: Any) -> tuple[int, Any]:
    """``(kind, normalised value)`` of one Python value as a JSON value."""
    if value is None:
        return KIND_MISSING, None
    t = type(value)
    if t is str:
        return KIND_STRING, value
    if t is bool:
        return KIND_BOOL, value
    if t is int or t is float:
        return KIND_NUMBER, value
    if t is dict or t is list:
        return KIND_CONTAINER, value
    # slower path for values handed over already parsed (numpy scalars, tuples...)
    if isinstance(value, (bool, np.bool_)):
        return KIND_BOOL, bool(value)
    if isinstance(value, np.generic):
        return classify(value.item())
    if isinstance(value, numbers.Real):
        return KIND_NUMBER, value
    if isinstance(value, str):
        return KIND_STRING, str(value)
    if isinstance(value, np.ndarray):
        return KIND_CONTAINER, value.tolist()
    if isinstance(value, (Mapping, Sequence)) and not isinstance(value, (bytes, bytearray)):
        return KIND_CONTAINER, value
    return KIND_STRING, str(value)


@dataclass
class JsonValues:
    """One JSON path read from every row; see the module docstring for the fields."""

    kind: np.ndarray
    text: pa.StringArray
    number: pa.DoubleArray
    boolean: pa.BooleanArray
    items: list[Any]
    _text_number: pa.DoubleArray | None = field(default=None, repr=False, compare=False)
    _json_text: pa.StringArray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def text_number(self) -> pa.DoubleArray:
        """The number spelt by the ``->>`` text (JSON numbers and numeric strings), else null."""
        if self._text_number is None:
            self._text_number = _numeric_text(self.kind, self.text, self.number)
        return self._text_number

    @property
    def json_text(self) -> pa.StringArray:
        """The JSON text of each value (strings quoted), null where missing: what ``->`` returns."""
        if self._json_text is None:
            is_string = self.kind == KIND_STRING
            if not is_string.any():
                self._json_text = self.text
            else:
                texts = self.text.to_pylist()
                for i in np.flatnonzero(is_string):
                    texts[i] = json.dumps(texts[i], ensure_ascii=False)
                self._json_text = pa.array(texts, pa.string())
        return self._json_text

    def kind_mask(self, kind: int) -> np.ndarray:
        """Boolean numpy mask of the rows of the given kind."""
        return np.asarray(self.kind == kind)

    def take(self, indices: np.ndarray | Sequence[int]) -> JsonValues:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        taken = pa.array(idx, pa.int64())
        return JsonValues(
            kind=self.kind[idx],
            text=self.text.take(taken),
            number=self.number.take(taken),
            boolean=self.boolean.take(taken),
            items=[self.items[i] for i in idx.tolist()],
            _text_number=None if self._text_number is None else self._text_number.take(taken),
            _json_text=None if self._json_text is None else self._json_text.take(taken),
        )

    @classmethod
    def concat(cls, parts: Sequence[JsonValues]) -> JsonValues:
        """Rows of ``parts`` one after the other (e.g. one part per fragment)."""
        if not parts:
            return json_values([], ())
        return cls(
            kind=np.concatenate([p.kind for p in parts]).astype(np.int8, copy=False),
            text=pa.concat_arrays([p.text for p in parts]),
            number=pa.concat_arrays([p.number for p in parts]),
            boolean=pa.concat_arrays([p.boolean for p in parts]),
            items=[v for p in parts for v in p.items],
        )


def _numeric_text(kind: np.ndarray, text: pa.StringArray, number: pa.DoubleArray) -> pa.DoubleArray:
    is_string = kind == KIND_STRING
    if not is_string.any():
        return number
    strings = pc.if_else(pa.array(is_string, pa.bool_()), text, pa.scalar(None, pa.string()))
    looks_numeric = pc.match_substring_regex(strings, NUMERIC_TEXT_PATTERN)
    candidates = pc.if_else(looks_numeric, strings, pa.scalar(None, pa.string()))
    candidates = pc.utf8_trim(candidates, characters=" \t\n\r\f")
    try:
        parsed = pc.cast(candidates, pa.float64())
    except pa.ArrowInvalid:  # out-of-range exponents: fall back to Python's float()
        parsed = pa.array([None if s is None else float(s) for s in candidates.to_pylist()], pa.float64())
    return pc.coalesce(number, parsed)


def json_values(docs: pa.Array | pa.ChunkedArray | Sequence[Any], path: tuple[PathStep, ...] = ()) -> JsonValues:
    """Extract ``path`` from every document.

    ``docs`` is either an Arrow array of JSON text (string, large_string or binary; null
    rows are missing) or a sequence of already-parsed Python values. Invalid JSON raises
    :class:`~multimodal_store.errors.DataError` naming the row.

    A column of objects read by a path of keys goes through ``pyarrow.json`` first (parsed
    in C++, only the path's value is materialised); whatever that reader cannot give
    exactly is parsed row by row in Python, so the result never depends on the route.
    """
    path = tuple(path)
    docs = _text_array(docs)
    if not isinstance(docs, pa.Array):
        return _from_values(extract(list(docs), path))
    if len(docs) >= _ARROW_MIN_ROWS:
        fast = _arrow_json_values(docs, path)
        if fast is not None:
            return fast
    return _python_json_values(docs, path)


# -- row by row (Python) -------------------------------------------------------------------------


def _python_json_values(docs: pa.Array, path: tuple[PathStep, ...], rows: np.ndarray | None = None) -> JsonValues:
    """:func:`json_values` by parsing each document in Python; ``rows`` numbers them in errors."""
    return _from_values(_parse_extract(docs.to_pylist(), path, rows))


def _parse_extract(texts: list[Any], path: tuple[PathStep, ...], rows: np.ndarray | None) -> list[Any]:
    """The value at ``path`` of each JSON text (``None`` where missing or the text is null).

    Each document is dropped as soon as its value is read: keeping a million parsed
    documents alive makes the cyclic garbage collector rescan them over and over.
    """
    out: list[Any] = [None] * len(texts)
    for i, text in enumerate(texts):
        if text is None:
            continue
        try:
            doc = _loads(text)
        except (ValueError, TypeError) as err:
            row = i if rows is None else int(rows[i])
            raise DataError(f"row {row} of the JSON column is not valid JSON: {err}") from None
        if doc is not None:
            out[i] = _step(doc, path) if path else doc
    return out


def _from_values(values: list[Any]) -> JsonValues:
    """:class:`JsonValues` of Python values (``None`` = missing), in bulk when they share a type."""
    present = set(map(type, values))
    present.discard(type(None))
    arrow_type = {frozenset(): pa.null(), frozenset({str}): pa.string(), frozenset({bool}): pa.bool_(),
                  frozenset({int}): pa.int64(), frozenset({float}): pa.float64()}.get(frozenset(present))
    if arrow_type is not None:
        try:
            column = pa.array(values, arrow_type)
        except (OverflowError, pa.ArrowInvalid, pa.ArrowTypeError):  # integers beyond 64 bits
            pass
        else:
            return _from_arrow(column, values)
    return _classified(values)


def _classified(values: list[Any]) -> JsonValues:
    """:class:`JsonValues` of Python values of any mix of types, classified one by one."""
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
            texts[i] = _number_text(v)
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


def _from_arrow(column: pa.Array, items: list[Any]) -> JsonValues:
    """:class:`JsonValues` of one Arrow column of JSON scalars (null = missing).

    ``column`` is null, string, bool, int64 or float64, and ``items`` its Python values.
    """
    n = len(column)
    valid = _valid_mask(column)
    text: pa.Array
    number = pa.nulls(n, pa.float64())
    boolean = pa.nulls(n, pa.bool_())
    if pa.types.is_null(column.type):
        kind, text = KIND_MISSING, pa.nulls(n, pa.string())
    elif pa.types.is_string(column.type):
        kind, text = KIND_STRING, column
    elif pa.types.is_boolean(column.type):
        kind, boolean = KIND_BOOL, column
        text = pc.if_else(column, pa.scalar("true"), pa.scalar("false"))
    elif pa.types.is_int64(column.type):
        kind, text = KIND_NUMBER, pc.cast(column, pa.string())
        number = pc.cast(column, pa.float64(), safe=False)  # rounds to nearest, like float(int)
    elif pa.types.is_float64(column.type):
        kind, number, text = KIND_NUMBER, column, _float_texts(column)
    else:
        raise TypeError(f"expected a null, string, bool, int64 or float64 column, got {column.type}")
    return JsonValues(
        kind=np.where(valid, np.int8(kind), np.int8(KIND_MISSING)).astype(np.int8, copy=False),
        text=text,
        number=number,
        boolean=boolean,
        items=items,
    )


def _float_texts(column: pa.DoubleArray) -> pa.StringArray:
    """``repr`` of each float (null stays null), like :func:`_number_text`.

    Arrow's float formatting (shortest round-trip digits) spells non-integral floats from
    1e-4 to 1e10 the way ``repr`` does, and is ~5x cheaper; the other values (exponent
    forms, ``2.0``, ``nan``, ``inf``) are formatted by ``repr``.
    """
    by_repr = _valid_mask(column)
    text = pc.cast(column, pa.string())
    if _arrow_formats_floats_like_repr():
        values = column.to_numpy(zero_copy_only=False)  # nulls read as NaN
        magnitude = np.abs(values)
        with np.errstate(invalid="ignore"):
            like_repr = (magnitude >= 1e-4) & (magnitude < 1e10) & (np.floor(values) != values)
        by_repr &= ~like_repr
    rows = np.flatnonzero(by_repr)
    if len(rows) == 0:
        return text
    texts = [repr(v) for v in column.take(pa.array(rows, pa.int64())).to_pylist()]
    mask = np.zeros(len(column), dtype=bool)
    mask[rows] = True
    return pc.replace_with_mask(text, pa.array(mask, pa.bool_()), pa.array(texts, pa.string()))


#: Floats that Arrow's cast to string must spell as ``repr`` does for :func:`_float_texts` to use it.
_FLOAT_PROBES = (0.1, -2.5, 1 / 3, -2 / 3 * 1e9, 0.00012345678901234567, 9876543210.123456, 1e-4 + 1e-19, 123.456)
_arrow_float_format_ok: bool | None = None


def _arrow_formats_floats_like_repr() -> bool:
    """Whether this pyarrow spells the probe floats as ``repr`` does (checked once)."""
    global _arrow_float_format_ok
    if _arrow_float_format_ok is None:
        cast = pc.cast(pa.array(_FLOAT_PROBES, pa.float64()), pa.string()).to_pylist()
        _arrow_float_format_ok = cast == [repr(v) for v in _FLOAT_PROBES]
    return _arrow_float_format_ok


def _valid_mask(arr: pa.Array) -> np.ndarray:
    """Boolean numpy mask of the non-null rows of ``arr``."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(pc.is_valid(arr).to_numpy(zero_copy_only=False), dtype=bool)


# -- vectorised (pyarrow.json) -------------------------------------------------------------------

#: Columns shorter than this are parsed row by row (the reader's fixed cost is not worth it).
_ARROW_MIN_ROWS = 1024
#: The documents and values read in Python to guess the Arrow type of the path's values.
_SAMPLE_ROWS = 1000
_SAMPLE_VALUES = 32
#: What sends a document to the exact Python parser: line breaks would split it into several
#: JSON lines, and Arrow (RapidJSON with ``kParseNanAndInfFlag``) also reads the values ``Inf``,
#: ``-Inf`` and ``-NaN``, which Python's json rejects. The bytes are a quick test of a whole
#: column; only when one turns up does the pattern (values only) pick the rows.
_SUSPECT_BYTES = (b"\n", b"\r", b"NaN", b"Inf")
_SUSPECT_PATTERN = r"[\n\r]|[\[:,][ \t]*-?(?:NaN|Inf)"
_MIN_BLOCK = 1 << 24
_SCAN_CHUNK = 1 << 22
_MAX_BLOCK = (1 << 31) - 1


def _arrow_json_values(docs: pa.Array, path: tuple[PathStep, ...]) -> JsonValues | None:
    """:func:`json_values` through ``pyarrow.json``, or ``None`` where it cannot be used.

    Only key paths over string columns qualify. The reader is given a schema holding just
    the path (other keys are skipped unconverted) with a type guessed from a sample; it
    fails, and this returns ``None``, when a row holds a value of another type or the path
    is not an object on the way. Rows that are not a plain one-line object and floats that
    could have been written as integers (``2`` and ``2.0`` read the same) are redone in
    Python, since the JSON text of a number is part of the result.
    """
    if not path or any(type(step) is not str for step in path):
        return None
    if not (pa.types.is_string(docs.type) or pa.types.is_large_string(docs.type)):
        return None
    valid = _valid_mask(docs)
    exact = valid & ~_plain_object_rows(docs)
    if not valid.any() or exact.all():
        return None
    column = None
    for arrow_type in _guessed_types(docs, ~valid | exact, path):
        column = _read_path(docs, ~valid | exact, path, arrow_type)
        if column is not None:
            break
    if column is None:
        return None
    out = _from_arrow(column, column.to_pylist())
    if pa.types.is_float64(column.type):
        values = column.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            exact |= np.isfinite(values) & (np.floor(values) == values)
    rows = np.flatnonzero(exact)
    if len(rows):
        out = _replace_rows(out, rows, _python_json_values(docs.take(pa.array(rows, pa.int64())), path, rows))
    return out


def _plain_object_rows(docs: pa.Array) -> np.ndarray:
    """Mask of the rows that are one line from ``{`` to ``}`` without a suspect byte.

    Each such row is one JSON line that gives exactly one record or an error, so the
    reader's record count proves that no document was split or merged.
    """
    plain = pc.and_(pc.starts_with(docs, "{"), pc.ends_with(docs, "}"))
    if _holds_suspect_bytes(docs):
        plain = pc.and_(plain, pc.invert(pc.match_substring_regex(docs, _SUSPECT_PATTERN)))
    return np.asarray(plain.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _holds_suspect_bytes(docs: pa.Array) -> bool:
    """Whether the text of ``docs`` (null rows included) holds one of :data:`_SUSPECT_BYTES`.

    Searched a few MiB at a time with ``bytes`` methods, first byte first (memchr), which
    is far cheaper than a per-row regex over the whole column.
    """
    _, offsets_buf, data = docs.buffers()
    if data is None or len(docs) == 0:
        return False
    offsets_type = np.int64 if pa.types.is_large_string(docs.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=offsets_type)[docs.offset : docs.offset + len(docs) + 1]
    start, stop = int(offsets[0]), int(offsets[-1])
    overlap = max(len(token) for token in _SUSPECT_BYTES) - 1
    for begin in range(start, stop, _SCAN_CHUNK):
        chunk = data[begin : min(stop, begin + _SCAN_CHUNK + overlap)].to_pybytes()
        if any(token[:1] in chunk and token in chunk for token in _SUSPECT_BYTES):
            return True
    return False


def _guessed_types(docs: pa.Array, skip: np.ndarray, path: tuple[PathStep, ...]) -> list[pa.DataType]:
    """Arrow types to try for the values at ``path``, guessed from the first documents.

    Empty when the sample holds objects, arrays, mixed kinds or invalid JSON: those
    columns are left to the Python parser.
    """
    sample = np.flatnonzero(~skip)[:_SAMPLE_ROWS]
    seen: set[type] = set()
    found = 0
    for text in docs.take(pa.array(sample, pa.int64())).to_pylist():
        try:
            value = _step(_loads(text), path)
        except (ValueError, TypeError):
            return []
        if value is None:
            continue
        seen.add(type(value))
        found += 1
        if found >= _SAMPLE_VALUES:
            break
    if not seen or seen == {str}:
        return [pa.string()]
    if seen == {bool}:
        return [pa.bool_()]
    if seen == {int}:
        return [pa.int64(), pa.float64()]
    if seen <= {int, float}:
        return [pa.float64()]
    return []


def _read_path(
    docs: pa.Array, skip: np.ndarray, path: tuple[PathStep, ...], arrow_type: pa.DataType
) -> pa.Array | None:
    """The values at ``path`` read by ``pyarrow.json`` as ``arrow_type`` (``skip`` rows read as ``{}``).

    ``None`` when the reader fails (a value of another type, a non-object on the path, a
    repeated key, invalid JSON...) or does not give one record per row.
    """
    if skip.any():
        docs = pc.if_else(pa.array(skip, pa.bool_()), pa.scalar("{}", docs.type), docs)
    lines = pc.binary_join_element_wise(docs, pa.scalar("", docs.type), pa.scalar("\n", docs.type))
    offsets_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=offsets_type)[lines.offset : lines.offset + len(lines) + 1]
    longest = int(np.diff(offsets).max())
    if longest >= _MAX_BLOCK:
        return None
    data = lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]
    field_type = arrow_type
    for key in reversed(path[1:]):
        field_type = pa.struct([(key, field_type)])
    try:
        table = pajson.read_json(
            pa.BufferReader(data),
            read_options=pajson.ReadOptions(block_size=max(_MIN_BLOCK, longest + 1)),
            parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema([(path[0], field_type)]), unexpected_field_behavior="ignore"
            ),
        )
        if table.num_rows != len(docs):
            return None
        column = table.column(0).combine_chunks()  # fails beyond 2 GiB of strings
    except pa.ArrowException:
        return None
    for _ in path[1:]:
        column = column.flatten()[0]  # the struct's only field, null where the struct is null
    return column


def _replace_rows(base: JsonValues, rows: np.ndarray, part: JsonValues) -> JsonValues:
    """``base`` with the rows at ``rows`` (ascending) replaced by those of ``part``, in order."""
    mask = np.zeros(len(base), dtype=bool)
    mask[rows] = True
    where = pa.array(mask, pa.bool_())
    kind = base.kind.copy()
    kind[rows] = part.kind
    items = list(base.items)
    for i, item in zip(rows.tolist(), part.items, strict=True):
        items[i] = item
    return JsonValues(
        kind=kind,
        text=pc.replace_with_mask(base.text, where, part.text),
        number=pc.replace_with_mask(base.number, where, part.number),
        boolean=pc.replace_with_mask(base.boolean, where, part.boolean),
        items=items,
    )
