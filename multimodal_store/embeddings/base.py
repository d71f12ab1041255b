"""The embedder protocol, and adapters to and from LlamaIndex and LangChain embedding models.

An *embedder* turns texts and/or images into float32 matrices ``(n, dim)``. It has a ``dim``
and at least one of ``encode_text(texts)`` / ``encode_image(images)``: a text-only model
(:class:`~multimodal_store.embeddings.text.TextEmbedder`) simply has no ``encode_image``.
:class:`Embedder` is the protocol every embedder satisfies; :class:`TextEncoder` and
:class:`ImageEncoder` also name the method, for ``isinstance`` checks and type hints.

No LlamaIndex or LangChain import happens here: the adapters are duck-typed, and the
LangChain ``Embeddings`` subclass is created on first use.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from multimodal_store.media.images import EncodedImage, ImageLike, encode_image

__all__ = [
    "Embedder",
    "ImageEncoder",
    "LangChainEmbedder",
    "LlamaIndexEmbedder",
    "TextEncoder",
    "as_langchain_embeddings",
    "embed_images",
    "embed_texts",
    "from_langchain",
    "from_llama_index",
    "supports_images",
    "supports_text",
]


@runtime_checkable
class Embedder(Protocol):
    """Anything with a ``dim`` and ``encode_text`` and/or ``encode_image`` (see module doc)."""

    @property
    def dim(self) -> int:
        """Length of the vectors."""
        ...


@runtime_checkable
class TextEncoder(Embedder, Protocol):
    """An embedder of texts: ``encode_text(texts) -> float32 (len(texts), dim)``."""

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class ImageEncoder(Embedder, Protocol):
    """An embedder of images (paths, bytes, PIL, arrays): ``encode_image(images) -> (n, dim)``."""

    def encode_image(self, images: Sequence[ImageLike]) -> np.ndarray: ...


def supports_text(embedder: object) -> bool:
    """Whether ``embedder`` has a callable ``encode_text``."""
    return callable(getattr(embedder, "encode_text", None))


def supports_images(embedder: object) -> bool:
    """Whether ``embedder`` has a callable ``encode_image``."""
    return callable(getattr(embedder, "encode_image", None))


def _as_matrix(vectors: Any, n: int, who: str, normalize: bool = False) -> np.ndarray:
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and n == 1:
        arr = arr[None, :]
    if n == 0 and arr.size == 0:
        return arr.reshape(0, arr.shape[-1] if arr.ndim == 2 else 0)
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{who} returned an array of shape {arr.shape} for {n} inputs")
    if normalize:
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        arr = (arr / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return np.ascontiguousarray(arr, dtype=np.float32)


def embed_texts(embedder: object, texts: str | Sequence[str]) -> np.ndarray:
    """``embedder.encode_text`` with a clear TypeError when the embedder has none."""
    if not supports_text(embedder):
        raise TypeError(f"{type(embedder).__name__} cannot embed text (it has no encode_text)")
    batch = [texts] if isinstance(texts, str) else list(texts)
    return _as_matrix(embedder.encode_text(batch), len(batch), f"{type(embedder).__name__}.encode_text")  # type: ignore[attr-defined]


def embed_images(embedder: object, images: Sequence[ImageLike]) -> np.ndarray:
    """``embedder.encode_image`` with a clear TypeError when the embedder has none."""
    if not supports_images(embedder):
        raise TypeError(f"{type(embedder).__name__} cannot embed images (it has no encode_image)")
    batch = list(images)
    return _as_matrix(embedder.encode_image(batch), len(batch), f"{type(embedder).__name__}.encode_image")  # type: ignore[attr-defined]


def _texts(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else [str(t) for t in texts]


class _DimFromProbe:
    """``dim`` given, or found by embedding one short text on first use; and the batching
    the LlamaIndex and LangChain adapters share (:meth:`_encode_batch`)."""

    _dim: int | None
    normalize: bool

    def _probe(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._probe().shape[-1])
        return self._dim

    def _encode_batch(self, batch: list[Any], embed: Callable[[list[Any]], Any], who: str, *,
                      learn_dim: bool = True) -> np.ndarray:
        """``embed(batch)`` as a float32 ``(len(batch), dim)`` matrix (L2-normalised when
        ``self.normalize``); an empty batch gives ``(0, dim)`` without calling ``embed``.

        ``who`` names the wrapped method in shape errors. ``learn_dim`` records the vectors'
        length as ``dim`` (document and image vectors do; query vectors do not).
        """
        if not batch:
            return np.zeros((0, self.dim), np.float32)
        out = _as_matrix(embed(batch), len(batch), who, self.normalize)
        if learn_dim:
            self._dim = out.shape[1]
        return out


# --------------------------------------------------------------------------------------------- LlamaIndex


def _llama_image_arg(image: ImageLike) -> Any:
    """LlamaIndex's ImageType: a path string, or a BytesIO of encoded bytes."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(image))
    return io.BytesIO(encode_image(image).data)


class LlamaIndexEmbedder(_DimFromProbe):
    """A LlamaIndex ``BaseEmbedding`` as a text :class:`Embedder` (see :func:`from_llama_index`)."""

    def __init__(self, model: Any, *, dim: int | None = None, normalize: bool = False) -> None:
        self.model = model
        self.normalize = normalize
        self._dim = dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"

    def _probe(self) -> np.ndarray:
        return self.encode_text(["dimension probe"])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode_batch(_texts(texts), self.model.get_text_embedding_batch, "get_text_embedding_batch")

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Query-side vectors (``get_query_embedding``; models with instructions differ)."""
        return self._encode_batch(_texts(texts), lambda batch: [self.model.get_query_embedding(t) for t in batch],
                                  "get_query_embedding", learn_dim=False)


class LlamaIndexMultiModalEmbedder(LlamaIndexEmbedder):
    """A LlamaIndex ``MultiModalEmbedding`` (text and images) as an :class:`Embedder`."""

    def encode_image(self, images: Sequence[ImageLike]) -> np.ndarray:
        return self._encode_batch(
            list(images), lambda batch: self.model.get_image_embedding_batch([_llama_image_arg(im) for im in batch]),
            "get_image_embedding_batch",
        )


def from_llama_index(embed_model: Any, *, dim: int | None = None,
                     normalize: bool = False) -> LlamaIndexEmbedder:
    """Wrap a LlamaIndex embedding model as an :class:`Embedder`.

    ``encode_text`` calls ``get_text_embedding_batch``; when the model also has
    ``get_image_embedding_batch`` (a ``MultiModalEmbedding``), the result has an
    ``encode_image`` too (paths are passed as strings, other images as PNG/JPEG bytes in a
    ``BytesIO``). ``dim`` defaults to the length of one probe embedding, computed on first
    use. ``normalize=True`` L2-normalises the vectors. The wrapper also has
    ``encode_query`` (``get_query_embedding``).
    """
    if not callable(getattr(embed_model, "get_text_embedding_batch", None)):
        raise TypeError(
            f"expected a LlamaIndex embedding model with get_text_embedding_batch, got {type(embed_model).__name__}"
        )
    cls = (LlamaIndexMultiModalEmbedder
           if callable(getattr(embed_model, "get_image_embedding_batch", None)) else LlamaIndexEmbedder)
    return cls(embed_model, dim=dim, normalize=normalize)


# --------------------------------------------------------------------------------------------- LangChain


class LangChainEmbedder(_DimFromProbe):
    """A LangChain ``Embeddings`` as a text :class:`Embedder` (see :func:`from_langchain`)."""

    def __init__(self, embeddings: Any, *, dim: int | None = None, normalize: bool = False) -> None:
        self.embeddings = embeddings
        self.normalize = normalize
        self._dim = dim

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.embeddings).__name__})"

    def _probe(self) -> np.ndarray:
        return self.encode_text(["dimension probe"])

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode_batch(_texts(texts), self.embeddings.embed_documents, "embed_documents")

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Query-side vectors (``embed_query``; models with instructions differ)."""
        return self._encode_batch(_texts(texts), lambda batch: [self.embeddings.embed_query(t) for t in batch],
                                  "embed_query", learn_dim=False)


class LangChainMultiModalEmbedder(LangChainEmbedder):
    """A LangChain ``Embeddings`` with ``embed_image(uris)`` as a text+image :class:`Embedder`."""

    def encode_image(self, images: Sequence[ImageLike]) -> np.ndarray:
        return self._encode_batch(list(images), self._embed_image_files, "embed_image")

    def _embed_image_files(self, batch: list[ImageLike]) -> Any:
        """``embed_image(uris)`` of the images: paths as they are, others written to temporary files."""
        with tempfile.TemporaryDirectory(prefix="mmstore-img-") as tmp:
            uris: list[str] = []
            for i, im in enumerate(batch):
                if isinstance(im, (str, os.PathLike)):
                    uris.append(os.fspath(im))
                    continue
                enc = im if isinstance(im, EncodedImage) else encode_image(im)
                ext = enc.mime.split("/")[-1].replace("jpeg", "jpg")
                path = os.path.join(tmp, f"{i}.{ext}")
                with open(path, "wb") as f:
                    f.write(enc.data)
                uris.append(path)
            return self.embeddings.embed_image(uris)


def from_langchain(embeddings: Any, *, dim: int | None = None, normalize: bool = False) -> LangChainEmbedder:
    """Wrap a LangChain ``Embeddings`` as an :class:`Embedder`.

    ``encode_text`` calls ``embed_documents``, ``encode_query`` calls ``embed_query``; when
    the object has ``embed_image(uris)`` (as ``OpenCLIPEmbeddings`` does) the result has an
    ``encode_image`` too (images that are not paths are written to temporary files for it).
    ``dim`` defaults to the length of one probe embedding, computed on first use.
    """
    if not callable(getattr(embeddings, "embed_documents", None)):
        raise TypeError(f"expected a LangChain Embeddings with embed_documents, got {type(embeddings).__name__}")
    cls = LangChainMultiModalEmbedder if callable(getattr(embeddings, "embed_image", None)) else LangChainEmbedder
    return cls(embeddings, dim=dim, normalize=normalize)


_LC_CLASS: type | None = None


def _langchain_class() -> type:
    global _LC_CLASS
    if _LC_CLASS is not None:
        return _LC_CLASS
    try:
        from langchain_core.embeddings import Embeddings
    except ImportError as exc:
        raise ImportError(
            "as_langchain_embeddings needs langchain-core; install it with: pip install 'multimodal-store[langchain]'"
        ) from exc

    class MultimodalStoreEmbeddings(Embeddings):
        """A multimodal-store embedder as LangChain ``Embeddings`` (plus ``embed_image``)."""

        def __init__(self, embedder: Any) -> None:
            self.embedder = embedder

        def __repr__(self) -> str:
            return f"MultimodalStoreEmbeddings({self.embedder!r})"

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            if not texts:
                return []
            return embed_texts(self.embedder, list(texts)).tolist()

        def embed_query(self, text: str) -> list[float]:
            encode_query: Callable[[list[str]], Any] | None = getattr(self.embedder, "encode_query", None)
            if callable(encode_query):
                return _as_matrix(encode_query([text]), 1, "encode_query")[0].tolist()
            return embed_texts(self.embedder, [text])[0].tolist()

        def embed_image(self, uris: list[str]) -> list[list[float]]:
            """Vectors of images given as paths (or anything ``encode_image`` accepts)."""
            if not uris:
                return []
            return embed_images(self.embedder, list(uris)).tolist()

    _LC_CLASS = MultimodalStoreEmbeddings
    return _LC_CLASS


def as_langchain_embeddings(embedder: Any) -> Any:
    """A LangChain ``Embeddings`` (``embed_documents``, ``embed_query``, and ``embed_image``
    for image paths) backed by ``embedder``; needs ``langchain-core``.

    ``embed_query`` uses the embedder's ``encode_query`` when it has one, else
    ``encode_text``; ``embed_image`` raises :class:`TypeError` for text-only embedders.
    """
    if not (supports_text(embedder) or supports_images(embedder)):
        raise TypeError(f"{type(embedder).__name__} has neither encode_text nor encode_image")
    return _langchain_class()(embedder)
