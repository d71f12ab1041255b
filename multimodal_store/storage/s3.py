"""S3 (and S3-compatible) storage through boto3; commits use ``If-None-Match: *``."""

from __future__ import annotations

import os
from typing import IO, Any

from .base import Storage, check_relative_path

__all__ = ["S3Storage"]


class S3Storage(Storage):
    """A dataset under ``s3://bucket/prefix``.

    The endpoint comes from ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (e.g. MinIO or a local
    moto server) or the default AWS endpoint; credentials from the usual boto3 chain.
    """

    def __init__(self, url: str, client: Any = None) -> None:
        try:
            import boto3
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("s3:// datasets need boto3: pip install 'multimodal-store[s3]'") from exc
        self.url = url.rstrip("/")
        bucket, _, prefix = self.url[len("s3://"):].partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.client = client or boto3.client("s3", endpoint_url=endpoint)

    def _key(self, path: str) -> str:
        check_relative_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        return code in ("NoSuchKey", "404", "NotFound")

    def read(self, path: str) -> bytes:
        try:
            data: bytes = self.client.get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
            return data
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFoundError(f"{self.url}/{path}") from exc
            raise

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if length <= 0:
            self.client.head_object(Bucket=self.bucket, Key=self._key(path))
            return b""
        try:
            resp = self.client.get_object(
                Bucket=self.bucket, Key=self._key(path), Range=f"bytes={offset}-{offset + length - 1}"
            )
            data: bytes = resp["Body"].read()
            return data
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFoundError(f"{self.url}/{path}") from exc
            raise

    def exists(self, path: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(path))
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=data)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=data, IfNoneMatch="*")
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                out.append(key[len(self.prefix) + 1:] if self.prefix else key)
        return sorted(out)

    def delete(self, path: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(path))

    def modified_time(self, path: str) -> float:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(path))
        except Exception as exc:
            if self._missing(exc):
                raise FileNotFoundError(f"{self.url}/{path}") from exc
            raise
        return float(head["LastModified"].timestamp())

    def open_input(self, path: str) -> IO[bytes]:
        import io

        return io.BytesIO(self.read(path))
