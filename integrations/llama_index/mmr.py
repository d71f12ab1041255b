"""Maximal marginal relevance over a candidate set, in numpy.

The same selection rule as LlamaIndex's ``get_top_k_mmr_embeddings`` (used by its
``SimpleVectorStore``): the first pick maximises ``threshold * sim(query, d)``, every next pick
maximises ``threshold * sim(query, d) - (1 - threshold) * sim(d, last pick)``; cosine
similarity throughout, ties to the earlier candidate. ``threshold`` 1 ranks by relevance
only, 0 by novelty only; the default is 0.5. Vectorised: one Gram matrix of the candidates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_MMR_THRESHOLD", "mmr_select"]

DEFAULT_MMR_THRESHOLD = 0.5


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def mmr_select(query: np.ndarray, candidates: np.ndarray, top_k: int, threshold: float | None = None) -> list[int]:
    """Indices of ``top_k`` candidates (rows of ``candidates``) in MMR pick order."""
    t = DEFAULT_MMR_THRESHOLD if threshold is None else float(threshold)
    emb = _unit(np.asarray(candidates, dtype=np.float64))
    n = len(emb)
    k = min(int(top_k), n)
    if k <= 0:
        return []
    relevance = t * (emb @ _unit(np.asarray(query, dtype=np.float64)))
    gram = emb @ emb.T
    available = np.ones(n, dtype=bool)
    picks: list[int] = []
    score = relevance.copy()
    while len(picks) < k:
        masked = np.where(available, score, -np.inf)
        best = int(np.argmax(masked))
        picks.append(best)
        available[best] = False
        score = relevance - (1.0 - t) * gram[:, best]
    return picks
