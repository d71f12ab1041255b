"""Converting LlamaIndex nodes to dataset rows and back.

A node is stored as one row: its id, text, embedding and metadata in their own columns, its
image (``ImageNode``, or a ``Node``'s ``image_resource``) as encoded bytes in an Image
column, its ``ref_doc_id`` in a Text column (for deletes) and everything else that rebuilds
it — class, relationships, templates, image path / url / mime type — as JSON in the node
column (``node.model_dump(mode="json")`` minus text, metadata, embeddings and image bytes,
which the other columns hold).

Rows that were not written by the vector store (``ds.ingest(...)``: images, video frames, text
chunks) come back as ``ImageNode`` / ``TextNode`` built from their columns; see
:func:`row_to_node`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from llama_index.core.schema import (
    BaseNode,
    ImageNode,
    IndexNode,
    MetadataMode,
    Node,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)

from multimodal_store import col, lit
from multimodal_store.expr import Expr
from multimodal_store.media.video import format_timestamp

__all__ = ["ColumnMap", "ids_expr", "node_to_row", "ref_doc_expr", "row_id", "row_to_node"]

_CLASSES: dict[str, type[BaseNode]] = {
    "TextNode": TextNode,
    "ImageNode": ImageNode,
    "IndexNode": IndexNode,
    "Node": Node,
}
#: node fields held by other columns (or dropped: embeddings), not by the node JSON
_NOT_IN_JSON = ("embedding", "text_embedding", "text", "metadata", "image")
_SYNTHETIC = re.compile(r"^(?P<source>.+)#(?P<kind>frame|chunk)=(?P<n>-?\d+)$")


@dataclass(frozen=True)
class ColumnMap:
    """Which dataset column holds which part of a node."""

    id: str = "id"
    text: str = "text"
    embedding: str = "embedding"
    images: tuple[str, ...] = ("image", "video_frame")
    metadata: str = "metadata"
    node: str = "node"
    ref_doc_id: str = "ref_doc_id"
    content_type: str = "content_type"
    source: str = "source"
    timestamp: str = "timestamp"
    frame_index: str = "frame_index"

    def readable(self, schema: Mapping[str, Any]) -> list[str]:
        """The columns (present in ``schema``) that rebuilding a node reads."""
        wanted = [self.id, self.text, self.metadata, self.node, self.ref_doc_id, self.content_type,
                  self.source, self.timestamp, self.frame_index, *self.images]
        return [c for c in dict.fromkeys(wanted) if c in schema]


# --------------------------------------------------------------------------------------------- node -> row


def _local_path(url: str) -> str | None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme in ("", None) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return url
    return None


def _resource_bytes(data: str | bytes | None, path: str | os.PathLike[str] | None, url: str | None,
                    node_id: str) -> bytes | None:
    """The encoded image bytes given as base64 data, a local path, or a ``file://`` / ``data:`` url."""
    if data:
        return base64.b64decode(data)
    if path:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"node {node_id!r}: cannot read its image_path {os.fspath(path)!r}: {exc}") from exc
    if url:
        if url.startswith("data:") and ";base64," in url:
            return base64.b64decode(url.split(";base64,", 1)[1])
        local = _local_path(url)
        if local is not None and os.path.isfile(local):
            return Path(local).read_bytes()
    return None  # a remote url: kept (in the node JSON) but not downloaded


def image_bytes(node: BaseNode) -> bytes | None:
    """The encoded image a node carries, or None."""
    if isinstance(node, ImageNode):
        return _resource_bytes(node.image, node.image_path, node.image_url, node.node_id)
    if isinstance(node, Node) and node.image_resource is not None:
        r = node.image_resource
        return _resource_bytes(r.data, r.path, str(r.url) if r.url else None, node.node_id)
    return None


def node_text(node: BaseNode) -> str:
    if isinstance(node, TextNode):
        return node.text
    return node.get_content(metadata_mode=MetadataMode.NONE)


def node_to_row(node: BaseNode, cols: ColumnMap) -> dict[str, Any]:
    """The row storing ``node``: column name -> value (raises ValueError without an embedding)."""
    embedding = node.embedding
    if embedding is None:
        raise ValueError(
            f"node {node.node_id!r} has no embedding; embed nodes before adding them "
            "(an index does this with its embed_model)"
        )
    data = node.model_dump(mode="json")
    for key in _NOT_IN_JSON:
        data.pop(key, None)
    if isinstance(data.get("image_resource"), dict):
        data["image_resource"].pop("embeddings", None)
    image = image_bytes(node)
    row: dict[str, Any] = {
        cols.id: node.node_id,
        cols.text: node_text(node),
        cols.embedding: [float(x) for x in embedding],
        cols.metadata: _jsonable(dict(node.metadata)),
        cols.node: data,
        cols.ref_doc_id: node.ref_doc_id,
        cols.content_type: "image" if image is not None or isinstance(node, ImageNode) else "text",
    }
    if cols.images:
        row[cols.images[0]] = image
    return row


def _jsonable(value: Any) -> Any:
    """Metadata as plain JSON values (numpy scalars, dates... become numbers / strings)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    return str(value)


# --------------------------------------------------------------------------------------------- row -> node


def row_id(row: Mapping[str, Any], cols: ColumnMap) -> str:
    """The node id of a stored row (stored form): its id column, or one made from its source.

    Rows written by ``ds.ingest`` have no id: a video frame is ``"<source>#frame=<index>"``, a
    text chunk ``"<source>#chunk=<n>"``, an image or audio file ``"<source>"``. Rows with
    neither id nor source get a content hash (such ids cannot be used to select rows).
    """
    value = row.get(cols.id)
    if value:
        return str(value)
    source = row.get(cols.source)
    if source:
        if row.get(cols.frame_index) is not None:
            return f"{source}#frame={int(row[cols.frame_index])}"
        chunk = _metadata(row, cols).get("chunk")
        if isinstance(chunk, int) and not isinstance(chunk, bool):
            return f"{source}#chunk={chunk}"
        return str(source)
    digest = hashlib.sha256(json.dumps([row.get(cols.text), row.get(cols.metadata)], default=str).encode())
    return f"row-{digest.hexdigest()[:32]}"


def _metadata(row: Mapping[str, Any], cols: ColumnMap) -> dict[str, Any]:
    raw = row.get(cols.metadata)
    value = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return dict(value) if isinstance(value, Mapping) else {}


def _image(row: Mapping[str, Any], cols: ColumnMap) -> tuple[bytes, str | None] | None:
    for name in cols.images:
        cell = row.get(name)
        if isinstance(cell, Mapping) and cell.get("data") is not None:
            return bytes(cell["data"]), cell.get("mime")
    return None


def row_to_node(row: Mapping[str, Any], cols: ColumnMap) -> BaseNode:
    """Rebuild the node stored in ``row`` (a stored-form row: JSON as text, images as structs)."""
    metadata = _metadata(row, cols)
    text = row.get(cols.text) or ""
    image = _image(row, cols)
    raw = row.get(cols.node)
    if raw:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else dict(raw)
        cls = _CLASSES.get(str(data.pop("class_name", "TextNode")), TextNode)
        data["metadata"] = metadata
        if issubclass(cls, TextNode):
            data["text"] = text
        if image is not None:
            b64 = base64.b64encode(image[0]).decode("ascii")
            if issubclass(cls, ImageNode):
                data["image"] = b64
                data["image_mimetype"] = data.get("image_mimetype") or image[1]
            elif cls is Node:
                resource = dict(data.get("image_resource") or {})
                resource["data"] = b64.encode("ascii")
                resource["mimetype"] = resource.get("mimetype") or image[1]
                data["image_resource"] = resource
        return cls.from_dict(data)
    return _ingested_node(row, cols, metadata, text, image)


def _ingested_node(row: Mapping[str, Any], cols: ColumnMap, metadata: dict[str, Any], text: str,
                   image: tuple[bytes, str | None] | None) -> BaseNode:
    """A row written by ``ds.ingest`` (or by hand): ImageNode when it has an image, else TextNode."""
    source = row.get(cols.source)
    timestamp = row.get(cols.timestamp)
    frame_index = row.get(cols.frame_index)
    for key, value in ((cols.source, source), (cols.timestamp, timestamp), (cols.frame_index, frame_index)):
        if value is not None:
            metadata.setdefault(key, value)
    if not text and source:
        name = os.path.basename(str(source))
        if timestamp is not None:
            text = f"frame at {format_timestamp(float(timestamp))} of {name}"
        elif image is not None:
            text = f"image {name}"
    ref = row.get(cols.ref_doc_id) or source
    relationships = {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=str(ref))} if ref else {}
    node_id = row_id(row, cols)
    if image is not None:
        return ImageNode(id_=node_id, text=text, metadata=metadata, relationships=relationships,
                         image=base64.b64encode(image[0]).decode("ascii"), image_mimetype=image[1])
    return TextNode(id_=node_id, text=text, metadata=metadata, relationships=relationships)


# --------------------------------------------------------------------------------------------- selecting rows


def ids_expr(node_ids: Sequence[str], cols: ColumnMap, schema: Mapping[str, Any]) -> Expr:
    """The rows whose node id (see :func:`row_id`) is one of ``node_ids``."""
    ids = list(dict.fromkeys(str(i) for i in node_ids))
    parts: list[Expr] = []
    has_id = cols.id in schema
    if has_id and ids:
        parts.append(col(cols.id).isin(ids))
    if cols.source in schema and ids:  # rows without an id (ingested): ids made from their source
        synthetic: list[Expr] = []
        plain = [i for i in ids if not _SYNTHETIC.match(i) and not i.startswith("row-")]
        if plain:
            whole_file: Expr = col(cols.source).isin(plain)
            if cols.frame_index in schema:
                whole_file = whole_file & col(cols.frame_index).is_null()
            if cols.metadata in schema:
                whole_file = whole_file & col(cols.metadata)["chunk"].is_null()
            synthetic.append(whole_file)
        synthetic += [e for e in (_synthetic_expr(i, cols, schema) for i in ids) if e is not None]
        if synthetic:
            any_synthetic = _or(synthetic)
            parts.append(col(cols.id).is_null() & any_synthetic if has_id else any_synthetic)
    return _or(parts) if parts else lit(False)


def _or(parts: Sequence[Expr]) -> Expr:
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out


def _synthetic_expr(node_id: str, cols: ColumnMap, schema: Mapping[str, Any]) -> Expr | None:
    """The row of a ``<source>#frame=<i>`` or ``<source>#chunk=<n>`` id (None for other ids)."""
    m = _SYNTHETIC.match(node_id)
    if m is None:
        return None
    source, n = m.group("source"), int(m.group("n"))
    if m.group("kind") == "frame":
        return (col(cols.source) == source) & (col(cols.frame_index) == n) if cols.frame_index in schema else None
    if cols.metadata not in schema:
        return None
    chunk = (col(cols.source) == source) & (col(cols.metadata)["chunk"] == n)
    return chunk & col(cols.frame_index).is_null() if cols.frame_index in schema else chunk


def ref_doc_expr(ref_doc_ids: Sequence[str], cols: ColumnMap, schema: Mapping[str, Any]) -> Expr:
    """The rows whose ``ref_doc_id`` is one of ``ref_doc_ids`` (ingested rows: their source)."""
    refs = [str(r) for r in ref_doc_ids]
    if not refs:
        return lit(False)
    parts: list[Expr] = []
    if cols.ref_doc_id in schema:
        parts.append(col(cols.ref_doc_id).isin(refs))
    if cols.source in schema:
        by_source: Expr = col(cols.source).isin(refs)
        if cols.ref_doc_id in schema:
            by_source = col(cols.ref_doc_id).is_null() & by_source
        if cols.node in schema:
            by_source = col(cols.node).is_null() & by_source
        parts.append(by_source)
    if not parts:
        return lit(False)
    return parts[0] if len(parts) == 1 else parts[0] | parts[1]
