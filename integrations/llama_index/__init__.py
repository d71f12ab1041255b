"""LlamaIndex integration: a vector store, a multimodal retriever and a multimodal query engine.

Needs ``llama-index-core`` (``pip install 'multimodal-store[llama-index]'``).

* :class:`MultimodalStoreVectorStore` — a ``BasePydanticVectorStore`` keeping text, image and
  video-frame nodes, their embeddings, images and metadata in one dataset (usable as the text
  and the image store of ``MultiModalVectorStoreIndex``, or with
  ``VectorStoreIndex.from_vector_store``); also wraps datasets filled by ``ds.ingest``.
* :func:`filters_to_expr` — LlamaIndex ``MetadataFilters`` as a store expression.
* :class:`MultimodalStoreRetriever` — text, text-to-image and image-to-image retrieval from one
  store with a CLIP-style embedder.
* :func:`build_multimodal_query_engine` — a query engine that sends the retrieved images (and
  video frames) to a multimodal LLM as image blocks.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "multimodal_store.integrations.llama_index needs llama-index-core; "
        "install it with: pip install 'multimodal-store[llama-index]'"
    ) from exc

from .filters import filters_to_expr
from .mmr import mmr_select
from .nodes import node_to_row, row_to_node
from .query_engine import MultimodalQueryEngine, build_multimodal_query_engine
from .retriever import MultimodalStoreRetriever
from .store import MultimodalStoreVectorStore

__all__ = [
    "MultimodalQueryEngine",
    "MultimodalStoreRetriever",
    "MultimodalStoreVectorStore",
    "build_multimodal_query_engine",
    "filters_to_expr",
    "mmr_select",
    "node_to_row",
    "row_to_node",
]
