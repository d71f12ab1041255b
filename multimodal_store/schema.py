"""The schema of a dataset: ordered column names and their types."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .errors import ColumnNotFoundError
from .storage.manifest import FieldSpec
from .types import ColumnType, type_from_json

__all__ = ["Schema", "unknown_column"]


def unknown_column(name: str, available: list[str]) -> ColumnNotFoundError:
    """The error for a column the dataset does not have, listing the ones it has."""
    shown = ", ".join(available) if available else "(no columns yet; add one with add_column)"
    return ColumnNotFoundError(f"unknown column {name!r}; available columns: {shown}")


class Schema(Mapping[str, ColumnType]):
    """Read-only mapping of column name to :class:`~multimodal_store.types.ColumnType`, in order."""

    def __init__(self, fields: tuple[FieldSpec, ...]) -> None:
        self._fields = fields
        self._types = {f.name: type_from_json(f.type) for f in fields}
        self._by_name = {f.name: f for f in fields}

    def __getitem__(self, name: str) -> ColumnType:
        try:
            return self._types[name]
        except KeyError:
            raise unknown_column(name, list(self._types)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    @property
    def columns(self) -> list[str]:
        """Column names in order."""
        return list(self._types)

    def field(self, name: str) -> FieldSpec:
        """The manifest entry of a column (its stable id, type and default)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise unknown_column(name, list(self._types)) from None

    def __repr__(self) -> str:
        inner = "\n".join(f"  {n}: {t!r}" for n, t in self._types.items())
        return f"Schema(\n{inner}\n)" if inner else "Schema()"
