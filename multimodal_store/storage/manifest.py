"""Manifests: one immutable JSON file per version describing the whole dataset.

A manifest lists the schema (fields with stable ids, so renames touch no data) and the
fragments. A fragment is a set of rows stored as column groups (Arrow IPC files holding
some of the fields, named ``f<id>``) plus an optional deletion vector. Nothing executable
is ever stored: manifests are JSON, data is Arrow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorruptDatasetError
from .base import check_relative_path

__all__ = ["FORMAT", "ColumnGroup", "FieldSpec", "Fragment", "Manifest", "Operation", "manifest_path"]

FORMAT = "multimodal-store/1"
VERSIONS_DIR = "_versions"


def manifest_path(version: int) -> str:
    """Where the manifest of ``version`` lives."""
    return f"{VERSIONS_DIR}/{version:020d}.json"


def field_column(field_id: int) -> str:
    """The column name of a field inside data files."""
    return f"f{field_id}"


@dataclass(frozen=True)
class FieldSpec:
    """One column of the schema."""

    id: int
    name: str
    type: dict[str, Any]
    default: Any = None


@dataclass(frozen=True)
class ColumnGroup:
    """A data file holding some fields of a fragment, for all of its physical rows."""

    path: str
    fields: tuple[int, ...]


@dataclass(frozen=True)
class Fragment:
    """Rows written together. ``rows`` counts physical rows, deleted ones included."""

    id: int
    rows: int
    groups: tuple[ColumnGroup, ...]
    deletions: str | None = None
    deleted: int = 0

    @property
    def live_rows(self) -> int:
        return self.rows - self.deleted

    def field_ids(self) -> set[int]:
        return {f for g in self.groups for f in g.fields}


@dataclass(frozen=True)
class Operation:
    """What a commit changed, kept so a concurrent writer can tell whether it conflicts."""

    kind: str
    touched: dict[int, tuple[int, ...]] = field(default_factory=dict)  # fragment -> updated/deleted rows
    replaced: dict[int, tuple[int, ...]] = field(default_factory=dict)  # fragment -> rewritten field ids
    removed_fragments: tuple[int, ...] = ()
    schema_changed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "touched": {str(k): list(v) for k, v in self.touched.items()},
            "replaced": {str(k): list(v) for k, v in self.replaced.items()},
            "removed_fragments": list(self.removed_fragments),
            "schema_changed": self.schema_changed,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Operation:
        return cls(
            kind=str(d.get("kind", "")),
            touched={int(k): tuple(v) for k, v in d.get("touched", {}).items()},
            replaced={int(k): tuple(v) for k, v in d.get("replaced", {}).items()},
            removed_fragments=tuple(d.get("removed_fragments", ())),
            schema_changed=bool(d.get("schema_changed", False)),
        )


@dataclass(frozen=True)
class Manifest:
    """The complete description of one version."""

    version: int
    fields: tuple[FieldSpec, ...] = ()
    fragments: tuple[Fragment, ...] = ()
    next_field_id: int = 0
    next_fragment_id: int = 0
    message: str | None = None
    timestamp: float = 0.0
    operation: Operation = field(default_factory=lambda: Operation("create"))

    @property
    def num_rows(self) -> int:
        return sum(f.live_rows for f in self.fragments)

    def field_by_name(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def to_bytes(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": self.version,
            "timestamp": self.timestamp or time.time(),
            "message": self.message,
            "next_field_id": self.next_field_id,
            "next_fragment_id": self.next_fragment_id,
            "fields": [{"id": f.id, "name": f.name, "type": f.type, "default": f.default} for f in self.fields],
            "fragments": [
                {
                    "id": fr.id,
                    "rows": fr.rows,
                    "groups": [{"path": g.path, "fields": list(g.fields)} for g in fr.groups],
                    "deletions": fr.deletions,
                    "deleted": fr.deleted,
                }
                for fr in self.fragments
            ],
            "operation": self.operation.to_json(),
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "manifest") -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("format") != FORMAT:
                raise CorruptDatasetError(f"{where}: unknown format {doc.get('format')!r}, expected {FORMAT!r}")
            fragments = []
            for fr in doc["fragments"]:
                groups = tuple(
                    ColumnGroup(check_relative_path(g["path"]), tuple(int(x) for x in g["fields"]))
                    for g in fr["groups"]
                )
                dels = fr.get("deletions")
                fragments.append(Fragment(
                    id=int(fr["id"]), rows=int(fr["rows"]), groups=groups,
                    deletions=None if dels is None else check_relative_path(dels), deleted=int(fr.get("deleted", 0)),
                ))
            return cls(
                version=int(doc["version"]),
                fields=tuple(FieldSpec(int(f["id"]), str(f["name"]), dict(f["type"]), f.get("default"))
                             for f in doc["fields"]),
                fragments=tuple(fragments),
                next_field_id=int(doc["next_field_id"]),
                next_fragment_id=int(doc["next_fragment_id"]),
                message=doc.get("message"),
                timestamp=float(doc.get("timestamp", 0.0)),
                operation=Operation.from_json(doc.get("operation", {})),
            )
        except CorruptDatasetError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptDatasetError(f"{where} is not a valid manifest: {exc}") from exc
