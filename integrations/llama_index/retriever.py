"""``MultimodalStoreRetriever``: text and image (or video frame) nodes from one store.

Example:
    >>> from multimodal_store.embeddings import CLIPEmbedder
    >>> clip = CLIPEmbedder("openai/clip-vit-base-patch32")                          # doctest: +SKIP
    >>> kb = mms.open("./data/kb"); kb.ingest("./media", image_embedder=clip)        # doctest: +SKIP
    >>> retriever = MultimodalStoreRetriever(MultimodalStoreVectorStore(kb), clip)   # doctest: +SKIP
    >>> retriever.retrieve("a red car")  # text chunks + images / frames             # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from llama_index.core.base.base_multi_modal_retriever import MultiModalRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.schema import ImageNode, NodeWithScore, QueryBundle, QueryType
from llama_index.core.vector_stores.types import MetadataFilters, VectorStoreQuery, VectorStoreQueryMode

from .store import MultimodalStoreVectorStore

__all__ = ["MultimodalStoreRetriever"]

T = TypeVar("T")


def _vector(values: Any) -> list[float]:
    arr = np.asarray(values, dtype=np.float32)
    return [float(x) for x in (arr[0] if arr.ndim == 2 else arr)]


class _Towers:
    """A text and an image encoder from either embedder family.

    * multimodal-store embedders (``encode_text`` / ``encode_image``, e.g. ``CLIPEmbedder``);
      ``encode_query`` is preferred for text when present;
    * LlamaIndex embeddings (``get_query_embedding``; ``MultiModalEmbedding`` also
      ``get_image_embedding``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    def text(self, query: str) -> list[float]:
        m = self.model
        for name in ("encode_query", "encode_text"):
            fn = getattr(m, name, None)
            if callable(fn):
                return _vector(fn([query]))
        if callable(getattr(m, "get_query_embedding", None)):
            return _vector(m.get_query_embedding(query))
        raise TypeError(f"{type(m).__name__} cannot embed text (no encode_text / get_query_embedding)")

    def image(self, image: Any) -> list[float]:
        m = self.model
        if isinstance(image, ImageNode):
            image = image.resolve_image()
        if callable(getattr(m, "encode_image", None)):
            if isinstance(image, io.BytesIO):
                image = image.getvalue()
            return _vector(m.encode_image([image]))
        if callable(getattr(m, "get_image_embedding", None)):
            return _vector(m.get_image_embedding(_llama_image(image)))
        raise TypeError(f"{type(m).__name__} cannot embed images (no encode_image / get_image_embedding)")


def _llama_image(image: Any) -> Any:
    """LlamaIndex's ImageType (a path string or a BytesIO of encoded bytes)."""
    if isinstance(image, (str, io.BytesIO)):
        return image
    if isinstance(image, os.PathLike):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(image))
    from multimodal_store.media.images import encode_image

    return io.BytesIO(encode_image(image).data)


class MultimodalStoreRetriever(MultiModalRetriever):
    """Retrieve text nodes and image / video-frame nodes from a :class:`MultimodalStoreVectorStore`.

    Args:
        vector_store: the store (text rows and image rows may share it, as after ``ds.ingest``).
        embed_model: a CLIP-style embedder: ``encode_text`` / ``encode_image`` (e.g.
            :class:`multimodal_store.embeddings.CLIPEmbedder`) or a LlamaIndex
            ``MultiModalEmbedding``. Its text tower embeds queries for text-to-image search,
            its image tower the query images of image-to-image search.
        image_vector_store: a separate store for images (default: ``vector_store``).
        text_embed_model: embeds queries for text retrieval (default: ``embed_model``'s text
            tower); any embedder with ``encode_text`` or a LlamaIndex ``BaseEmbedding``.
        text_embedding_column, image_embedding_column: the embedding columns searched for text
            and for images (default: each store's embedding column). With ``ds.ingest``'s
            layout, ``text_embedding_column="text_embedding"`` goes with a ``text_embed_model``.
        similarity_top_k, image_similarity_top_k: how many text / image nodes to return.
        filters: LlamaIndex ``MetadataFilters`` applied to every search.
        vector_store_query_mode, mmr_threshold: ``VectorStoreQueryMode.MMR`` for diversity.

    ``retrieve(query)`` returns the text nodes (rows without an image) followed by the image
    and frame nodes (rows with one), each ranked by cosine similarity.
    """

    def __init__(
        self,
        vector_store: MultimodalStoreVectorStore,
        embed_model: Any,
        *,
        image_vector_store: MultimodalStoreVectorStore | None = None,
        text_embed_model: Any = None,
        text_embedding_column: str | None = None,
        image_embedding_column: str | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        image_similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        vector_store_query_mode: VectorStoreQueryMode | str = VectorStoreQueryMode.DEFAULT,
        mmr_threshold: float | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._store = vector_store
        self._image_store = image_vector_store or vector_store
        self._towers = _Towers(embed_model)
        self._text_towers = _Towers(text_embed_model) if text_embed_model is not None else self._towers
        self._text_column = text_embedding_column
        self._image_column = image_embedding_column
        self.similarity_top_k = similarity_top_k
        self.image_similarity_top_k = image_similarity_top_k
        self.filters = filters
        self._mode = VectorStoreQueryMode(vector_store_query_mode)
        self._mmr_threshold = mmr_threshold

    # ------------------------------------------------------------------------------ core

    def _search(self, store: MultimodalStoreVectorStore, vector: list[float], top_k: int, column: str | None,
                modality: str) -> list[NodeWithScore]:
        query = VectorStoreQuery(query_embedding=vector, similarity_top_k=top_k, filters=self.filters,
                                 embedding_field=column, mode=self._mode, mmr_threshold=self._mmr_threshold)
        result = store.query(query, modality=modality)
        nodes = list(result.nodes or [])
        sims: list[float | None] = [None] * len(nodes)
        if result.similarities:
            sims = [float(x) for x in result.similarities]
        return [NodeWithScore(node=n, score=s) for n, s in zip(nodes, sims, strict=True)]

    def _text_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = self._text_towers.text(query_bundle.query_str)
        return self._search(self._store, vector, self.similarity_top_k, self._text_column, "text")

    def _text_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = self._towers.text(query_bundle.query_str)
        return self._search(self._image_store, vector, self.image_similarity_top_k, self._image_column, "image")

    def _image_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        images = query_bundle.embedding_image
        if not images:
            raise ValueError("image_to_image_retrieve needs an image (a path, bytes, PIL image or QueryBundle.image_path)")
        vector = self._towers.image(images[0])
        return self._search(self._image_store, vector, self.image_similarity_top_k, self._image_column, "image")

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        out: list[NodeWithScore] = []
        seen: set[str] = set()
        for hit in [*self._text_retrieve(query_bundle), *self._text_to_image_retrieve(query_bundle)]:
            if hit.node.node_id not in seen:
                seen.add(hit.node.node_id)
                out.append(hit)
        return out

    # ------------------------------------------------------------------------------ public API

    @staticmethod
    def _bundle(query: QueryType) -> QueryBundle:
        return QueryBundle(query_str=query) if isinstance(query, str) else query

    def text_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Text nodes (rows without an image) nearest to a text query."""
        return self._text_retrieve(self._bundle(str_or_query_bundle))

    def text_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        """Image and video-frame nodes nearest to a text query (through the CLIP text tower)."""
        return self._text_to_image_retrieve(self._bundle(str_or_query_bundle))

    def image_to_image_retrieve(self, str_or_query_bundle: QueryType | bytes | Any) -> list[NodeWithScore]:
        """Image and frame nodes nearest to an image: a path, a ``QueryBundle`` with ``image_path``,
        encoded bytes, a PIL image or an ``ImageNode``."""
        if isinstance(str_or_query_bundle, QueryBundle):
            return self._image_to_image_retrieve(str_or_query_bundle)
        if isinstance(str_or_query_bundle, str):
            return self._image_to_image_retrieve(QueryBundle(query_str="", image_path=str_or_query_bundle))
        vector = self._towers.image(str_or_query_bundle)
        return self._search(self._image_store, vector, self.image_similarity_top_k, self._image_column, "image")

    # ------------------------------------------------------------------------------ async

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self._run(self._retrieve, query_bundle)

    async def _atext_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self._run(self._text_to_image_retrieve, query_bundle)

    async def _aimage_to_image_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await self._run(self._image_to_image_retrieve, query_bundle)

    async def atext_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await self._run(self.text_retrieve, str_or_query_bundle)

    async def atext_to_image_retrieve(self, str_or_query_bundle: QueryType) -> list[NodeWithScore]:
        return await self._run(self.text_to_image_retrieve, str_or_query_bundle)

    async def aimage_to_image_retrieve(self, str_or_query_bundle: QueryType | bytes | Any) -> list[NodeWithScore]:
        return await self._run(self.image_to_image_retrieve, str_or_query_bundle)
