"""A LangChain retriever over :class:`MultimodalStoreVectorStore` (text and image documents).

Image documents come back like text ones (``page_content`` = caption, ``metadata`` exactly
as added); their bytes stay in the store: :meth:`MultimodalStoreRetriever.get_images`
fetches them, and :func:`~multimodal_store.integrations.langchain.messages.build_multimodal_message`
turns documents plus images into a chat message.

Example:
    >>> retriever = MultimodalStoreRetriever(vectorstore=store, k=4)          # doctest: +SKIP
    >>> docs = retriever.invoke("a red car", filter={"year": {"$gte": 2020}})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from multimodal_store.integrations.langchain.vectorstore import MultimodalStoreVectorStore

__all__ = ["MultimodalStoreRetriever"]


class MultimodalStoreRetriever(BaseRetriever):
    """Retrieve the ``k`` documents (text or image) nearest to a query text.

    Fields (each can also be given per call as a keyword of ``invoke``):
        k: number of documents.
        filter: a metadata filter dict (see ``filters``) or a store expression.
        search_type: ``"similarity"`` or ``"mmr"`` (maximal marginal relevance over the
            ``fetch_k`` nearest, weighted by ``lambda_mult``).
        score_threshold: with ``"similarity"``, drop documents whose relevance (0..1) is
            below it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    vectorstore: MultimodalStoreVectorStore
    k: int = 4
    filter: Any = None
    search_type: Literal["similarity", "mmr"] = "similarity"
    fetch_k: int = 20
    lambda_mult: float = 0.5
    score_threshold: float | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        opts = {name: kwargs.pop(name, getattr(self, name))
                for name in ("k", "filter", "search_type", "fetch_k", "lambda_mult", "score_threshold")}
        if kwargs:
            raise TypeError(f"unexpected retriever argument(s): {', '.join(sorted(kwargs))}")
        store = self.vectorstore
        if opts["search_type"] == "mmr":
            return store.max_marginal_relevance_search(
                query, k=opts["k"], fetch_k=opts["fetch_k"], lambda_mult=opts["lambda_mult"], filter=opts["filter"]
            )
        if opts["search_type"] != "similarity":
            raise ValueError(f"search_type must be 'similarity' or 'mmr', got {opts['search_type']!r}")
        if opts["score_threshold"] is None:
            return store.similarity_search(query, k=opts["k"], filter=opts["filter"])
        scored = store.similarity_search_with_relevance_scores(
            query, k=opts["k"], filter=opts["filter"], score_threshold=opts["score_threshold"]
        )
        return [doc for doc, _ in scored]

    def get_images(self, documents: Sequence[Document | str]) -> dict[str, tuple[bytes, str]]:
        """``id -> (encoded bytes, mime type)`` for the image documents among ``documents``."""
        ids = [d if isinstance(d, str) else d.id for d in documents]
        return self.vectorstore.get_images([i for i in ids if i is not None])
