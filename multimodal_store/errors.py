"""The exception hierarchy of multimodal-store.

Every error raised on purpose by the library derives from :class:`MultimodalStoreError`
and also from the builtin exception that fits, so ``except ValueError`` keeps working
for callers that do not know about this package.
"""

from __future__ import annotations

__all__ = [
    "ColumnNotFoundError",
    "CommitConflictError",
    "CorruptDatasetError",
    "DataError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "KernelError",
    "MediaError",
    "MultimodalStoreError",
    "ParameterError",
    "QueryError",
    "QuerySyntaxError",
    "ReadOnlyError",
    "SchemaError",
    "VersionNotFoundError",
]


class MultimodalStoreError(Exception):
    """Base class of every error raised by multimodal-store."""


class SchemaError(MultimodalStoreError, ValueError):
    """A column is missing, duplicated, or of the wrong type for the operation."""


class ColumnNotFoundError(SchemaError, KeyError):
    """A column name that the dataset does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(MultimodalStoreError, ValueError):
    """A value that cannot be stored in its column (wrong size, NaN, bad bytes...)."""


class MediaError(DataError):
    """Image, video or audio bytes that cannot be decoded."""


class DatasetNotFoundError(MultimodalStoreError, FileNotFoundError):
    """The url does not hold a dataset."""


class DatasetExistsError(MultimodalStoreError, FileExistsError):
    """``create`` was asked for a url that already holds a dataset."""


class VersionNotFoundError(MultimodalStoreError, LookupError):
    """A version number or tag that the dataset does not have."""


class CorruptDatasetError(MultimodalStoreError, OSError):
    """A manifest or data file that cannot be read or is not valid."""


class ReadOnlyError(MultimodalStoreError, PermissionError):
    """A write on a handle opened read-only or at an older version."""


class CommitConflictError(MultimodalStoreError, RuntimeError):
    """A concurrent commit changed the same rows; re-open and retry the change."""


class QueryError(MultimodalStoreError, ValueError):
    """A query that cannot be planned or executed."""


class QuerySyntaxError(QueryError):
    """SQL text that does not parse; carries the line, column and offending token."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None,
                 token: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.token = token


class ParameterError(QueryError):
    """A query parameter that is missing, unused or of the wrong kind."""


class KernelError(MultimodalStoreError, ValueError):
    """Invalid arguments to a similarity-search kernel."""
