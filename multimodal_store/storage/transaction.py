"""Uncommitted changes of a handle, and how they become the next manifest.

A :class:`Transaction` records changes relative to the version a handle started from:
appended fragments, deleted rows and rewritten column groups of existing fragments, and
schema edits. :func:`materialize` applies it to *any* later manifest, which is how a writer
that lost a commit race rebases; :func:`check_conflicts` refuses the rebase when another
commit changed the same rows, the same fields of a fragment, or the schema concurrently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from ..errors import CommitConflictError
from .base import Storage
from .manifest import ColumnGroup, FieldSpec, Fragment, Manifest, Operation

__all__ = ["FragmentChange", "FragmentView", "PendingFragment", "Transaction", "check_conflicts", "materialize",
           "replace_fields", "write_deletions"]

DeletionLoader = Callable[[Fragment], np.ndarray]


def replace_fields(groups: Iterable[ColumnGroup], new: ColumnGroup) -> tuple[ColumnGroup, ...]:
    """``groups`` with ``new``'s fields taken out of older groups (emptied groups dropped), then ``new``."""
    out = []
    for g in groups:
        keep = tuple(f for f in g.fields if f not in new.fields)
        if keep:
            out.append(g if keep == g.fields else ColumnGroup(g.path, keep))
    out.append(new)
    return tuple(out)


@dataclass
class FragmentChange:
    """Changes to one committed fragment."""

    deleted: set[int] = field(default_factory=set)
    new_groups: list[ColumnGroup] = field(default_factory=list)
    touched: set[int] = field(default_factory=set)

    @property
    def replaced(self) -> set[int]:
        return {f for g in self.new_groups for f in g.fields}


@dataclass
class PendingFragment:
    """A fragment appended in this transaction (not committed yet)."""

    rows: int
    groups: tuple[ColumnGroup, ...]
    deleted: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class FragmentView:
    """A fragment as a handle sees it: committed state plus its own changes."""

    id: int
    rows: int
    groups: tuple[ColumnGroup, ...]
    deleted: np.ndarray  # sorted physical offsets of deleted rows
    pending: bool  # appended in the open transaction

    @property
    def live_rows(self) -> int:
        return self.rows - len(self.deleted)

    def live_offsets(self) -> np.ndarray:
        if len(self.deleted) == 0:
            return np.arange(self.rows, dtype=np.int64)
        keep = np.ones(self.rows, dtype=bool)
        keep[self.deleted] = False
        return np.flatnonzero(keep)


@dataclass
class Transaction:
    """What a handle changed since its base version."""

    fields: tuple[FieldSpec, ...] | None = None  # the new schema, when it changed
    next_field_id: int | None = None
    added: list[PendingFragment] = field(default_factory=list)
    changes: dict[int, FragmentChange] = field(default_factory=dict)
    removed_fragments: set[int] = field(default_factory=set)
    kinds: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.kinds

    def note(self, kind: str) -> None:
        if kind not in self.kinds:
            self.kinds.append(kind)

    def change(self, fragment_id: int) -> FragmentChange:
        return self.changes.setdefault(fragment_id, FragmentChange())

    def operation(self) -> Operation:
        return Operation(
            kind="+".join(self.kinds) or "noop",
            touched={k: tuple(sorted(c.touched | c.deleted)) for k, c in self.changes.items() if c.touched or c.deleted},
            replaced={k: tuple(sorted(c.replaced)) for k, c in self.changes.items() if c.new_groups},
            removed_fragments=tuple(sorted(self.removed_fragments)),
            schema_changed=self.fields is not None,
        )


def view(base: Manifest, txn: Transaction, load_deletions: DeletionLoader) -> tuple[
        tuple[FieldSpec, ...], list[FragmentView]]:
    """The schema and fragments a handle sees: ``base`` with ``txn`` applied (nothing written)."""
    fields = txn.fields if txn.fields is not None else base.fields
    frags: list[FragmentView] = []
    for fr in base.fragments:
        if fr.id in txn.removed_fragments:
            continue
        deleted = load_deletions(fr)
        groups = fr.groups
        ch = txn.changes.get(fr.id)
        if ch is not None:
            if ch.deleted:
                deleted = np.union1d(deleted, np.fromiter(ch.deleted, dtype=np.int64))
            for g in ch.new_groups:
                groups = replace_fields(groups, g)
        frags.append(FragmentView(fr.id, fr.rows, groups, deleted, pending=False))
    for i, p in enumerate(txn.added):
        deleted = np.array(sorted(p.deleted), dtype=np.int64)
        frags.append(FragmentView(base.next_fragment_id + i, p.rows, p.groups, deleted, pending=True))
    return fields, frags


def write_deletions(storage: Storage, offsets: np.ndarray) -> str:
    """Write a deletion vector (sorted physical offsets) and return its path."""
    path = f"deletions/{uuid.uuid4().hex}.arrow"
    storage.write_arrow(path, pa.table({"offset": pa.array(np.asarray(offsets, dtype=np.int64))}))
    return path


def check_conflicts(txn: Transaction, base: Manifest, others: Iterable[Manifest]) -> None:
    """Raise :class:`CommitConflictError` if a commit made since ``base`` clashes with ``txn``."""
    ours_touched = {k: c.touched | c.deleted for k, c in txn.changes.items()}
    ours_replaced = {k: c.replaced for k, c in txn.changes.items()}
    ours_frags = set(txn.changes) | txn.removed_fragments
    for other in others:
        op = other.operation
        v = other.version
        hint = "re-open the dataset and apply your change again"
        if txn.fields is not None and op.schema_changed:
            raise CommitConflictError(f"version {v} changed the schema concurrently with this handle's schema change; {hint}")
        gone = ours_frags & set(op.removed_fragments)
        if gone:
            raise CommitConflictError(f"version {v} rewrote fragments {sorted(gone)} that this handle changed; {hint}")
        mine_removed = txn.removed_fragments & (set(op.touched) | set(op.replaced))
        if mine_removed:
            raise CommitConflictError(f"version {v} changed fragments {sorted(mine_removed)} that this handle compacts; {hint}")
        for frag, rows in op.touched.items():
            clash = ours_touched.get(frag, set()) & set(rows)
            if clash:
                raise CommitConflictError(
                    f"version {v} updated or deleted {len(clash)} of the same rows (fragment {frag}, "
                    f"rows {sorted(clash)[:5]}) that this handle changes; {hint}"
                )
        for frag, fids in op.replaced.items():
            clash = ours_replaced.get(frag, set()) & set(fids)
            if clash:
                names = [f.name for f in other.fields if f.id in clash] or [str(f) for f in sorted(clash)]
                raise CommitConflictError(
                    f"version {v} rewrote columns {names} of fragment {frag} that this handle also updates; {hint}"
                )
        if op.schema_changed:
            live = {f.id for f in other.fields}
            ours = {f for p in txn.added for g in p.groups for f in g.fields}
            ours |= {f for c in txn.changes.values() for f in c.replaced}
            lost = ours - live
            if lost:
                raise CommitConflictError(f"version {v} removed columns this handle writes (field ids {sorted(lost)}); {hint}")


def materialize(base: Manifest, txn: Transaction, storage: Storage, load_deletions: DeletionLoader,
                *, message: str | None, timestamp: float) -> Manifest:
    """The manifest of version ``base.version + 1``: ``txn`` applied to ``base`` (writes deletion files)."""
    fragments: list[Fragment] = []
    for fr in base.fragments:
        if fr.id in txn.removed_fragments:
            continue
        ch = txn.changes.get(fr.id)
        if ch is None:
            fragments.append(fr)
            continue
        groups = fr.groups
        for g in ch.new_groups:
            groups = replace_fields(groups, g)
        deletions, deleted = fr.deletions, fr.deleted
        if ch.deleted:
            merged = np.union1d(load_deletions(fr), np.fromiter(ch.deleted, dtype=np.int64))
            deletions, deleted = write_deletions(storage, merged), len(merged)
        fragments.append(replace(fr, groups=groups, deletions=deletions, deleted=deleted))
    next_id = base.next_fragment_id
    for p in txn.added:
        deletions = write_deletions(storage, np.array(sorted(p.deleted), dtype=np.int64)) if p.deleted else None
        if p.rows - len(p.deleted) > 0 or p.deleted:
            fragments.append(Fragment(next_id, p.rows, p.groups, deletions, len(p.deleted)))
        next_id += 1
    fields = txn.fields if txn.fields is not None else base.fields
    next_field = max(base.next_field_id, txn.next_field_id or 0)
    return Manifest(
        version=base.version + 1, fields=fields, fragments=tuple(fragments), next_field_id=next_field,
        next_fragment_id=next_id, message=message, timestamp=timestamp, operation=txn.operation(),
    )
