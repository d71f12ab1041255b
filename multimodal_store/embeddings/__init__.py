"""Embedders: the :class:`Embedder` protocol, CLIP/SigLIP and sentence-transformer style text
models, adapters for LlamaIndex and LangChain, and tiny offline random models for demos.

Nothing heavy is imported here: torch and transformers load when a model is built
(``pip install 'multimodal-store[clip]'``).
"""

from __future__ import annotations

from multimodal_store.embeddings.base import (
    Embedder,
    ImageEncoder,
    LangChainEmbedder,
    LlamaIndexEmbedder,
    TextEncoder,
    as_langchain_embeddings,
    embed_images,
    embed_texts,
    from_langchain,
    from_llama_index,
    supports_images,
    supports_text,
)
from multimodal_store.embeddings.clip import CLIPEmbedder, SiglipEmbedder
from multimodal_store.embeddings.text import TextEmbedder
from multimodal_store.embeddings.tiny import build_tiny_clip, build_tiny_siglip

__all__ = [
    "CLIPEmbedder",
    "Embedder",
    "ImageEncoder",
    "LangChainEmbedder",
    "LlamaIndexEmbedder",
    "SiglipEmbedder",
    "TextEmbedder",
    "TextEncoder",
    "as_langchain_embeddings",
    "build_tiny_clip",
    "build_tiny_siglip",
    "embed_images",
    "embed_texts",
    "from_langchain",
    "from_llama_index",
    "supports_images",
    "supports_text",
]
