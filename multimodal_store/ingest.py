"""One-call ingestion of folders of media: images, video key frames, audio and text files.

Example:
    >>> import multimodal_store as mms
    >>> from multimodal_store.embeddings import CLIPEmbedder
    >>> kb = mms.open("./data/kb")                                            # doctest: +SKIP
    >>> report = kb.ingest("./media", image_embedder=CLIPEmbedder("openai/clip-vit-base-patch32"))  # doctest: +SKIP
    >>> report.rows_added, report.errors                                      # doctest: +SKIP

Every image becomes a row, every selected video frame a row (source, timestamp, frame image,
embeddings, a caption when one is given), every audio file a row and every text chunk a row.
Files already ingested (same path, size and modification time) are skipped, so an
interrupted ingestion can simply be run again. Errors are collected per file and reported at
the end (``on_error="skip"``) or raised at once (``on_error="raise"``). One commit at the end.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DataError, MultimodalStoreError, SchemaError
from .types import Audio, ColumnType, Embedding, Float64, Image, Int64, Json, Text

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .dataset import Dataset

__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "TEXT_EXTENSIONS", "VIDEO_EXTENSIONS", "IngestReport",
           "chunk_text", "default_schema", "ingest"]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg"})
AUDIO_EXTENSIONS = frozenset({".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus"})
TEXT_EXTENSIONS = frozenset({".txt", ".md"})


@dataclass
class IngestReport:
    """What an ingestion did."""

    files_seen: int = 0
    files_ingested: int = 0
    files_skipped: int = 0
    rows_added: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    version: int | None = None

    def __str__(self) -> str:
        lines = [f"{self.files_ingested} files ingested, {self.files_skipped} already present, "
                 f"{len(self.errors)} failed; {self.rows_added} rows added (version {self.version})"]
        lines += [f"  {p}: {m}" for p, m in self.errors]
        return "\n".join(lines)


def default_schema(image_dim: int | None, text_dim: int | None) -> dict[str, ColumnType]:
    """The columns ingestion creates: the seed's columns plus source, timestamp, audio and bookkeeping."""
    schema: dict[str, ColumnType] = {
        "id": Text(),  # "<source>", "<source>#frame=<i>" or "<source>#chunk=<n>"
        "content_type": Text(),  # "image" | "video" | "audio" | "text"
        "text": Text(),  # caption, transcript or text chunk
        "image": Image(),
        "video_frame": Image(),
        "audio": Audio(),
        "metadata": Json(),
        "source": Text(),  # path of the file the row came from
        "timestamp": Float64(),  # seconds into the video (frames), else null
        "frame_index": Int64(),
        "ingest_key": Text(),  # path|size|mtime_ns, for resuming
    }
    if image_dim is not None:
        schema["clip_embedding"] = Embedding(image_dim)
    if text_dim is not None:
        schema["text_embedding"] = Embedding(text_dim)
    return schema


def chunk_text(text: str, size: int = 1000, overlap: int = 100) -> list[str]:
    """Split text into chunks of about ``size`` characters on paragraph / sentence / word boundaries."""
    text = text.strip()
    if not text:
        return []
    if size <= 0 or overlap < 0 or overlap >= size:
        raise DataError(f"chunk size must be > overlap >= 0, got size={size}, overlap={overlap}")
    chunks = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            window = text[start:end]
            cut = max(window.rfind("\n\n"), window.rfind(". "), window.rfind("\n"))
            if cut < size // 2:
                cut = window.rfind(" ")
            if cut > size // 4:
                end = start + cut + 1
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        start = max(end - overlap, start + 1)
    return chunks


def _walk(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"ingest: {str(p)!r} is neither a file nor a folder")
    return out


def _kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    for kind, exts in (("image", IMAGE_EXTENSIONS), ("video", VIDEO_EXTENSIONS), ("audio", AUDIO_EXTENSIONS),
                       ("text", TEXT_EXTENSIONS)):
        if ext in exts:
            return kind
    return None


def _key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _jpeg(img: PILImage.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _ensure_schema(ds: Dataset, wanted: Mapping[str, ColumnType]) -> None:
    for name, ctype in wanted.items():
        if name in ds.schema:
            have = ds.schema[name]
            if have != ctype:
                raise SchemaError(
                    f"ingest needs column {name!r} as {ctype!r}, but the dataset has {have!r}; "
                    "use another dataset or embedders of the matching size"
                )
        else:
            ds.add_column(name, ctype)


class _Batcher:
    """Collects rows, embeds them in batches, appends them."""

    def __init__(self, ds: Dataset, image_embedder: Any, text_embedder: Any, batch_size: int,
                 cross_modal_text: bool) -> None:
        self.ds = ds
        self.image_embedder = image_embedder
        self.text_embedder = text_embedder
        self.batch_size = batch_size
        self.cross_modal_text = cross_modal_text
        self.rows: list[dict[str, Any]] = []
        self.pixels: list[Any] = []  # image to embed per row (or None)
        self.added = 0

    def add(self, row: dict[str, Any], pixels: Any = None) -> None:
        self.rows.append(row)
        self.pixels.append(pixels)
        if len(self.rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        rows, pixels = self.rows, self.pixels
        self.rows, self.pixels = [], []
        if self.image_embedder is not None:
            idx = [i for i, p in enumerate(pixels) if p is not None]
            if idx:
                vecs = self.image_embedder.encode_image([pixels[i] for i in idx])
                for j, i in enumerate(idx):
                    rows[i]["clip_embedding"] = vecs[j]
            if self.cross_modal_text and hasattr(self.image_embedder, "encode_text"):
                tidx = [i for i, r in enumerate(rows) if r.get("content_type") == "text" and r.get("text")]
                if tidx:
                    vecs = self.image_embedder.encode_text([rows[i]["text"] for i in tidx])
                    for j, i in enumerate(tidx):
                        rows[i]["clip_embedding"] = vecs[j]
        # only real text is embedded (chunks and given captions), not the generated "frame at ..." labels
        real_text = [r.pop("_real_text", False) for r in rows]
        if self.text_embedder is not None:
            tidx = [i for i, r in enumerate(rows) if real_text[i] and r.get("text")]
            if tidx:
                vecs = self.text_embedder.encode_text([rows[i]["text"] for i in tidx])
                for j, i in enumerate(tidx):
                    rows[i]["text_embedding"] = vecs[j]
        self.ds.append(rows)
        self.added += len(rows)


def _existing_keys(ds: Dataset) -> dict[str, set[str]]:
    """Ingest keys already in the dataset, by resolved file path."""
    out: dict[str, set[str]] = {}
    if "ingest_key" not in ds.schema or len(ds) == 0:
        return out
    for k in ds.to_arrow(["ingest_key"]).column(0).to_pylist():
        if k:
            out.setdefault(k.rsplit("|", 2)[0], set()).add(k)
    return out


def _caption_for(path: Path, captions: Mapping[str, str] | Callable[[Path], str | None] | None) -> str | None:
    if captions is not None:
        if callable(captions):
            return captions(path)
        for key in (str(path), path.name, path.stem):
            if key in captions:
                return captions[key]
    sidecar = path.with_suffix(".txt")
    if sidecar.exists() and sidecar != path:
        return sidecar.read_text(encoding="utf-8", errors="replace").strip() or None
    return None


def ingest(
    ds: Dataset,
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    image_embedder: Any = None,
    text_embedder: Any = None,
    captions: Mapping[str, str] | Callable[[Path], str | None] | None = None,
    frame_mode: str = "scene",
    max_gap: float = 10.0,
    chunk_size: int = 1000,
    chunk_overlap: int = 100,
    batch_size: int = 32,
    on_error: str = "skip",
    message: str | None = None,
    progress: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Walk files and folders and write one row per image, video frame, audio file and text chunk.

    Args:
        ds: the dataset (columns are added as needed: see :func:`default_schema`).
        paths: a folder, a file, or several of them.
        image_embedder: anything with ``encode_image`` (and ``encode_text`` for cross-modal text rows),
            e.g. :class:`~multimodal_store.embeddings.CLIPEmbedder`; fills ``clip_embedding``.
        text_embedder: anything with ``encode_text``; fills ``text_embedding`` for captions and chunks.
        captions: captions by path, file name or stem (or a function of the path). A ``.txt`` file
            next to an image or video with the same stem is taken as its caption.
        frame_mode: ``"scene"`` (default), ``"keyframes"`` or ``"uniform"`` (see ``media.extract_frames``).
        max_gap: the longest stretch of video without a frame, in seconds.
        on_error: ``"skip"`` collects per-file errors in the report, ``"raise"`` stops at the first.
        metadata: extra JSON metadata merged into every row's ``metadata``.

    Returns:
        An :class:`IngestReport`; the rows are committed as one new version.
    """
    if on_error not in ("skip", "raise"):
        raise DataError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    clean = not ds.has_uncommitted_changes
    try:
        return _ingest(ds, paths, image_embedder, text_embedder, captions, frame_mode, max_gap, chunk_size,
                       chunk_overlap, batch_size, on_error, message, progress, metadata)
    except BaseException:
        if clean:  # leave the handle as it was: nothing of a failed ingestion stays staged
            ds.rollback()
        raise


def _ingest(ds: Dataset, paths: Any, image_embedder: Any, text_embedder: Any, captions: Any, frame_mode: str,
            max_gap: float, chunk_size: int, chunk_overlap: int, batch_size: int, on_error: str,
            message: str | None, progress: bool, metadata: Mapping[str, Any] | None) -> IngestReport:
    from tqdm.auto import tqdm

    image_dim = _dim(image_embedder)
    text_dim = _dim(text_embedder)
    _ensure_schema(ds, default_schema(image_dim, text_dim))
    files = _walk(paths)
    media_stems = {(f.parent, f.stem) for f in files if _kind(f) in ("image", "video")}
    done = _existing_keys(ds)
    report = IngestReport()
    batcher = _Batcher(ds, image_embedder, text_embedder, batch_size, cross_modal_text=True)
    extra = dict(metadata or {})
    for path in tqdm(files, desc="ingest", unit="file", disable=not progress):
        kind = _kind(path)
        if kind is None:
            continue
        if kind == "text" and (path.parent, path.stem) in media_stems and captions is None:
            continue  # a sidecar caption, used by its image or video
        report.files_seen += 1
        key = _key(path)
        resolved = key.rsplit("|", 2)[0]
        if key in done.get(resolved, ()):
            report.files_skipped += 1
            continue
        stale = done.get(resolved, set()) - {key}
        try:
            if stale:  # the file changed since it was ingested: its old rows are replaced
                from .expr import col

                ds.delete(col("ingest_key").isin(sorted(stale)))
            for row, pixels in _rows_for(path, kind, key, captions, frame_mode, max_gap, chunk_size, chunk_overlap,
                                         extra):
                batcher.add(row, pixels)
            batcher.flush()  # surface embedding / validation errors while we know the file
        except (MultimodalStoreError, OSError, ValueError) as exc:
            batcher.rows, batcher.pixels = [], []
            if on_error == "raise":
                raise
            logger.warning("ingest: skipping %s: %s", path, exc)
            report.errors.append((str(path), str(exc)))
            continue
        report.files_ingested += 1
        done[resolved] = {key}
    batcher.flush()
    report.rows_added = batcher.added
    report.version = ds.commit(message or f"ingest {report.files_ingested} files ({report.rows_added} rows)")
    return report


def _dim(embedder: Any) -> int | None:
    if embedder is None:
        return None
    dim = getattr(embedder, "dim", None)
    if dim is None:
        raise DataError(f"embedder {type(embedder).__name__} must expose its output size as .dim")
    return int(dim)


def _rows_for(path: Path, kind: str, key: str, captions: Any, frame_mode: str, max_gap: float, chunk_size: int,
              chunk_overlap: int, extra: dict[str, Any]) -> Iterator[tuple[dict[str, Any], Any]]:
    source = str(path)
    base = {"id": source, "source": source, "ingest_key": key}
    if kind == "image":
        from .media.images import encode_image, load_image

        enc = encode_image(path)
        caption = _caption_for(path, captions)
        meta = {**extra, "source": source, "mime": enc.mime, "width": enc.width, "height": enc.height}
        if caption:
            meta["caption"] = caption
        row = {**base, "content_type": "image", "image": enc.data, "text": caption or f"image {path.name}",
               "metadata": meta, "_real_text": bool(caption)}
        yield row, load_image(enc.data)
    elif kind == "video":
        from .media.video import extract_frames, format_timestamp

        caption = _caption_for(path, captions)
        count = 0
        for frame in extract_frames(path, mode=frame_mode, max_gap=max_gap):  # type: ignore[arg-type]
            when = format_timestamp(frame.timestamp)
            text = f"{caption} (frame at {when} of {path.name})" if caption else f"frame at {when} of {path.name}"
            meta = {**extra, "source": source, "timestamp": frame.timestamp, "frame_index": frame.index}
            if caption:
                meta["caption"] = caption
            row = {**base, "id": f"{source}#frame={frame.index}", "content_type": "video",
                   "video_frame": _jpeg(frame.image), "text": text,
                   "timestamp": float(frame.timestamp), "frame_index": int(frame.index), "metadata": meta,
                   "_real_text": bool(caption)}
            count += 1
            yield row, frame.image
        if count == 0:
            raise DataError(f"no frames could be decoded from {source}")
    elif kind == "audio":
        from .media.audio import audio_info

        info = audio_info(path)  # validates the file decodes
        caption = _caption_for(path, captions)
        meta = {**extra, "source": source, **{k: v for k, v in info.items() if isinstance(v, (int, float, str))}}
        row = {**base, "content_type": "audio", "audio": path.read_bytes(), "text": caption or f"audio {path.name}",
               "metadata": meta, "_real_text": bool(caption)}
        yield row, None
    else:
        text = path.read_text(encoding="utf-8", errors="replace")
        for i, chunk in enumerate(chunk_text(text, chunk_size, chunk_overlap)):
            meta = {**extra, "source": source, "chunk": i}
            yield {**base, "id": f"{source}#chunk={i}", "content_type": "text", "text": chunk, "metadata": meta,
                   "_real_text": True}, None
