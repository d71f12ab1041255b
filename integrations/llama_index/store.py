"""``MultimodalStoreVectorStore``: a LlamaIndex vector store on a multimodal-store dataset.

Example:
    >>> from multimodal_store.integrations.llama_index import MultimodalStoreVectorStore
    >>> from llama_index.core import StorageContext, VectorStoreIndex
    >>> store = MultimodalStoreVectorStore("./data/kb")                      # doctest: +SKIP
    >>> index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(vector_store=store))  # doctest: +SKIP

Every write (``add``, ``delete``, ``delete_nodes``, ``clear``) is committed as a new dataset
version at once (``commit_on_write=True``), so another process opening the same url sees it;
reads move the handle to the latest committed version first. With ``commit_on_write=False``
writes stay on this handle until :meth:`MultimodalStoreVectorStore.persist` commits them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import BaseNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

import multimodal_store as mms
from multimodal_store import col, lit, types
from multimodal_store.expr import Expr, func

from .filters import filters_to_expr
from .mmr import mmr_select
from .nodes import ColumnMap, ids_expr, node_to_row, ref_doc_expr, row_id, row_to_node

__all__ = ["MultimodalStoreVectorStore"]

T = TypeVar("T")

_MODALITIES = ("image", "text")


def _and(parts: Sequence[Expr | None]) -> Expr | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    out = present[0]
    for p in present[1:]:
        out = out & p
    return out


class MultimodalStoreVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store keeping nodes, embeddings and images in one dataset.

    Args:
        uri_or_dataset: a dataset url (local path, ``mem://name``, ``s3://...``; created when
            missing) or an open :class:`multimodal_store.Dataset`.
        text_column, embedding_column, metadata_column, id_column, node_column,
            ref_doc_id_column: where each part of a node lives. ``embedding_column`` defaults
            to ``"embedding"`` if present, else ``"clip_embedding"`` (the column
            ``ds.ingest`` fills), else the dataset's only embedding column, else
            ``"embedding"`` (created on the first add).
        image_columns: Image columns read into ``ImageNode`` s; the first one is written.
            Defaults to ``("image", "video_frame")``, which fits both this store's layout
            and the one of ``ds.ingest``.
        embedding_dtype: storage type of a new embedding column (float32, float16, bfloat16).
        commit_on_write: commit after every write (default) so other processes see it.
        mmr_prefetch_factor: MMR reranks ``factor * similarity_top_k`` nearest candidates.

    Nodes are upserted by id; the embedding column is created on the first ``add`` with the
    size of the first embedding. ``TextNode``, ``ImageNode``, ``IndexNode`` and ``Node`` come
    back as their own class. Image bytes (from ``ImageNode.image`` base64, ``image_path`` or
    a local / ``file://`` / ``data:`` ``image_url``) are stored once, in the Image column, and
    come back byte-identical in ``ImageNode.image`` (base64) with ``image_mimetype``.

    Rows written by ``ds.ingest`` (images, video frames, text chunks) come back as
    ``ImageNode`` / ``TextNode`` with their text (caption, or ``"frame at 00:12 of clip.mp4"``)
    and metadata (plus ``source``, ``timestamp``, ``frame_index`` for frames); their ids are
    ``"<source>#frame=<i>"``, ``"<source>#chunk=<n>"`` or ``"<source>"`` and their
    ``ref_doc_id`` is the source path, so ``delete(source)`` removes a whole file.

    ``query`` supports every LlamaIndex ``FilterOperator`` with ``SimpleVectorStore``
    semantics (see :mod:`.filters`), nested filters, ``doc_ids``, ``node_ids``,
    ``query_embedding=None`` (filter only, dataset order), and the default and MMR modes.
    Extra keyword ``modality="image"`` / ``"text"`` keeps rows with / without an image;
    ``VectorStoreQuery.embedding_field`` picks another embedding column. An empty
    ``node_ids`` / ``doc_ids`` list is no restriction (``MultiModalVectorStoreIndex`` passes
    ``[]`` when the store keeps the nodes). Similarities are cosine similarities (also in
    MMR mode, where LlamaIndex's own store returns the MMR scores).
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False

    uri: str
    text_column: str = "text"
    embedding_column: str | None = None
    image_columns: tuple[str, ...] = ("image", "video_frame")
    metadata_column: str = "metadata"
    id_column: str = "id"
    node_column: str = "node"
    ref_doc_id_column: str = "ref_doc_id"
    embedding_dtype: str = "float32"
    commit_on_write: bool = True
    mmr_prefetch_factor: int = 4

    _ds: mms.Dataset = PrivateAttr()
    _lock: Any = PrivateAttr()

    def __init__(self, uri_or_dataset: str | os.PathLike[str] | mms.Dataset | None = None, **options: Any) -> None:
        uri = options.pop("uri", None)  # as serialised by to_dict()
        if uri_or_dataset is None:
            uri_or_dataset = uri or f"mem://llama-index-{uuid.uuid4().hex}"
        ds = uri_or_dataset if isinstance(uri_or_dataset, mms.Dataset) else mms.open(uri_or_dataset)
        super().__init__(uri=ds.url, **options)  # type: ignore[call-arg]
        self._ds = ds
        self._lock = threading.RLock()

    @classmethod
    def class_name(cls) -> str:
        return "MultimodalStoreVectorStore"

    # ------------------------------------------------------------------------------ properties

    @property
    def client(self) -> mms.Dataset:
        """The underlying :class:`multimodal_store.Dataset`."""
        return self._ds

    @property
    def dataset(self) -> mms.Dataset:
        """The underlying :class:`multimodal_store.Dataset`."""
        return self._ds

    @property
    def columns(self) -> ColumnMap:
        """The resolved column mapping."""
        return ColumnMap(
            id=self.id_column, text=self.text_column, embedding=self._embedding_name(),
            images=tuple(self.image_columns), metadata=self.metadata_column, node=self.node_column,
            ref_doc_id=self.ref_doc_id_column,
        )

    def _embedding_name(self) -> str:
        if self.embedding_column:
            return self.embedding_column
        schema = self._ds.schema
        for name in ("embedding", "clip_embedding"):
            if isinstance(schema.get(name), types.Embedding):
                return name
        found = [n for n, t in schema.items() if isinstance(t, types.Embedding)]
        return found[0] if len(found) == 1 else "embedding"

    # ------------------------------------------------------------------------------ helpers

    def _refresh(self) -> None:
        """See what other writers committed (only a clean, writable handle moves)."""
        ds = self._ds
        if not ds.read_only and not ds.has_uncommitted_changes:
            ds.refresh()

    def _commit(self, message: str) -> None:
        if self.commit_on_write:
            self._ds.commit(message)

    def _ensure_schema(self, dim: int) -> None:
        ds, cols = self._ds, self.columns
        wanted: dict[str, types.ColumnType] = {
            cols.id: types.Text(), cols.text: types.Text(),
            cols.embedding: types.Embedding(dim, self.embedding_dtype),
            cols.metadata: types.Json(), cols.node: types.Json(), cols.ref_doc_id: types.Text(),
            cols.content_type: types.Text(),
        }
        if cols.images:
            wanted[cols.images[0]] = types.Image()
        schema = ds.schema
        have = schema.get(cols.embedding)
        if isinstance(have, types.Embedding) and have.dim != dim:
            raise ValueError(
                f"embedding size mismatch: column {cols.embedding!r} of {ds.url} holds vectors of size "
                f"{have.dim}, got size {dim}; use the embedding model the store was built with "
                "(or another dataset / embedding_column)"
            )
        for name, ctype in wanted.items():
            if name not in schema:
                ds.add_column(name, ctype)
            elif type(schema[name]) is not type(ctype):
                raise ValueError(f"column {name!r} of {ds.url} is {schema[name]!r}, expected {ctype!r}")

    def _filter_expr(self, filters: MetadataFilters | None) -> Expr | None:
        if filters is None or not filters.filters:
            return None
        schema = self._ds.schema
        if self.metadata_column not in schema:
            raise ValueError(f"cannot filter on metadata: {self._ds.url} has no {self.metadata_column!r} column")
        cols = self.columns
        ref = cols.ref_doc_id if cols.ref_doc_id in schema else None
        source = cols.source if cols.source in schema else None
        return filters_to_expr(filters, cols.metadata, ref, source)

    def _modality_expr(self, modality: str | None) -> Expr | None:
        if modality is None:
            return None
        if modality not in _MODALITIES:
            raise ValueError(f"modality must be one of {_MODALITIES} or None, got {modality!r}")
        schema = self._ds.schema
        parts: list[Expr] = [col(c).is_not_null() for c in self.image_columns if c in schema]
        if self.columns.content_type in schema:  # image nodes whose image is only a remote url
            parts.append(func("coalesce", col(self.columns.content_type).isin(["image", "video"]), lit(False)))
        if not parts:
            return lit(modality == "text")
        has_image = _or(parts)
        return has_image if modality == "image" else ~has_image

    def _where(self, node_ids: Sequence[str] | None, filters: MetadataFilters | None,
               doc_ids: Sequence[str] | None = None, modality: str | None = None,
               empty_is_all: bool = False) -> Expr | None:
        cols, schema = self.columns, self._ds.schema
        ids = None
        if node_ids is not None and (node_ids or not empty_is_all):
            ids = ids_expr(node_ids, cols, schema)
        docs = None
        if doc_ids is not None and (doc_ids or not empty_is_all):
            docs = ref_doc_expr(doc_ids, cols, schema)
        return _and([ids, docs, self._filter_expr(filters), self._modality_expr(modality)])

    def _rows(self, where: Expr | None, extra: Sequence[str] = (), vector: Any = None,
              column: str | None = None, limit: int | None = None) -> tuple[list[dict[str, Any]], np.ndarray | None]:
        ds = self._ds
        select = [*self.columns.readable(ds.schema), *extra]
        builder = ds.search(vector, column=column, metric="cosine").where(where).select(select).limit(limit)
        results = builder.to_results()
        return results.to_arrow().to_pylist(), results.scores

    def _is_empty(self) -> bool:
        return len(self._ds.schema) == 0 or len(self._ds) == 0

    # ------------------------------------------------------------------------------ writes

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert ``nodes`` (by node id) and commit; returns their ids."""
        if not nodes:
            return []
        with self._lock:
            self._refresh()
            sizes = {len(n.embedding) for n in nodes if n.embedding is not None}
            if len(sizes) > 1:
                raise ValueError(f"nodes have embeddings of different sizes {sorted(sizes)}; one store holds one size")
            dim = sizes.pop() if sizes else 0
            rows = [node_to_row(n, self.columns) for n in nodes]  # every error before anything is staged
            clean = not self._ds.has_uncommitted_changes
            try:
                self._ensure_schema(dim)
                schema = self._ds.schema
                self._ds.upsert([{k: v for k, v in r.items() if k in schema} for r in rows], on=self.id_column)
            except Exception:
                if clean:
                    self._ds.rollback()
                raise
            self._commit(f"llama-index: add {len(rows)} nodes")
        return [n.node_id for n in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node whose ``ref_doc_id`` is ``ref_doc_id`` (ingested rows: their source)."""
        with self._lock:
            self._refresh()
            if self._is_empty():
                return
            if self._ds.delete(ref_doc_expr([ref_doc_id], self.columns, self._ds.schema)):
                self._commit(f"llama-index: delete ref_doc_id {ref_doc_id}")

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        """Delete the nodes with these ids and/or matching ``filters`` (neither: every node, as
        ``SimpleVectorStore`` does)."""
        with self._lock:
            self._refresh()
            if self._is_empty():
                return
            where = self._where(node_ids, filters)
            if self._ds.delete(lit(True) if where is None else where):
                self._commit("llama-index: delete nodes")

    def clear(self) -> None:
        """Delete every row (the columns stay) and commit."""
        with self._lock:
            self._refresh()
            if self._is_empty():
                return
            self._ds.delete(lit(True))
            self._commit("llama-index: clear")

    def persist(self, persist_path: str | None = None, fs: Any = None) -> None:
        """Commit pending writes (only needed with ``commit_on_write=False``); the data lives at :attr:`uri`."""
        with self._lock:
            if self._ds.has_uncommitted_changes:
                self._ds.commit("llama-index: persist")

    # ------------------------------------------------------------------------------ reads

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                  **kwargs: Any) -> list[BaseNode]:
        """The nodes with these ids (in that order) and/or matching ``filters``; neither: all."""
        with self._lock:
            self._refresh()
            if self._is_empty():
                return []
            rows, _ = self._rows(self._where(node_ids, filters))
            nodes = [row_to_node(r, self.columns) for r in rows]
        if node_ids is not None:
            by_id = {n.node_id: n for n in nodes}
            return [by_id[i] for i in dict.fromkeys(node_ids) if i in by_id]
        return nodes

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nearest nodes to ``query.query_embedding`` among those passing its filters.

        Keyword arguments: ``modality`` (``"image"`` / ``"text"``), ``mmr_threshold`` (when the
        query has none), ``mmr_prefetch_k`` (MMR candidates).
        """
        mode = query.mode
        if mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise ValueError(f"MultimodalStoreVectorStore supports the default and mmr query modes, not {mode.value!r}")
        k = int(query.similarity_top_k)
        with self._lock:
            self._refresh()
            if self._is_empty() or k <= 0:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            where = self._where(query.node_ids, query.filters, query.doc_ids, kwargs.get("modality"),
                                empty_is_all=True)
            column = query.embedding_field or self.columns.embedding
            if query.query_embedding is None:
                rows, _ = self._rows(where, limit=k)
                nodes = [row_to_node(r, self.columns) for r in rows]
                return VectorStoreQueryResult(nodes=nodes, similarities=None, ids=[n.node_id for n in nodes])
            if column not in self._ds.schema:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            vector = np.asarray(query.query_embedding, dtype=np.float32)
            if mode == VectorStoreQueryMode.MMR:
                fetch = int(kwargs.get("mmr_prefetch_k") or max(k, k * self.mmr_prefetch_factor))
                rows, scores = self._rows(where, [column], vector, column, fetch)
                threshold = query.mmr_threshold if query.mmr_threshold is not None else kwargs.get("mmr_threshold")
                ctype = self._ds.schema[column]
                embeddings = np.asarray([ctype.from_arrow(r[column]) for r in rows], dtype=np.float32)
                order = mmr_select(vector, embeddings, k, threshold)
                rows = [rows[i] for i in order]
                sims = [] if scores is None else [float(scores[i]) for i in order]
            else:
                rows, scores = self._rows(where, [], vector, column, k)
                sims = [] if scores is None else [float(s) for s in scores]
            nodes = [row_to_node(r, self.columns) for r in rows]
        return VectorStoreQueryResult(nodes=nodes, similarities=sims, ids=[n.node_id for n in nodes])

    def node_ids(self) -> list[str]:
        """Every node id in the store, in row order."""
        with self._lock:
            self._refresh()
            if self._is_empty():
                return []
            rows, _ = self._rows(None)
        cols = self.columns
        return [row_id(r, cols) for r in rows]

    # ------------------------------------------------------------------------------ async

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a sync method in a worker thread (the store serialises access with a lock)."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await self._run(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await self._run(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        await self._run(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await self._run(self.get_nodes, node_ids, filters)

    async def aclear(self) -> None:
        await self._run(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await self._run(self.query, query, **kwargs)


def _or(parts: list[Expr]) -> Expr:
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out
