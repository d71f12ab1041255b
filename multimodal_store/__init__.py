"""multimodal-store: a local-first multimodal tensor store for retrieval-augmented generation.

One row holds the raw media, its embeddings and its metadata; one SQL query returns the
vector match and the image or frame.
"""

from __future__ import annotations

from . import types
from .dataset import Dataset, UncommittedChangesWarning, VersionInfo, create, open, open_read_only
from .errors import (
    ColumnNotFoundError,
    CommitConflictError,
    CorruptDatasetError,
    DataError,
    DatasetExistsError,
    DatasetNotFoundError,
    KernelError,
    MediaError,
    MultimodalStoreError,
    ParameterError,
    QueryError,
    QuerySyntaxError,
    ReadOnlyError,
    SchemaError,
    VersionNotFoundError,
)
from .expr import col, lit, param
from .query import SearchBuilder, query
from .results import Results

__version__ = "0.1.0"

__all__ = [
    "ColumnNotFoundError",
    "CommitConflictError",
    "CorruptDatasetError",
    "DataError",
    "Dataset",
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
    "Results",
    "SearchBuilder",
    "UncommittedChangesWarning",
    "VersionInfo",
    "VersionNotFoundError",
    "__version__",
    "col",
    "create",
    "lit",
    "open",
    "open_read_only",
    "param",
    "query",
    "types",
]
