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

from .errors import DataError

_orjson: Any
try:  # orjson is optional: ~5x faster parsing of large JSON columns
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
            out.append(_loads(text))
        except (ValueError, TypeError) as err:
            raise DataError(f"row {i} of the JSON column is not valid JSON: {err}") from None
    return out


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
    rows are missing) or a sequence of already-parsed Python values.
    """
    parsed = parse_documents(docs)
    values = extract(parsed, tuple(path))
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
