"""CLIP and SigLIP embedders: texts and images in one vector space (transformers, on demand).

Both load any checkpoint ``AutoModel``/``AutoProcessor`` can read (a hub name such as
``"openai/clip-vit-base-patch32"`` or ``"google/siglip-base-patch16-224"``, or a local
folder such as the ones :mod:`multimodal_store.embeddings.tiny` builds) and return
L2-normalised float32 numpy arrays ``(n, dim)``. Install the extra with
``pip install 'multimodal-store[clip]'``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from PIL import Image

from multimodal_store.media.images import EncodedImage, ImageLike, load_image

__all__ = ["CLIPEmbedder", "SiglipEmbedder", "features_tensor", "resolve_device", "resolve_dtype"]


def _import_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "CLIP/SigLIP embedders need transformers; install them with: pip install 'multimodal-store[clip]'"
        ) from exc
    return transformers


def resolve_device(device: Any = None) -> Any:
    """``torch.device``: the given one, else CUDA when available, else CPU."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: Any, device: Any) -> Any:
    """``torch.dtype``: the given one (a dtype or its name), else float16 on CUDA, float32 otherwise."""
    import torch

    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown torch dtype {dtype!r}")
        return value
    return dtype


_HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token")


def _hub_kwargs(from_pretrained: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``from_pretrained`` that also apply to tokenizers and processors
    (``revision``, ``cache_dir``, ``local_files_only``, ``token``)."""
    return {k: from_pretrained[k] for k in _HUB_KWARGS if k in from_pretrained}


class _TransformersModel:
    """Loading shared by the transformers-backed embedders (:class:`CLIPEmbedder`,
    :class:`~multimodal_store.embeddings.text.TextEmbedder`)."""

    model_name: str
    device: Any
    dtype: Any
    batch_size: int
    model: Any
    _torch: Any

    def _load_model(self, model_name_or_path: str | os.PathLike[str], device: Any, dtype: Any,
                    batch_size: int, from_pretrained: dict[str, Any]) -> Any:
        """Check ``batch_size``, resolve ``device``/``dtype`` and load ``AutoModel`` in eval mode
        on them (``from_pretrained`` are its keyword arguments); sets ``model_name``,
        ``device``, ``dtype``, ``batch_size``, ``model`` and returns the transformers module."""
        import torch

        transformers = _import_transformers()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = os.fspath(model_name_or_path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = int(batch_size)
        self._torch = torch
        model = transformers.AutoModel.from_pretrained(self.model_name, **from_pretrained)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        return transformers


def features_tensor(output: Any) -> Any:
    """The embedding tensor of ``get_text_features``/``get_image_features``: transformers 4.x
    returns it, 5.x returns a ``BaseModelOutputWithPooling`` holding it in ``pooler_output``."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "text_embeds", "image_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"cannot find the embeddings in a {type(output).__name__}")


def _input_side(image_processor: Any) -> int | None:
    """The larger side of the model's input image (from ``size``/``crop_size``), if known."""
    sides: list[int] = []
    for spec in (getattr(image_processor, "size", None), getattr(image_processor, "crop_size", None)):
        if isinstance(spec, int):
            sides.append(spec)
        elif spec is not None:
            for key in ("shortest_edge", "height", "width"):
                value = spec.get(key) if hasattr(spec, "get") else getattr(spec, key, None)
                if isinstance(value, int):
                    sides.append(value)
    return max(sides) if sides else None


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _image_list(images: Any) -> list[Any]:
    """One image or a sequence of images, as a list."""
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image, EncodedImage)):
        return [images]
    if isinstance(images, np.ndarray):
        return [images] if images.ndim <= 3 else list(images)
    return list(images)


class CLIPEmbedder(_TransformersModel):
    """Texts and images to L2-normalised float32 vectors with a CLIP-like dual encoder.

    ``model_name_or_path``: a hub name or local folder. ``device``: ``"cpu"``, ``"cuda"``...
    (default: CUDA when available). ``dtype``: default float16 on CUDA, float32 on CPU.
    ``batch_size``: inputs per forward pass. ``reduce_images`` (default True) lets large
    images be decoded/reduced to about 1.5x the model's input size before the processor's
    own resize (JPEGs decode at 1/2-1/8 scale: several times faster on photos); False
    feeds full-size images, exactly as transformers' own pipeline does. Other keyword
    arguments go to ``AutoModel.from_pretrained`` (``revision``, ``local_files_only``...).

    SigLIP checkpoints work too (they are detected from the config: texts are then padded to
    the maximum length and no attention mask is passed, as SigLIP was trained);
    :class:`SiglipEmbedder` is the same class under the name users look for.
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str], device: Any = None, dtype: Any = None,
                 batch_size: int = 32, *, reduce_images: bool = True, **from_pretrained: Any) -> None:
        transformers = self._load_model(model_name_or_path, device, dtype, batch_size, from_pretrained)
        self.config = self.model.config
        self.tokenizer, self.image_processor = self._load_processors(transformers, from_pretrained)
        model_type = str(getattr(self.config, "model_type", ""))
        self.is_siglip = model_type.startswith("siglip")
        text_config = getattr(self.config, "text_config", None)
        positions = getattr(text_config, "max_position_embeddings", None) or 77
        tok_max = getattr(self.tokenizer, "model_max_length", None) or positions
        self.max_length = int(min(positions, tok_max))
        self._dim = self._config_dim()
        side = _input_side(self.image_processor)
        self._min_side = math.ceil(1.5 * side) if (reduce_images and side) else None

    def _load_processors(self, transformers: Any, kwargs: dict[str, Any]) -> tuple[Any, Any]:
        hub = _hub_kwargs(kwargs)
        tokenizer = image_processor = None
        try:
            processor = transformers.AutoProcessor.from_pretrained(self.model_name, **hub)
        except (OSError, ValueError, TypeError, KeyError):
            processor = None
        if processor is not None:
            tokenizer = getattr(processor, "tokenizer", None)
            image_processor = getattr(processor, "image_processor", None)
            if tokenizer is None and callable(getattr(processor, "convert_tokens_to_ids", None)):
                tokenizer = processor  # AutoProcessor returned a bare tokenizer
        if tokenizer is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_name, **hub)
        if image_processor is None:
            image_processor = transformers.AutoImageProcessor.from_pretrained(self.model_name, **hub)
        return tokenizer, image_processor

    def _config_dim(self) -> int:
        cfg = self.config
        dim = getattr(cfg, "projection_dim", None)
        if not dim:
            text_config = getattr(cfg, "text_config", None)
            dim = getattr(text_config, "projection_size", None) or getattr(text_config, "hidden_size", None)
        return int(dim) if dim else int(self.encode_text(["probe"]).shape[1])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.model_name!r}, device={str(self.device)!r}, "
                f"dtype={str(self.dtype).removeprefix('torch.')}, dim={self.dim})")

    @property
    def dim(self) -> int:
        """Length of the vectors."""
        return self._dim

    def _finish(self, chunks: list[Any], n: int) -> np.ndarray:
        torch = self._torch
        if not chunks:
            return np.zeros((n, self._dim), np.float32)
        out = torch.cat(chunks).float()
        out = torch.nn.functional.normalize(out, dim=-1)
        return np.ascontiguousarray(out.cpu().numpy(), dtype=np.float32)

    def encode_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """L2-normalised vectors ``(len(texts), dim)``; a single string gives ``(1, dim)``."""
        batch = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        torch = self._torch
        chunks = []
        names = ("input_ids",) if self.is_siglip else ("input_ids", "attention_mask")
        with torch.inference_mode():
            for part in _batches(batch, self.batch_size):
                enc = self.tokenizer(
                    list(part), padding="max_length" if self.is_siglip else True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                )
                inputs = {k: enc[k].to(self.device) for k in names if k in enc}
                chunks.append(features_tensor(self.model.get_text_features(**inputs)))
        return self._finish(chunks, len(batch))

    def encode_image(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """L2-normalised vectors ``(n, dim)`` of images given as paths, encoded bytes, PIL
        images, uint8 arrays or :class:`~multimodal_store.media.images.EncodedImage`
        (one image, or a sequence of them). EXIF orientation is applied; transparency is
        composited on white."""
        batch = _image_list(images)
        torch = self._torch
        chunks = []
        with torch.inference_mode():
            for part in _batches(batch, self.batch_size):
                pil = [load_image(im, min_side=self._min_side) for im in part]
                enc = self.image_processor(images=pil, return_tensors="pt")
                inputs = {
                    k: (v.to(self.device, dtype=self.dtype) if v.is_floating_point() else v.to(self.device))
                    for k, v in enc.items() if isinstance(v, torch.Tensor)
                }
                chunks.append(features_tensor(self.model.get_image_features(**inputs)))
        return self._finish(chunks, len(batch))


class SiglipEmbedder(CLIPEmbedder):
    """A SigLIP (or SigLIP 2) embedder: :class:`CLIPEmbedder` with SigLIP's text padding.

    Note that SigLIP scores pairs with a sigmoid of ``scale * cos + bias``: cosine similarity
    still ranks them, which is what search needs.
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str], device: Any = None, dtype: Any = None,
                 batch_size: int = 32, *, reduce_images: bool = True, **from_pretrained: Any) -> None:
        super().__init__(model_name_or_path, device=device, dtype=dtype, batch_size=batch_size,
                         reduce_images=reduce_images, **from_pretrained)
        self.is_siglip = True
