"""The Dataset: typed columns, appends / updates / deletes, versioned commits.

The API mirrors Deeplake 4 (``open``, ``add_column``, ``append``, ``commit``, ``query``) so
code written for it runs with only the import changed.

Example:
    >>> import multimodal_store as mms
    >>> from multimodal_store import types
    >>> ds = mms.open("mem://doc-example")
    >>> ds.add_column("text", types.Text())
    >>> ds.append([{"text": "hello"}])
    >>> ds.commit("first row")
    1
    >>> ds[0]["text"]
    'hello'
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .errors import (
    ColumnNotFoundError,
    CommitConflictError,
    CorruptDatasetError,
    DataError,
    DatasetExistsError,
    DatasetNotFoundError,
    ReadOnlyError,
    SchemaError,
    VersionNotFoundError,
)
from .inputs import to_columns
from .schema import Schema, unknown_column
from .storage import Storage, storage_for, url_name
from .storage.fragments import FileCache
from .storage.manifest import (
    VERSIONS_DIR,
    ColumnGroup,
    FieldSpec,
    Manifest,
    Operation,
    field_column,
    manifest_path,
)
from .storage.transaction import (
    FragmentView,
    PendingFragment,
    Transaction,
    check_conflicts,
    materialize,
    view,
)
from .types import ColumnType, ReadContext, normalize_scalar

if TYPE_CHECKING:
    from .expr import Expr
    from .query import SearchBuilder
    from .results import Results

__all__ = ["Dataset", "UncommittedChangesWarning", "VersionInfo", "create", "open", "open_read_only"]

logger = logging.getLogger(__name__)

TAGS_DIR = "_tags"
MAX_ROWS_PER_FRAGMENT = 1 << 20
_COMMIT_RETRIES = 64


class UncommittedChangesWarning(UserWarning):
    """A dataset handle was dropped (or closed) with changes that were never committed."""


@dataclass(frozen=True)
class VersionInfo:
    """One entry of :attr:`Dataset.history`."""

    version: int
    timestamp: float
    message: str | None
    operation: str
    num_rows: int


# --------------------------------------------------------------------------- opening


def _list_versions(storage: Storage) -> list[int]:
    out = []
    for path in storage.list(VERSIONS_DIR):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json") and name[:-5].isdigit():
            out.append(int(name[:-5]))
    return sorted(out)


def _read_manifest(storage: Storage, version: int) -> Manifest:
    path = manifest_path(version)
    try:
        data = storage.read(path)
    except FileNotFoundError:
        raise VersionNotFoundError(f"version {version} does not exist in {storage.url}") from None
    m = Manifest.from_bytes(data, where=f"{storage.url}/{path}")
    if m.version != version:
        raise CorruptDatasetError(f"{storage.url}/{path} claims to be version {m.version}")
    return m


def _resolve_version(storage: Storage, version: int | str | None) -> int:
    versions = _list_versions(storage)
    if not versions:
        raise DatasetNotFoundError(f"{storage.url} is not a dataset (no {VERSIONS_DIR}/ manifests found)")
    if version is None:
        return versions[-1]
    if isinstance(version, str) and not version.isdigit():
        import json

        try:
            return int(json.loads(storage.read(f"{TAGS_DIR}/{version}.json"))["version"])
        except FileNotFoundError:
            tags = [p.rsplit("/", 1)[-1][:-5] for p in storage.list(TAGS_DIR)]
            raise VersionNotFoundError(
                f"no version or tag {version!r} in {storage.url}; tags: {', '.join(tags) or '(none)'}"
            ) from None
    v = int(version)
    if v not in versions:
        raise VersionNotFoundError(f"version {v} does not exist in {storage.url}; versions: {versions[0]}..{versions[-1]}")
    return v


def _exists(storage: Storage) -> bool:
    return bool(_list_versions(storage))


def _init(storage: Storage) -> bool:
    empty = Manifest(version=0, message="created", timestamp=time.time(), operation=Operation("create"))
    return storage.put_if_absent(manifest_path(0), empty.to_bytes())


def _check_not_foreign(storage: Storage, url: str) -> None:
    from .storage.local import LocalStorage

    if isinstance(storage, LocalStorage) and storage.root.exists():
        if not storage.root.is_dir():
            raise DatasetNotFoundError(f"{url} is a file, not a dataset folder")
        entries = [p for p in storage.root.iterdir() if not p.name.startswith(".")]
        if entries and not (storage.root / VERSIONS_DIR).exists():
            raise DatasetNotFoundError(
                f"{url} exists and is not a dataset (it has no {VERSIONS_DIR}/ folder); "
                "choose an empty or new folder"
            )


def open(url: str | os.PathLike[str], *, version: int | str | None = None) -> Dataset:
    """Open the dataset at ``url``, creating an empty one if nothing is there.

    Args:
        url: a local path, ``file://...``, ``mem://name`` or ``s3://bucket/prefix``.
        version: open the given version number or tag (read-only) instead of the latest.
    """
    storage = storage_for(url)
    if version is None and not _exists(storage):
        _check_not_foreign(storage, os.fspath(url))
        _init(storage)
    v = _resolve_version(storage, version)
    latest = _list_versions(storage)[-1]
    return Dataset(storage, _read_manifest(storage, v), read_only=v != latest and version is not None)


def create(url: str | os.PathLike[str]) -> Dataset:
    """Create an empty dataset at ``url``; fails with :class:`DatasetExistsError` if one is there."""
    storage = storage_for(url)
    if _exists(storage):
        raise DatasetExistsError(f"a dataset already exists at {os.fspath(url)}; use multimodal_store.open() to open it")
    _check_not_foreign(storage, os.fspath(url))
    if not _init(storage):
        raise DatasetExistsError(f"a dataset was created concurrently at {os.fspath(url)}")
    return Dataset(storage, _read_manifest(storage, 0))


def open_read_only(url: str | os.PathLike[str], version: int | str | None = None) -> Dataset:
    """Open an existing dataset for reading only (at ``version`` or tag, or the latest)."""
    storage = storage_for(url)
    v = _resolve_version(storage, version)
    return Dataset(storage, _read_manifest(storage, v), read_only=True)


# --------------------------------------------------------------------------- the dataset


class Dataset:
    """A versioned multimodal table. Create with :func:`open` / :func:`create`."""

    def __init__(self, storage: Storage, manifest: Manifest, *, read_only: bool = False) -> None:
        self._storage = storage
        self._base = manifest
        self._txn = Transaction()
        self._read_only = read_only
        self._cache = FileCache(storage)
        self._view_cache: tuple[Schema, list[FragmentView], np.ndarray] | None = None

    # ----------------------------------------------------------------- identity and state

    @property
    def url(self) -> str:
        """The url the dataset lives at."""
        return self._storage.url

    @property
    def name(self) -> str:
        """The dataset's name (the last component of its url); any name is accepted in SQL ``FROM``."""
        return url_name(self._storage.url)

    @property
    def storage(self) -> Storage:
        """The storage backend (for out-of-line media reads)."""
        return self._storage

    @property
    def version(self) -> int:
        """The committed version this handle is based on."""
        return self._base.version

    @property
    def read_only(self) -> bool:
        return self._read_only

    @property
    def has_uncommitted_changes(self) -> bool:
        """Whether this handle holds changes that :meth:`commit` would write."""
        return not self._txn.empty

    def _state(self) -> tuple[Schema, list[FragmentView], np.ndarray]:
        if self._view_cache is None:
            fields, frags = view(self._base, self._txn, self._cache.deletions)
            starts = np.cumsum([0] + [f.live_rows for f in frags], dtype=np.int64)
            self._view_cache = (Schema(fields), frags, starts)
        return self._view_cache

    def _changed(self, kind: str) -> None:
        self._txn.note(kind)
        self._view_cache = None

    @property
    def schema(self) -> Schema:
        """Column names and types (including uncommitted schema changes of this handle)."""
        return self._state()[0]

    def fragments(self) -> list[FragmentView]:
        """The fragments as this handle sees them (for the query executor)."""
        return list(self._state()[1])

    def __len__(self) -> int:
        return int(self._state()[2][-1])

    def __repr__(self) -> str:
        dirty = ", uncommitted changes" if self.has_uncommitted_changes else ""
        cols = ", ".join(f"{n}: {t!r}" for n, t in self.schema.items())
        return f"Dataset({self.url!r}, version={self.version}, rows={len(self)}{dirty}, columns=[{cols}])"

    def _check_writable(self) -> None:
        if self._read_only:
            raise ReadOnlyError(
                f"this handle of {self.url} is read-only (opened read-only or at an older version {self.version}); "
                "open the latest version with multimodal_store.open(url) to write"
            )

    # ----------------------------------------------------------------- schema changes

    def _fields(self) -> tuple[FieldSpec, ...]:
        return self._txn.fields if self._txn.fields is not None else self._base.fields

    def _next_field_id(self) -> int:
        return max(self._base.next_field_id, self._txn.next_field_id or 0)

    def add_column(self, name: str, dtype: ColumnType, default: Any = None) -> None:
        """Add a column; existing rows read ``default`` (or null). Nothing is rewritten.

        Args:
            name: the column name (unique, non-empty).
            dtype: a type from :mod:`multimodal_store.types`, e.g. ``types.Embedding(512)``.
            default: the value of existing and future rows that do not give one.
        """
        self._check_writable()
        if not isinstance(name, str) or not name:
            raise SchemaError(f"column name must be a non-empty string, got {name!r}")
        if isinstance(dtype, type) and issubclass(dtype, ColumnType):
            dtype = dtype()
        if not isinstance(dtype, ColumnType):
            raise SchemaError(f"column {name!r}: dtype must be a multimodal_store.types type, got {dtype!r}")
        if name in self.schema:
            raise SchemaError(f"column {name!r} already exists (type {self.schema[name]!r}); pick another name")
        default = normalize_scalar(default)
        if default is not None:
            if dtype.is_media:
                raise SchemaError(f"column {name!r}: media columns cannot have a default value")
            dtype.to_arrow([default], name)  # validates
        fid = self._next_field_id()
        self._txn.fields = (*self._fields(), FieldSpec(fid, name, dtype.to_json(), default))
        self._txn.next_field_id = fid + 1
        self._changed("add_column")

    def remove_column(self, name: str) -> None:
        """Remove a column from the schema (its data files are reclaimed by compact + cleanup)."""
        self._check_writable()
        self.schema.field(name)
        self._txn.fields = tuple(f for f in self._fields() if f.name != name)
        self._changed("remove_column")

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column (a manifest change only: no data is rewritten)."""
        self._check_writable()
        self.schema.field(old)
        if new in self.schema:
            raise SchemaError(f"cannot rename {old!r} to {new!r}: a column {new!r} already exists")
        if not isinstance(new, str) or not new:
            raise SchemaError(f"column name must be a non-empty string, got {new!r}")
        self._txn.fields = tuple(replace(f, name=new) if f.name == old else f for f in self._fields())
        self._changed("rename_column")

    # ----------------------------------------------------------------- writing rows

    def _blob_writer(self, data: bytes, suffix: str) -> str:
        path = f"blobs/{uuid.uuid4().hex}{suffix if suffix.startswith('.') and len(suffix) <= 8 else '.bin'}"
        self._storage.put(path, data)
        return path

    def _encode(self, rows: Any, *, allow_missing: bool = True) -> tuple[dict[int, pa.Array], int]:
        """Validate and convert input rows to Arrow arrays keyed by field id (nothing staged)."""
        schema = self.schema
        columns, n = to_columns(rows)
        unknown = [c for c in columns if c not in schema]
        if unknown:
            raise unknown_column(unknown[0], schema.columns)
        arrays: dict[int, pa.Array] = {}
        for name, ctype in schema.items():
            f = schema.field(name)
            if name in columns:
                values = columns[name]
                if isinstance(values, (pa.Array, pa.ChunkedArray)):
                    values = _arrow_values(values, ctype)
                    if isinstance(values, pa.Array):
                        arrays[f.id] = values
                        continue
                arrays[f.id] = ctype.to_arrow(values, name, blobs=self._blob_writer)
            else:
                arrays[f.id] = _fill(ctype, f.default, n, name)
        return arrays, n

    def append(self, rows: Any) -> None:
        """Append rows: a list of row dicts, a dict of columns, a pyarrow Table or a pandas DataFrame.

        Columns not given read as their default (or null). The batch is all-or-nothing: if any
        value is invalid (wrong embedding size, corrupt image...) nothing is staged.
        Changes are visible to this handle at once and written for others by :meth:`commit`.
        """
        self._check_writable()
        arrays, n = self._encode(rows)
        if n == 0:
            return
        if not arrays:
            raise SchemaError("cannot append rows to a dataset without columns; add columns with add_column first")
        pending = []
        for start in range(0, n, MAX_ROWS_PER_FRAGMENT):
            stop = min(n, start + MAX_ROWS_PER_FRAGMENT)
            table = pa.table({field_column(fid): arr.slice(start, stop - start) for fid, arr in arrays.items()})
            path = f"data/{uuid.uuid4().hex}.arrow"
            self._storage.write_arrow(path, table)
            pending.append(PendingFragment(stop - start, (ColumnGroup(path, tuple(arrays)),)))
        self._txn.added.extend(pending)
        self._changed("append")

    def _row_locations(self, where: Expr | str | Sequence[int] | None) -> list[tuple[FragmentView, np.ndarray]]:
        """Physical offsets of the live rows matching ``where``, per fragment, in row order."""
        _schema, frags, starts = self._state()
        out: list[tuple[FragmentView, np.ndarray]] = []
        if where is None:
            return [(fv, fv.live_offsets()) for fv in frags if fv.live_rows]
        if isinstance(where, (Sequence, np.ndarray)) and not isinstance(where, str):
            idx = np.asarray(where, dtype=np.int64).reshape(-1)
            total = int(starts[-1])
            if len(idx) and (idx.min() < -total or idx.max() >= total):
                raise IndexError(f"row index out of range for a dataset of {total} rows")
            idx = np.unique(np.where(idx < 0, idx + total, idx))
            for i, fv in enumerate(frags):
                sel = idx[(idx >= starts[i]) & (idx < starts[i + 1])] - starts[i]
                if len(sel):
                    out.append((fv, fv.live_offsets()[sel]))
            return out
        from .scan import fragment_mask, to_predicate

        pred = to_predicate(where)
        for fv in frags:
            if not fv.live_rows:
                continue
            mask = fragment_mask(self, fv, pred)
            offsets = fv.live_offsets()[mask]
            if len(offsets):
                out.append((fv, offsets))
        return out

    def delete(self, where: Expr | str | Sequence[int]) -> int:
        """Delete the rows matching ``where`` (an expression, a SQL predicate string or row indices).

        Returns the number of rows deleted.
        """
        self._check_writable()
        if where is None:
            raise DataError("delete(where) needs a predicate or row indices; to delete every row use delete('TRUE')")
        locs = self._row_locations(where)
        count = 0
        base_next = self._base.next_fragment_id
        for fv, offsets in locs:
            rows = {int(o) for o in offsets}
            count += len(rows)
            if fv.pending:
                self._txn.added[fv.id - base_next].deleted |= rows
            else:
                self._txn.change(fv.id).deleted |= rows
        if count:
            self._changed("delete")
        return count

    def update(self, where: Expr | str | Sequence[int] | None, values: Mapping[str, Any]) -> int:
        """Set columns of the rows matching ``where`` (None = every row).

        ``values`` maps a column to one value for all matched rows, or to a sequence with one
        value per matched row (in row order). Only the updated columns are rewritten.
        Returns the number of rows updated.
        """
        self._check_writable()
        schema = self.schema
        if not values:
            raise DataError("update needs at least one column value")
        for name in values:
            schema.field(name)
        locs = self._row_locations(where)
        total = sum(len(o) for _, o in locs)
        if total == 0:
            return 0
        # validate and encode every new value before writing anything
        encoded: dict[int, pa.Array] = {}
        for name, v in values.items():
            ctype = schema[name]
            per_row = _is_per_row(v, total, ctype)
            seq = v if per_row else [normalize_scalar(v)] * total
            if per_row and len(seq) != total:
                raise DataError(f"update of {name!r}: got {len(seq)} values for {total} matched rows")
            encoded[schema.field(name).id] = ctype.to_arrow(seq, name, blobs=self._blob_writer)
        fids = tuple(encoded)
        pos = 0
        base_next = self._base.next_fragment_id
        for fv, offsets in locs:
            m = len(offsets)
            cols = {}
            for fid in fids:
                old = self.physical_column(fv, fid)
                new = encoded[fid].slice(pos, m)
                idx = np.arange(fv.rows, dtype=np.int64)
                idx[offsets] = fv.rows + np.arange(m)
                cols[field_column(fid)] = _concat(old, new).take(pa.array(idx))
            pos += m
            path = f"data/{uuid.uuid4().hex}.arrow"
            self._storage.write_arrow(path, pa.table(cols))
            group = ColumnGroup(path, fids)
            if fv.pending:
                from .storage.transaction import replace_fields

                p = self._txn.added[fv.id - base_next]
                p.groups = replace_fields(p.groups, group)
            else:
                ch = self._txn.change(fv.id)
                ch.new_groups.append(group)
                ch.touched |= {int(o) for o in offsets}
        self._changed("update")
        return total

    def upsert(self, rows: Any, on: str = "id") -> tuple[int, int]:
        """Insert rows, replacing existing rows whose ``on`` column has the same value.

        Within ``rows`` a later duplicate key wins. Returns ``(inserted, replaced)``.
        """
        self._check_writable()
        ctype = self.schema[on]
        columns, n = to_columns(rows)
        if on not in columns:
            raise DataError(f"upsert(on={on!r}) needs the {on!r} value of every row; it is missing from the input")
        keys = columns[on]
        keys = keys.to_pylist() if isinstance(keys, (pa.Array, pa.ChunkedArray)) else list(keys)
        if any(k is None for k in keys):
            raise DataError(f"upsert(on={on!r}): a row has no {on!r} value")
        last: dict[Any, int] = {}
        for i, k in enumerate(keys):
            last[k] = i
        keep = sorted(last.values())
        if len(keep) != n:
            columns = {c: _take(v, keep) for c, v in columns.items()}
        arrays, _ = self._encode(columns)  # validate everything before deleting anything
        del arrays
        from .expr import col

        key_values = [keys[i] for i in keep]
        existing = self._row_locations(col(on).isin(key_values)) if key_values else []
        replaced = sum(len(o) for _, o in existing)
        if replaced:
            base_next = self._base.next_fragment_id
            for fv, offsets in existing:
                rows_set = {int(o) for o in offsets}
                if fv.pending:
                    self._txn.added[fv.id - base_next].deleted |= rows_set
                else:
                    self._txn.change(fv.id).deleted |= rows_set
            self._changed("delete")
        self.append(columns)
        del ctype
        return len(keep) - replaced, replaced

    # ----------------------------------------------------------------- reading

    def physical_column(self, fv: FragmentView, field_id: int) -> pa.Array:
        """All physical rows (deleted ones included) of one field of a fragment."""
        for g in fv.groups:
            if field_id in g.fields:
                return self._cache.column(g.path, field_id)
        spec = next((f for f in self._fields() if f.id == field_id), None)
        if spec is None:
            raise ColumnNotFoundError(f"field id {field_id} is not in the schema")
        from .types import type_from_json

        return self._cache.get(
            ("fill", field_id, fv.rows, repr(spec.default)),
            lambda: _fill(type_from_json(spec.type), spec.default, fv.rows, spec.name),
        )

    def column_in(self, fv: FragmentView, name: str, offsets: np.ndarray | None = None) -> pa.Array:
        """The stored values of column ``name`` for the live rows of a fragment (or the given offsets)."""
        arr = self.physical_column(fv, self.schema.field(name).id)
        if offsets is None:
            if len(fv.deleted) == 0:
                return arr
            offsets = fv.live_offsets()
        return arr.take(pa.array(offsets, type=pa.int64()))

    def _locate(self, index: int) -> tuple[FragmentView, int]:
        _, frags, starts = self._state()
        n = int(starts[-1])
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"row {index} out of range for a dataset of {n} rows")
        i = int(np.searchsorted(starts, index, side="right")) - 1
        fv = frags[i]
        rel = index - int(starts[i])
        offset = rel if len(fv.deleted) == 0 else int(fv.live_offsets()[rel])
        return fv, offset

    def decode(self, name: str, value: Any) -> Any:
        """Turn one stored value of column ``name`` into its user-facing form (PIL image, dict...)."""
        return self.schema[name].from_arrow(value, ReadContext(self._storage))

    def row(self, index: int, columns: Sequence[str] | None = None) -> dict[str, Any]:
        """Row ``index`` as a dict with decoded media (images as PIL, JSON as dict...)."""
        fv, offset = self._locate(index)
        names = list(columns) if columns is not None else self.schema.columns
        out = {}
        for name in names:
            arr = self.physical_column(fv, self.schema.field(name).id)
            out[name] = self.decode(name, arr[offset].as_py())
        return out

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            return ColumnView(self, key)
        if isinstance(key, slice):
            return [self.row(i) for i in range(*key.indices(len(self)))]
        if isinstance(key, (int, np.integer)):
            return self.row(int(key))
        raise TypeError(f"dataset indices must be int, slice or column name, not {type(key).__name__}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self.row(i)

    def to_arrow(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The live rows as a pyarrow Table (stored form: media as encoded bytes, JSON as text)."""
        names = list(columns) if columns is not None else self.schema.columns
        for n in names:
            self.schema.field(n)
        _, frags, _ = self._state()
        chunks: dict[str, list[pa.Array]] = {n: [] for n in names}
        for fv in frags:
            if not fv.live_rows:
                continue
            for n in names:
                chunks[n].append(self.column_in(fv, n))
        arrays = []
        for n in names:
            t = self.schema[n].arrow_type
            arrays.append(pa.chunked_array(chunks[n], type=t))
        return pa.table(dict(zip(names, arrays, strict=False)))

    def to_pandas(self, columns: Sequence[str] | None = None) -> Any:
        """The live rows as a pandas DataFrame."""
        return self.to_arrow(columns).to_pandas()

    # ----------------------------------------------------------------- queries

    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None = None) -> Results:
        """Run a SQL query (see the README's SQL reference); parameters are bound as values."""
        from .query import run_sql

        return run_sql(self, sql, params)

    def search(self, vector: Any = None, column: str | None = None, metric: str = "cosine") -> SearchBuilder:
        """Start a query builder ranked by similarity to ``vector`` over ``column``."""
        from .query import SearchBuilder

        return SearchBuilder(self, vector=vector, column=column, metric=metric)

    def ingest(self, paths: Any, **options: Any) -> Any:
        """Ingest a folder or files (images, videos, audio, text); see :func:`multimodal_store.ingest.ingest`."""
        from .ingest import ingest

        return ingest(self, paths, **options)

    # ----------------------------------------------------------------- versions

    def commit(self, message: str | None = None) -> int:
        """Write this handle's changes as a new version and return its number.

        If another writer committed first, appends are rebased onto its version; updates or
        deletes of the same rows raise :class:`CommitConflictError` (nothing is written).
        With no changes, nothing is written and the current version is returned.
        """
        self._check_writable()
        if self._txn.empty:
            return self.version
        base = self._base
        for attempt in range(_COMMIT_RETRIES):
            manifest = materialize(base, self._txn, self._storage, self._cache.deletions,
                                   message=message, timestamp=time.time())
            if self._storage.put_if_absent(manifest_path(manifest.version), manifest.to_bytes()):
                self._base = manifest
                self._txn = Transaction()
                self._view_cache = None
                logger.debug("committed version %d of %s", manifest.version, self.url)
                return manifest.version
            # lost the race: read what was committed since our base and rebase onto it
            latest = _list_versions(self._storage)[-1]
            others = [_read_manifest(self._storage, v) for v in range(base.version + 1, latest + 1)]
            check_conflicts(self._txn, self._base, others)
            base = others[-1]
            time.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise CommitConflictError(
            f"could not commit to {self.url} after {_COMMIT_RETRIES} attempts: too many concurrent writers; retry"
        )

    def rollback(self) -> None:
        """Discard this handle's uncommitted changes."""
        self._txn = Transaction()
        self._view_cache = None

    def refresh(self) -> None:
        """Move this handle to the latest committed version (it must have no uncommitted changes)."""
        if not self._txn.empty:
            raise CommitConflictError("refresh() with uncommitted changes: commit() or rollback() first")
        latest = _list_versions(self._storage)[-1]
        if latest != self._base.version:
            self._base = _read_manifest(self._storage, latest)
            self._view_cache = None

    @property
    def history(self) -> list[VersionInfo]:
        """Every committed version, oldest first."""
        out = []
        for v in _list_versions(self._storage):
            m = _read_manifest(self._storage, v)
            out.append(VersionInfo(m.version, m.timestamp, m.message, m.operation.kind, m.num_rows))
        return out

    def tag(self, name: str, version: int | None = None) -> None:
        """Name a version (default: this handle's version); open it later with ``open(url, version=name)``."""
        import json

        if not name or "/" in name or name.isdigit():
            raise DataError(f"tag names must be non-empty, without '/', and not a number; got {name!r}")
        v = self.version if version is None else _resolve_version(self._storage, version)
        if not self._storage.put_if_absent(f"{TAGS_DIR}/{name}.json", json.dumps({"version": v}).encode()):
            raise DataError(f"tag {name!r} already exists in {self.url}")

    @property
    def tags(self) -> dict[str, int]:
        """Tag name -> version."""
        import json

        out = {}
        for p in self._storage.list(TAGS_DIR):
            if p.endswith(".json"):
                out[p.rsplit("/", 1)[-1][:-5]] = int(json.loads(self._storage.read(p))["version"])
        return out

    # ----------------------------------------------------------------- maintenance

    def compact(self, target_rows: int = MAX_ROWS_PER_FRAGMENT) -> int:
        """Rewrite fragments with deletions or several column groups, and merge small fragments.

        Commits the result as a new version (the handle must have no other uncommitted
        changes). Returns the new version.
        """
        self._check_writable()
        if not self._txn.empty:
            raise CommitConflictError("compact() with uncommitted changes: commit() or rollback() first")
        _, frags, _ = self._state()
        victims = [fv for fv in frags if len(fv.deleted) or len(fv.groups) > 1 or fv.rows < target_rows // 4]
        if len(victims) <= 1 and not any(len(fv.deleted) or len(fv.groups) > 1 for fv in victims):
            return self.version
        names = self.schema.columns
        tables = []
        for fv in victims:
            if fv.live_rows:
                tables.append(pa.table({field_column(self.schema.field(n).id): self.column_in(fv, n) for n in names}))
        self._txn.removed_fragments = {fv.id for fv in victims}
        if tables:
            merged = pa.concat_tables(tables)
            fids = tuple(self.schema.field(n).id for n in names)
            for start in range(0, merged.num_rows, target_rows):
                part = merged.slice(start, target_rows)
                path = f"data/{uuid.uuid4().hex}.arrow"
                self._storage.write_arrow(path, part)
                self._txn.added.append(PendingFragment(part.num_rows, (ColumnGroup(path, fids),)))
        self._changed("compact")
        return self.commit("compact")

    def cleanup(self, older_than: float = 3600.0) -> int:
        """Reclaim space: forget old versions, then delete files that no version references.

        Versions committed more than ``older_than`` seconds ago are removed, except the latest,
        this handle's base and tagged ones; then data, deletion and blob files referenced by no
        remaining manifest and older than ``older_than`` are deleted. Files of uncommitted work
        younger than that grace period are kept, so a concurrent writer is never harmed.
        Returns the number of files removed.
        """
        self._check_writable()
        now = time.time()
        versions = _list_versions(self._storage)
        keep = {versions[-1], self.version, *self.tags.values()}
        removed = 0
        manifests = []
        for v in versions:
            m = _read_manifest(self._storage, v)
            if v not in keep and now - m.timestamp >= older_than:
                self._storage.delete(manifest_path(v))
                removed += 1
            else:
                manifests.append(m)
        referenced: set[str] = set()
        for m in manifests:
            for fr in m.fragments:
                referenced.update(g.path for g in fr.groups)
                if fr.deletions:
                    referenced.add(fr.deletions)
            referenced.update(_blobs_of(self, m))
        for folder in ("data", "deletions", "blobs"):
            for path in self._storage.list(folder):
                if path in referenced:
                    continue
                try:
                    age = now - self._storage.modified_time(path)
                except FileNotFoundError:
                    continue
                if age >= older_than:
                    self._storage.delete(path)
                    removed += 1
        return removed

    # ----------------------------------------------------------------- context manager

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            if not self._read_only:
                self.commit()
        else:
            self.rollback()

    def __del__(self) -> None:
        try:
            if not self._txn.empty and not self._read_only:
                warnings.warn(
                    f"dataset handle of {self.url} dropped with uncommitted changes ({', '.join(self._txn.kinds)}); "
                    "they are lost. Call ds.commit() to keep them.",
                    UncommittedChangesWarning,
                    stacklevel=2,
                )
        except Exception:
            pass


class ColumnView:
    """``ds["col"]``: one column, indexable like a list (values decoded)."""

    def __init__(self, ds: Dataset, name: str) -> None:
        ds.schema.field(name)
        self._ds = ds
        self.name = name

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            return [self._ds.row(i, [self.name])[self.name] for i in range(*key.indices(len(self)))]
        return self._ds.row(int(key), [self.name])[self.name]

    def to_arrow(self) -> pa.ChunkedArray:
        """The stored values of the live rows."""
        return self._ds.to_arrow([self.name]).column(0)

    def numpy(self) -> np.ndarray:
        """The column as numpy; embeddings as a ``(n, dim)`` float array."""
        from .types import Embedding, storage_to_float32

        ctype = self._ds.schema[self.name]
        arr = self.to_arrow().combine_chunks()
        if isinstance(ctype, Embedding):
            storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
            flat = storage.flatten().to_numpy(zero_copy_only=False)
            return storage_to_float32(flat, ctype.dtype).reshape(-1, ctype.dim)
        return np.asarray(arr.to_numpy(zero_copy_only=False))

    def __setitem__(self, key: int | slice, value: Any) -> None:
        n = len(self._ds)
        idx = list(range(*key.indices(n))) if isinstance(key, slice) else [int(key) % n if n else int(key)]
        vals = value if isinstance(key, slice) else [value]
        self._ds.update(idx, {self.name: list(vals) if isinstance(key, slice) else vals})


# --------------------------------------------------------------------------- helpers


def _fill(ctype: ColumnType, default: Any, n: int, name: str) -> pa.Array:
    if default is None:
        return pa.nulls(n, type=ctype.arrow_type)
    one = ctype.to_arrow([default], name)
    return pa.concat_arrays([one] * n) if n else one.slice(0, 0)


def _arrow_values(values: pa.Array | pa.ChunkedArray, ctype: ColumnType) -> Any:
    """Arrow input already in the column's stored type is taken as is; anything else via Python."""
    target = ctype.arrow_type
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if arr.type == target:
        return arr
    storage_type = target.storage_type if isinstance(target, pa.ExtensionType) else target
    if isinstance(target, pa.ExtensionType) and arr.type == storage_type:
        return pa.ExtensionArray.from_storage(target, arr)
    if pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
        from .types import Embedding

        if isinstance(ctype, Embedding) and arr.null_count == 0:
            flat = arr.flatten().to_numpy(zero_copy_only=False)
            return flat.reshape(len(arr), -1) if len(arr) else np.zeros((0, ctype.dim), np.float32)
    if not isinstance(target, pa.ExtensionType):
        try:
            return arr.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return arr.to_pylist()


def _is_per_row(v: Any, total: int, ctype: ColumnType) -> bool:
    from .types import Embedding, Json

    if isinstance(v, (str, bytes, dict)) or v is None:
        return False
    if isinstance(ctype, Embedding):
        arr = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=object if isinstance(v, list) else None)
        return arr.ndim == 2 or (arr.ndim == 1 and len(arr) == total and arr.dtype == object)
    if isinstance(ctype, Json):
        return False
    return isinstance(v, (list, tuple, np.ndarray, pa.Array))


def _concat(a: pa.Array, b: pa.Array) -> pa.Array:
    if isinstance(a.type, pa.ExtensionType) and isinstance(b.type, pa.ExtensionType):
        storage = pa.concat_arrays([a.storage, b.storage])
        return pa.ExtensionArray.from_storage(a.type, storage)
    return pa.concat_arrays([a, b.cast(a.type) if b.type != a.type else b])


def _take(values: Any, idx: list[int]) -> Any:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.take(pa.array(idx))
    if isinstance(values, np.ndarray):
        return values[idx]
    return [values[i] for i in idx]


def _blobs_of(ds: Dataset, m: Manifest) -> set[str]:
    from .types import Video, type_from_json

    out: set[str] = set()
    video_fields = [f.id for f in m.fields if isinstance(type_from_json(f.type), Video)]
    if not video_fields:
        return out
    for fr in m.fragments:
        for g in fr.groups:
            for fid in video_fields:
                if fid in g.fields:
                    arr = ds._cache.column(g.path, fid)
                    storage = arr.storage if isinstance(arr, pa.ExtensionArray) else arr
                    out.update(b for b in storage.field("blob").to_pylist() if b)
    return out
