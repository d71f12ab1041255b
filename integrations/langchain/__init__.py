"""LangChain integration: a multimodal vector store, a retriever and multimodal prompt helpers.

Needs ``langchain-core`` (``pip install 'multimodal-store[langchain]'``).

Example:
    >>> from multimodal_store.integrations.langchain import MultimodalStoreVectorStore  # doctest: +SKIP
    >>> store = MultimodalStoreVectorStore("./kb", embeddings, image_embedding=clip)     # doctest: +SKIP
    >>> store.add_images(["cat.jpg"], metadatas=[{"caption": "a cat"}])                  # doctest: +SKIP
"""

from __future__ import annotations

from multimodal_store.integrations.langchain.filters import filter_to_expr
from multimodal_store.integrations.langchain.messages import (
    build_multimodal_message,
    multimodal_prompt,
    to_content_blocks,
)
from multimodal_store.integrations.langchain.retriever import MultimodalStoreRetriever
from multimodal_store.integrations.langchain.vectorstore import MultimodalStoreVectorStore

__all__ = [
    "MultimodalStoreRetriever",
    "MultimodalStoreVectorStore",
    "build_multimodal_message",
    "filter_to_expr",
    "multimodal_prompt",
    "to_content_blocks",
]
