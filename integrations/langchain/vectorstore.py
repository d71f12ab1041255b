"""A LangChain ``VectorStore`` over a multimodal-store dataset (text and image rows).

Layout: one row per document with the columns ``id`` (Text, the document id), ``text``
(Text, ``page_content``), ``metadata`` (Json, ``Document.metadata`` exactly as given),
``embedding`` (Embedding of the model's size) and ``image`` (Image, the encoded bytes of
image rows, null for text rows). The columns are created on the first add, when the
embedding size is known; an existing dataset with these columns is used as is.
Metadata round-trips through JSON: str/int/float/bool/None, lists and nested dicts come
back with their types; tuples come back as lists and non-string keys as strings.

Every write (add, delete) is committed at once as a new version of the dataset, so other
processes opening the same path see it; reads move the handle to the latest committed
version first. A dataset handle passed in with uncommitted changes of its own has them
committed along with the first write.

Example:
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> store = MultimodalStoreVectorStore("mem://lc-doc", DeterministicFakeEmbedding(size=8))
    >>> ids = store.add_texts(["a cat", "a dog"], metadatas=[{"year": 2020}, {"year": 1999}])
    >>> [d.page_content for d in store.similarity_search("a cat", k=1, filter={"year": {"$gt": 2000}})]
    ['a cat']
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

import multimodal_store as mms
from multimodal_store import col, lit, types
from multimodal_store.expr import Expr
from multimodal_store.integrations.langchain.filters import filter_to_expr

__all__ = ["Filter", "ImageInput", "MultimodalStoreVectorStore"]

#: A metadata filter: a LangChain/Chroma style dict (see ``filters``) or a store expression.
Filter = Mapping[str, Any] | Expr | None
#: An image to add or search with: a path, encoded bytes, a PIL image or a uint8 array.
ImageInput = Any

_METRICS = ("cosine", "ip", "l2")


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def _similarity_relevance(score: float) -> float:
    """Cosine similarity (or the inner product of unit vectors) in [-1, 1] -> [0, 1]."""
    return _clip01((1.0 + score) / 2.0)


def _l2_relevance(distance: float) -> float:
    """Euclidean distance of unit vectors (0..2) -> the same [0, 1] scale as cosine."""
    return _clip01(1.0 - distance * distance / 4.0)


class MultimodalStoreVectorStore(VectorStore):
    """LangChain vector store backed by a multimodal-store dataset.

    Args:
        uri_or_dataset: a dataset url/path (``"./kb"``, ``"mem://name"``, ``"s3://..."``;
            created if absent) or an open :class:`multimodal_store.Dataset`.
        embedding: the LangChain ``Embeddings`` for texts and queries.
        image_embedding: anything with ``embed_image(uris)`` (e.g.
            ``as_langchain_embeddings(CLIPEmbedder(...))``) embedding images into the same
            space; defaults to ``embedding`` when that has ``embed_image``.
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"``. Scores returned by the
            ``*_with_score`` methods are the store's: cosine similarity / inner product
            (higher is better) or L2 distance (lower is better).
        relevance_score_fn: maps a score to a [0, 1] relevance (default: ``(1 + s) / 2`` for
            cosine and ip, ``1 - d**2 / 4`` for l2, i.e. exact for unit vectors).
        caption_key: metadata key whose string value is the ``page_content`` of image rows.
        id_column, text_column, metadata_column, embedding_column, image_column: column
            names, to use a dataset laid out differently.
    """

    def __init__(
        self,
        uri_or_dataset: str | os.PathLike[str] | mms.Dataset,
        embedding: Embeddings,
        *,
        image_embedding: Any = None,
        metric: str = "cosine",
        relevance_score_fn: Callable[[float], float] | None = None,
        caption_key: str = "caption",
        id_column: str = "id",
        text_column: str = "text",
        metadata_column: str = "metadata",
        embedding_column: str = "embedding",
        image_column: str = "image",
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {', '.join(_METRICS)}, got {metric!r}")
        self._ds = uri_or_dataset if isinstance(uri_or_dataset, mms.Dataset) else mms.open(uri_or_dataset)
        self.embedding = embedding
        if image_embedding is None and callable(getattr(embedding, "embed_image", None)):
            image_embedding = embedding
        if image_embedding is not None and not callable(getattr(image_embedding, "embed_image", None)):
            raise TypeError(f"image_embedding needs an embed_image(uris) method; got {type(image_embedding).__name__}")
        self.image_embedding = image_embedding
        self.metric = metric
        self.caption_key = caption_key
        self.override_relevance_score_fn = relevance_score_fn
        self._id, self._text, self._meta = id_column, text_column, metadata_column
        self._emb, self._image = embedding_column, image_column
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._ds.url!r}, embedding={type(self.embedding).__name__}, metric={self.metric!r})"

    # ------------------------------------------------------------------------------ basics

    @property
    def dataset(self) -> mms.Dataset:
        """The underlying dataset (query it with SQL or the builder for anything else)."""
        return self._ds

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    def __len__(self) -> int:
        with self._reading():
            return len(self._ds) if self._ready() else 0

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock:
            ds = self._ds
            if not ds.read_only and not ds.has_uncommitted_changes:
                ds.refresh()
            yield

    def _ready(self) -> bool:
        """Whether the columns exist (i.e. something was ever added)."""
        schema = self._ds.schema
        return all(c in schema for c in (self._id, self._text, self._meta, self._emb))

    def _ensure_schema(self, dim: int) -> None:
        schema = self._ds.schema
        if self._emb in schema:
            ctype = schema[self._emb]
            have = getattr(ctype, "dim", None)
            if have != dim:
                raise ValueError(
                    f"column {self._emb!r} of {self._ds.url} holds vectors of size {have}, "
                    f"but the embedding model gives size {dim}; use the model the store was built with"
                )
        wanted = [
            (self._id, types.Text()),
            (self._text, types.Text()),
            (self._meta, types.Json()),
            (self._emb, types.Embedding(dim)),
            (self._image, types.Image()),
        ]
        for name, ctype in wanted:
            if name not in schema:
                self._ds.add_column(name, ctype)

    def _write(self, rows: list[dict[str, Any]], dim: int, message: str) -> None:
        with self._lock:
            ds = self._ds
            if not ds.has_uncommitted_changes:
                ds.refresh()
            try:
                self._ensure_schema(dim)
                ds.upsert(rows, on=self._id)
                ds.commit(message)
            except BaseException:
                ds.rollback()
                raise

    @staticmethod
    def _ids_for(n: int, ids: Sequence[str | None] | None) -> list[str]:
        if ids is None:
            return [str(uuid.uuid4()) for _ in range(n)]
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} ids for {n} items")
        return [str(i) if i is not None else str(uuid.uuid4()) for i in ids]

    @staticmethod
    def _metadatas_for(n: int, metadatas: Sequence[Mapping[str, Any] | None] | None) -> list[dict[str, Any]]:
        if metadatas is None:
            return [{} for _ in range(n)]
        if len(metadatas) != n:
            raise ValueError(f"got {len(metadatas)} metadatas for {n} items")
        return [dict(m) if m is not None else {} for m in metadatas]

    @staticmethod
    def _matrix(vectors: Any, n: int, who: str) -> np.ndarray:
        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != n:
            raise ValueError(f"{who} returned vectors of shape {mat.shape} for {n} inputs")
        return mat

    # ------------------------------------------------------------------------------ writing

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and upsert texts: a row with the same id is replaced, never duplicated.

        Missing ids (``None``) are generated with uuid4. The write is committed.
        """
        texts = [str(t) for t in texts]
        n = len(texts)
        ids_ = self._ids_for(n, ids)
        metas = self._metadatas_for(n, metadatas)
        if n == 0:
            return []
        vectors = self._matrix(self.embedding.embed_documents(texts), n, "embed_documents")
        rows = [
            {self._id: i, self._text: t, self._meta: m, self._emb: v}
            for i, t, m, v in zip(ids_, texts, metas, vectors, strict=True)
        ]
        self._write(rows, vectors.shape[1], f"langchain: add {n} text document(s)")
        return ids_

    def add_images(
        self,
        uris_or_bytes: Sequence[ImageInput],
        metadatas: list[dict[str, Any]] | None = None,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed images with ``image_embedding`` and upsert them (bytes kept in the image column).

        Images are paths, encoded bytes, PIL images or uint8 arrays. ``page_content`` of an
        image document is ``metadata[caption_key]`` when it is a string, else ``""``; the
        metadata is stored exactly as given. Returns the ids (uuid4 where not given).
        """
        from multimodal_store.media.images import encode_image

        items = list(uris_or_bytes)
        n = len(items)
        ids_ = self._ids_for(n, ids)
        metas = self._metadatas_for(n, metadatas)
        if n == 0:
            return []
        stored = [i if isinstance(i, str | os.PathLike) else encode_image(i) for i in items]
        vectors = self._embed_images(items)
        rows = []
        for i, img, m, v in zip(ids_, stored, metas, vectors, strict=True):
            caption = m.get(self.caption_key)
            rows.append({self._id: i, self._text: caption if isinstance(caption, str) else "",
                         self._meta: m, self._emb: v, self._image: img})
        self._write(rows, vectors.shape[1], f"langchain: add {n} image document(s)")
        return ids_

    def _embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Vectors of images through ``image_embedding.embed_image``.

        Paths go through as strings. Other images go as encoded bytes when the embedder
        is one of ours (``as_langchain_embeddings``: it accepts bytes), else as temporary
        files, since LangChain's ``embed_image`` contract takes uris.
        """
        from multimodal_store.embeddings import supports_images
        from multimodal_store.media.images import encode_image

        emb = self.image_embedding
        if emb is None:
            raise ValueError(
                "this store has no image_embedding: pass image_embedding=... (anything with embed_image(uris), "
                "e.g. as_langchain_embeddings(CLIPEmbedder(...)))"
            )
        n = len(images)
        if supports_images(getattr(emb, "embedder", None)):
            args = [os.fspath(im) if isinstance(im, str | os.PathLike) else encode_image(im).data for im in images]
            return self._matrix(emb.embed_image(args), n, "embed_image")
        with tempfile.TemporaryDirectory(prefix="mmstore-lc-") as tmp:
            uris = []
            for k, im in enumerate(images):
                if isinstance(im, str | os.PathLike):
                    uris.append(os.fspath(im))
                    continue
                enc = encode_image(im)
                path = os.path.join(tmp, f"{k}.{enc.mime.split('/')[-1].replace('jpeg', 'jpg')}")
                with open(path, "wb") as f:
                    f.write(enc.data)
                uris.append(path)
            return self._matrix(emb.embed_image(uris), n, "embed_image")

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete the documents with these ids (unknown ids are ignored); ``None`` deletes all.

        The deletion is committed. Returns True.
        """
        with self._lock:
            ds = self._ds
            if not ds.has_uncommitted_changes:
                ds.refresh()
            if not self._ready() or (ids is not None and not ids):
                return True
            where = lit(True) if ids is None else col(self._id).isin([str(i) for i in ids])
            try:
                if ds.delete(where):
                    ds.commit(f"langchain: delete {'all' if ids is None else len(ids)} document(s)")
            except BaseException:
                ds.rollback()
                raise
        return True

    # ------------------------------------------------------------------------------ reading

    def _doc(self, row: Mapping[str, Any]) -> Document:
        metadata = row[self._meta]
        return Document(id=row[self._id], page_content=row[self._text] or "",
                        metadata=metadata if isinstance(metadata, dict) else {})

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order of ``ids``; unknown ids are skipped."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        with self._reading():
            if not wanted or not self._ready():
                return []
            res = (self._ds.search().where(col(self._id).isin(wanted))
                   .select([self._id, self._text, self._meta]).limit(None).to_results())
            found = {row[self._id]: self._doc(row) for row in res}
        return [found[i] for i in wanted if i in found]

    def get_images(self, ids: Sequence[str]) -> dict[str, tuple[bytes, str]]:
        """``id -> (encoded bytes, mime type)`` for the image documents among ``ids``."""
        wanted = list(dict.fromkeys(str(i) for i in ids))
        with self._reading():
            if not wanted or not self._ready() or self._image not in self._ds.schema:
                return {}
            table = (self._ds.search().where(col(self._id).isin(wanted) & ~col(self._image).is_null())
                     .select([self._id, self._image]).limit(None).to_results().to_arrow())
        out = {}
        for doc_id, value in zip(table.column(self._id).to_pylist(), table.column(self._image).to_pylist(),
                                 strict=True):
            if value and value.get("data") is not None:
                out[doc_id] = (value["data"], value.get("mime") or "application/octet-stream")
        return out

    def get_image(self, doc_id: str) -> tuple[bytes, str] | None:
        """``(encoded bytes, mime type)`` of an image document, None for text or unknown ids."""
        return self.get_images([doc_id]).get(str(doc_id))

    def _search(self, vector: Any, k: int, filter: Filter, *, with_embeddings: bool = False
                ) -> list[tuple[Document, float, np.ndarray | None]]:
        if k <= 0:
            return []
        where = filter if isinstance(filter, Expr) else filter_to_expr(filter, self._meta)
        columns = [self._id, self._text, self._meta] + ([self._emb] if with_embeddings else [])
        with self._reading():
            if not self._ready() or len(self._ds) == 0:
                return []
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
            res = (self._ds.search(query, column=self._emb, metric=self.metric).where(where)
                   .select(columns).limit(int(k)).to_results())
            scores = res.scores if res.scores is not None else np.zeros(len(res))
            return [(self._doc(row), float(s), row.get(self._emb)) for row, s in zip(res, scores, strict=True)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest to ``embedding`` with the store's score (see ``metric``), best first."""
        return [(d, s) for d, s, _ in self._search(embedding, k, filter)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _, _ in self._search(embedding, k, filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest to the query text with the store's score, best first."""
        if k <= 0:
            return []
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter)

    def similarity_search(self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter)]

    def similarity_search_by_image_with_score(
        self, image: ImageInput, k: int = 4, filter: Filter = None
    ) -> list[tuple[Document, float]]:
        """Documents (text or image) nearest to an image, embedded with ``image_embedding``."""
        if k <= 0:
            return []
        return self.similarity_search_with_score_by_vector(self._embed_images([image])[0], k, filter)

    def similarity_search_by_image(self, image: ImageInput, k: int = 4, filter: Filter = None) -> list[Document]:
        return [d for d, _ in self.similarity_search_by_image_with_score(image, k, filter)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        if self.override_relevance_score_fn is not None:
            return self.override_relevance_score_fn
        return _l2_relevance if self.metric == "l2" else _similarity_relevance

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Fetch the ``fetch_k`` nearest documents, then pick ``k`` of them by maximal marginal
        relevance (similarity to the query vs. to the ones already picked) on their stored
        embeddings."""
        if k <= 0:
            return []
        hits = self._search(embedding, max(fetch_k, k), filter, with_embeddings=True)
        if not hits:
            return []
        vectors = np.stack([np.asarray(v, dtype=np.float32) for _, _, v in hits])
        chosen = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32), vectors.tolist(),
                                            lambda_mult=lambda_mult, k=k)
        return [hits[i][0] for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        return self.max_marginal_relevance_search_by_vector(
            self.embedding.embed_query(query), k, fetch_k, lambda_mult, filter
        )

    # ------------------------------------------------------------------------------ construction

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        uri: str | os.PathLike[str] | mms.Dataset | None = None,
        **kwargs: Any,
    ) -> MultimodalStoreVectorStore:
        """A store at ``uri`` (default: a fresh in-memory ``mem://`` dataset) holding ``texts``.

        Other keyword arguments go to the constructor.
        """
        store = cls(uri if uri is not None else f"mem://langchain-{uuid.uuid4().hex}", embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
