"""Column types and their Arrow representation.

Each column type knows three things: the Arrow type it is stored as (media, JSON and
embeddings are namespaced Arrow extension types, ``multimodal_store.*``), how to turn user
values into an Arrow array (validating them: a wrong embedding size or corrupt image bytes
raise :class:`~multimodal_store.errors.DataError` before anything is written), and how to
turn a stored value back into what a user expects (``PIL.Image.Image`` for images, ``dict``
for JSON, ``numpy`` for embeddings).

Example:
    >>> from multimodal_store import types
    >>> types.Embedding(512).arrow_type
    EmbeddingArrowType(fixed_size_list<item: float>[512])
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import mimetypes
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from .errors import DataError, SchemaError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "Audio",
    "Bool",
    "ColumnType",
    "Embedding",
    "Float32",
    "Float64",
    "Image",
    "Int32",
    "Int64",
    "Json",
    "Link",
    "LinkValue",
    "Text",
    "Timestamp",
    "Video",
    "VideoValue",
    "type_from_json",
]

_NAMESPACE = "multimodal_store"


# --------------------------------------------------------------------------- Arrow extension types


class _JsonParamsExtension(pa.ExtensionType):
    """An extension type whose parameters serialise as JSON (never pickle)."""

    ext_name: ClassVar[str]

    def __init__(self, storage_type: pa.DataType, **params: Any) -> None:
        self._params = params
        super().__init__(storage_type, f"{_NAMESPACE}.{self.ext_name}")

    def __arrow_ext_serialize__(self) -> bytes:
        return json.dumps(self._params, sort_keys=True).encode()

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type: pa.DataType, serialized: bytes) -> pa.ExtensionType:
        params = json.loads(serialized.decode()) if serialized else {}
        return cls(storage_type, **params)

    def __reduce__(self) -> Any:  # pragma: no cover - pickling is not part of the format
        return type(self), (self.storage_type,), self._params


class ImageArrowType(_JsonParamsExtension):
    ext_name = "image"


class AudioArrowType(_JsonParamsExtension):
    ext_name = "audio"


class VideoArrowType(_JsonParamsExtension):
    ext_name = "video"


class LinkArrowType(_JsonParamsExtension):
    ext_name = "link"


class JsonArrowType(_JsonParamsExtension):
    ext_name = "json"


class EmbeddingArrowType(_JsonParamsExtension):
    ext_name = "embedding"


_EXTENSIONS: tuple[type[_JsonParamsExtension], ...] = (
    ImageArrowType, AudioArrowType, VideoArrowType, LinkArrowType, JsonArrowType, EmbeddingArrowType,
)


def _register_extensions() -> None:
    for cls in _EXTENSIONS:
        with contextlib.suppress(pa.ArrowKeyError):  # already registered (module reloaded)
            pa.register_extension_type(cls(_STORAGE[cls.ext_name]))


_IMAGE_STORAGE = pa.struct([
    ("data", pa.large_binary()), ("mime", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
])
_AUDIO_STORAGE = pa.struct([("data", pa.large_binary()), ("mime", pa.string())])
# A video is either stored out of line (``blob``: a path relative to the dataset root) or linked (``uri``).
_VIDEO_STORAGE = pa.struct([
    ("blob", pa.string()), ("uri", pa.string()), ("mime", pa.string()), ("size", pa.int64()),
])
_STORAGE: dict[str, pa.DataType] = {
    "image": _IMAGE_STORAGE,
    "audio": _AUDIO_STORAGE,
    "video": _VIDEO_STORAGE,
    "link": pa.string(),
    "json": pa.large_string(),
    "embedding": pa.list_(pa.float32(), 1),
}


# --------------------------------------------------------------------------- base class


class BlobWriter(Protocol):
    """Stores bytes out of line in the dataset and returns their path relative to its root."""

    def __call__(self, data: bytes, suffix: str) -> str: ...



class ColumnType:
    """Base class of column types. Subclasses are small immutable value objects."""

    kind: ClassVar[str]
    #: the column holds media bytes (never decoded for rows that lose a search)
    is_media: ClassVar[bool] = False

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type the column is stored as."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The JSON form kept in manifests."""
        return {"kind": self.kind}

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        """Validate ``values`` and convert them to an Arrow array of :attr:`arrow_type`.

        ``blobs`` stores out-of-line bytes (whole videos) and returns their relative path.
        """
        try:
            return pa.array(list(values), type=self.arrow_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise DataError(f"column '{column}' ({self!r}) cannot hold the given values: {exc}") from exc

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> Any:
        """Turn one stored Python value (``array[i].as_py()``) into the user-facing value."""
        return value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ColumnType) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))

    def __repr__(self) -> str:
        params = {k: v for k, v in self.to_json().items() if k != "kind"}
        inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({inner})"


@dataclass(frozen=True)
class ReadContext:
    """What decoding needs beyond the stored value: the dataset's storage for out-of-line blobs."""

    storage: Any


class _Scalar(ColumnType):
    _arrow: ClassVar[pa.DataType]

    @property
    def arrow_type(self) -> pa.DataType:
        return self._arrow


class Text(_Scalar):
    """UTF-8 text (captions, transcripts, chunks)."""

    kind = "text"
    _arrow = pa.large_string()

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        try:
            return pa.array(values, type=self._arrow)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, str):
                raise DataError(f"column '{column}' is Text: expected str or None, got {type(v).__name__} at row {i}")
        return pa.array(list(values), type=self._arrow)


class Int64(_Scalar):
    """64-bit signed integers."""

    kind = "int64"
    _arrow = pa.int64()


class Int32(_Scalar):
    """32-bit signed integers."""

    kind = "int32"
    _arrow = pa.int32()


class Float32(_Scalar):
    """32-bit floats."""

    kind = "float32"
    _arrow = pa.float32()


class Float64(_Scalar):
    """64-bit floats."""

    kind = "float64"
    _arrow = pa.float64()


class Bool(_Scalar):
    """Booleans."""

    kind = "bool"
    _arrow = pa.bool_()


class Timestamp(_Scalar):
    """Timestamps with microsecond precision (naive values are taken as UTC)."""

    kind = "timestamp"
    _arrow = pa.timestamp("us", tz="UTC")


class Json(ColumnType):
    """Any JSON value (object, array, string, number, bool, null), stored as JSON text.

    Filters on keys (``metadata->>'department'``) are evaluated on values extracted once per
    immutable data file and cached, so a query does not re-parse every document.
    """

    kind = "json"

    @property
    def arrow_type(self) -> pa.DataType:
        return JsonArrowType(_STORAGE["json"])

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        out: list[str | None] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(json.dumps(v, ensure_ascii=False, allow_nan=False, separators=(",", ":")))
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"column '{column}' is Json: row {i} is not JSON-serialisable ({exc}); "
                    "use dicts, lists, str, int, float (finite), bool or None"
                ) from exc
        return pa.ExtensionArray.from_storage(self.arrow_type, pa.array(out, type=_STORAGE["json"]))

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> Any:
        return None if value is None else json.loads(value)


_EMBEDDING_DTYPES: dict[str, pa.DataType] = {
    "float32": pa.float32(),
    "float16": pa.float16(),
    "bfloat16": pa.uint16(),  # raw bfloat16 bits: Arrow has no bfloat16 type
}


class Embedding(ColumnType):
    """A fixed-size vector of ``dim`` numbers in ``float32``, ``float16`` or ``bfloat16``.

    Stored as an Arrow fixed-size list (bfloat16 as its raw 16-bit patterns), read back
    zero-copy from memory-mapped files as a ``(n, dim)`` numpy array.
    """

    kind = "embedding"

    def __init__(self, dim: int, dtype: str = "float32") -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
            raise SchemaError(f"Embedding dim must be a positive int, got {dim!r}")
        if dtype not in _EMBEDDING_DTYPES:
            raise SchemaError(f"Embedding dtype must be one of {sorted(_EMBEDDING_DTYPES)}, got {dtype!r}")
        self.dim = int(dim)
        self.dtype = dtype

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "dtype": self.dtype}

    @property
    def storage_type(self) -> pa.DataType:
        return pa.list_(_EMBEDDING_DTYPES[self.dtype], self.dim)

    @property
    def arrow_type(self) -> pa.DataType:
        return EmbeddingArrowType(self.storage_type, dim=self.dim, dtype=self.dtype)

    def to_arrow(
        self, values: Sequence[Any] | np.ndarray, column: str, blobs: BlobWriter | None = None
    ) -> pa.Array:
        if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor of shape (n, dim)
            values = _as_vector(values)
        n = len(values)
        valid = np.ones(n, dtype=bool)
        if isinstance(values, np.ndarray) and values.ndim == 2:
            self._check_dim(values.shape[1], column, 0)
            mat = values.astype(np.float32, copy=False)
        else:
            mat = np.zeros((n, self.dim), dtype=np.float32)
            for i, v in enumerate(values):
                if v is None:
                    valid[i] = False
                    continue
                arr = _as_vector(v)
                if arr.ndim != 1:
                    raise DataError(
                        f"column '{column}' expects 1-D vectors of size {self.dim}, got shape {arr.shape} at row {i}"
                    )
                self._check_dim(arr.shape[0], column, i)
                mat[i] = arr
        # a float64 row sum is finite exactly when every value of the row is (no overflow from float32)
        finite = np.isfinite(mat.sum(axis=1, dtype=np.float64)) | ~valid
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise DataError(f"column '{column}' got NaN or inf in the embedding at row {bad}; embeddings must be finite")
        flat = _to_storage_dtype(np.ascontiguousarray(mat).reshape(-1), self.dtype)
        storage = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=_EMBEDDING_DTYPES[self.dtype]), self.dim)
        if not valid.all():
            storage = pa.FixedSizeListArray.from_arrays(
                storage.values, self.dim, mask=pa.array(~valid, type=pa.bool_())
            )
        return pa.ExtensionArray.from_storage(self.arrow_type, storage)

    def _check_dim(self, got: int, column: str, row: int) -> None:
        if got != self.dim:
            raise DataError(
                f"column '{column}' expects embeddings of size {self.dim}, got size {got} (row {row}); "
                "check that the embedding model matches the column"
            )

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> Any:
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.uint16 if self.dtype == "bfloat16" else None)
        return storage_to_float32(arr, self.dtype)


def _as_vector(v: Any) -> np.ndarray:
    if hasattr(v, "detach") and hasattr(v, "cpu"):  # torch tensor
        v = v.detach().cpu().float().numpy()
    return np.asarray(v, dtype=np.float32)


def _to_storage_dtype(flat: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return flat.astype(np.float32, copy=False)
    if dtype == "float16":
        return flat.astype(np.float16)
    # bfloat16: round-to-nearest-even on the upper 16 bits of the float32 pattern
    bits = flat.astype(np.float32).view(np.uint32)
    rounded = bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def storage_to_float32(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Convert stored embedding values (bfloat16 as uint16 bits) to float32."""
    if dtype == "bfloat16":
        return (arr.astype(np.uint32) << np.uint32(16)).view(np.float32)
    return arr.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- media


_IMAGE_MIMES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}


class Image(ColumnType):
    """An image kept as its encoded bytes (JPEG/PNG/WebP... exactly as given).

    Accepts a path, ``bytes``, a ``PIL.Image.Image`` or an ``HxWxC`` / ``HxW`` uint8 array
    (arrays and PIL images are encoded losslessly as PNG). Mime type, width and height are
    recorded for cheap filtering. Reads back as ``PIL.Image.Image``.
    """

    kind = "image"
    is_media = True

    @property
    def arrow_type(self) -> pa.DataType:
        return ImageArrowType(_IMAGE_STORAGE)

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        from .media.images import encode_image

        rows: list[dict[str, Any] | None] = []
        for i, v in enumerate(values):
            if v is None:
                rows.append(None)
                continue
            try:
                enc = encode_image(v)
            except DataError as exc:
                raise type(exc)(f"column '{column}', row {i}: {exc}") from exc
            rows.append({"data": enc.data, "mime": enc.mime, "width": enc.width, "height": enc.height})
        return pa.ExtensionArray.from_storage(self.arrow_type, pa.array(rows, type=_IMAGE_STORAGE))

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> PILImage.Image | None:
        if value is None or value.get("data") is None:
            return None
        from .media.images import decode_image

        return decode_image(value["data"])


class Audio(ColumnType):
    """Audio kept as encoded bytes (WAV/MP3/FLAC/OGG...); reads back as ``bytes``.

    Decode with :func:`multimodal_store.media.load_audio`.
    """

    kind = "audio"
    is_media = True

    @property
    def arrow_type(self) -> pa.DataType:
        return AudioArrowType(_AUDIO_STORAGE)

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        rows: list[dict[str, Any] | None] = []
        for i, v in enumerate(values):
            if v is None:
                rows.append(None)
                continue
            data, mime = _read_bytes(v, column, i, default_mime="audio/octet-stream")
            rows.append({"data": data, "mime": mime})
        return pa.ExtensionArray.from_storage(self.arrow_type, pa.array(rows, type=_AUDIO_STORAGE))

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> bytes | None:
        return None if value is None else value.get("data")


class Video(ColumnType):
    """A whole video, stored out of line (its bytes in a blob file of the dataset) or linked.

    Accepts a path or ``bytes`` (stored out of line) or a :class:`LinkValue` / ``"scheme://..."``
    URI string (linked, not copied). Reads back as a :class:`VideoValue` whose ``read()``
    returns the bytes and ``open()`` a seekable file object (range reads, no full copy).
    """

    kind = "video"
    is_media = True

    @property
    def arrow_type(self) -> pa.DataType:
        return VideoArrowType(_VIDEO_STORAGE)

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        rows: list[dict[str, Any] | None] = []
        for i, v in enumerate(values):
            if v is None:
                rows.append(None)
            elif isinstance(v, LinkValue) or (isinstance(v, str) and "://" in v):
                uri = str(v)
                rows.append({"blob": None, "uri": uri, "mime": mimetypes.guess_type(uri)[0], "size": None})
            else:
                data, mime = _read_bytes(v, column, i, default_mime="video/mp4")
                if blobs is None:
                    raise DataError(f"column '{column}' is Video: storing video bytes needs a dataset")
                suffix = Path(os.fspath(v)).suffix if isinstance(v, (str, os.PathLike)) else ".bin"
                rows.append({"blob": blobs(data, suffix), "uri": None, "mime": mime, "size": len(data)})
        return pa.ExtensionArray.from_storage(self.arrow_type, pa.array(rows, type=_VIDEO_STORAGE))

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> VideoValue | None:
        if value is None:
            return None
        return VideoValue(blob=value.get("blob"), uri=value.get("uri"), mime=value.get("mime"),
                          size=value.get("size"), storage=None if ctx is None else ctx.storage)


class Link(ColumnType):
    """A URI (``file://``, a local path, ``s3://``, ``http(s)://``) resolved lazily on read."""

    kind = "link"
    is_media = True

    @property
    def arrow_type(self) -> pa.DataType:
        return LinkArrowType(pa.string())

    def to_arrow(self, values: Sequence[Any], column: str, blobs: BlobWriter | None = None) -> pa.Array:
        out: list[str | None] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
            elif isinstance(v, LinkValue):
                out.append(v.uri)
            elif isinstance(v, (str, os.PathLike)):
                out.append(os.fspath(v))
            else:
                raise DataError(f"column '{column}' is Link: expected a URI string, got {type(v).__name__} at row {i}")
        return pa.ExtensionArray.from_storage(self.arrow_type, pa.array(out, type=pa.string()))

    def from_arrow(self, value: Any, ctx: ReadContext | None = None) -> LinkValue | None:
        return None if value is None else LinkValue(value)


@dataclass(frozen=True)
class LinkValue:
    """A lazily resolved URI."""

    uri: str

    def read(self) -> bytes:
        """Fetch the bytes the URI points to."""
        return _read_uri(self.uri)

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class VideoValue:
    """A stored or linked video. ``read()`` gives its bytes, ``open()`` a seekable file."""

    blob: str | None
    uri: str | None
    mime: str | None
    size: int | None
    storage: Any = None

    def open(self) -> Any:
        """A binary, seekable file object over the video (range reads where possible)."""
        if self.blob is not None:
            if self.storage is None:
                raise DataError("this video is stored in a dataset; read it through its dataset handle")
            return self.storage.open_input(self.blob)
        import io

        return io.BytesIO(_read_uri(str(self.uri)))

    def read(self) -> bytes:
        """The video's encoded bytes."""
        with self.open() as f:
            data: bytes = f.read()
            return data

    def __repr__(self) -> str:
        where = self.uri if self.uri is not None else self.blob
        return f"<Video {self.mime or ''} {where}>"


def _read_uri(uri: str) -> bytes:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):]).read_bytes()
    if "://" not in uri:
        return Path(uri).read_bytes()
    if uri.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(uri) as resp:
            data: bytes = resp.read()
            return data
    if uri.startswith("s3://"):
        import boto3

        bucket, _, key = uri[len("s3://"):].partition("/")
        body: bytes = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    raise DataError(f"cannot resolve link {uri!r}: supported schemes are file://, local paths, http(s)://, s3://")


def _read_bytes(v: Any, column: str, row: int, default_mime: str) -> tuple[bytes, str]:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v), default_mime
    if isinstance(v, (str, os.PathLike)):
        p = Path(v)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise DataError(f"column '{column}', row {row}: cannot read file {str(p)!r}: {exc}") from exc
        mime = mimetypes.guess_type(p.name)[0] or default_mime
        return data, mime
    raise DataError(f"column '{column}', row {row}: expected a path or bytes, got {type(v).__name__}")


# --------------------------------------------------------------------------- registry

_TYPES: dict[str, type[ColumnType]] = {
    cls.kind: cls
    for cls in (Text, Int64, Int32, Float32, Float64, Bool, Timestamp, Json, Embedding, Image, Audio, Video, Link)
}


def type_from_json(spec: dict[str, Any]) -> ColumnType:
    """Rebuild a column type from its manifest JSON form."""
    kind = spec.get("kind")
    cls = _TYPES.get(str(kind))
    if cls is None:
        raise SchemaError(f"unknown column type {kind!r}; known: {', '.join(sorted(_TYPES))}")
    params = {k: v for k, v in spec.items() if k != "kind"}
    return cls(**params)


def normalize_scalar(value: Any) -> Any:
    """Turn numpy / torch scalars into Python ones (for defaults and update values)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, _dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=_dt.timezone.utc)
    return value


_register_extensions()
