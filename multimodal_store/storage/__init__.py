"""Storage backends and the on-disk format (manifests, fragments, commits)."""

from __future__ import annotations

import os
from pathlib import Path

from .base import Storage, check_relative_path
from .local import LocalStorage
from .memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage", "Storage", "check_relative_path", "storage_for", "url_name"]


def storage_for(url: str | os.PathLike[str]) -> Storage:
    """The storage backend for a dataset url: a local path, ``file://...``, ``mem://name`` or ``s3://bucket/prefix``."""
    text = os.fspath(url)
    if text.startswith("mem://"):
        return MemoryStorage(text[len("mem://"):])
    if text.startswith("s3://"):
        from .s3 import S3Storage

        return S3Storage(text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise ValueError(f"unsupported dataset url scheme {scheme!r} in {text!r}; use a local path, file://, mem:// or s3://")
    return LocalStorage(text)


def url_name(url: str | os.PathLike[str]) -> str:
    """The dataset's name: the last path component of its url."""
    text = os.fspath(url).rstrip("/")
    return Path(text.split("://", 1)[-1]).name or text
