"""Streaming merge of partial top-k results, so a store can search fragment by fragment.

:func:`merge_topk` and :class:`TopK` follow exactly the semantics of ``topk``: scores best first
(similarity descending, L2 distance ascending), equal scores ordered by the lower *global*
index, and missing entries as index -1 with score -inf (L2: +inf). Entries with index -1 in
the inputs are ignored. The parts are assumed to cover disjoint rows (a row given twice is
returned twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from multimodal_store.errors import KernelError

from ._common import _as_tensor, check_k, check_metric, pad_results, select_topk, sort_best_first

__all__ = ["TopK", "merge_topk"]

_NEG_INF = float("-inf")


def _internal(scores: Any, indices: Any, metric: str, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Public (scores, indices) -> higher-is-better float32 scores and int64 indices, 2-D."""
    s = _as_tensor(scores, f"{name} scores")
    i = _as_tensor(indices, f"{name} indices")
    if s.dim() == 1:
        s = s.unsqueeze(0)
    if i.dim() == 1:
        i = i.unsqueeze(0)
    if s.dim() != 2 or s.shape != i.shape:
        raise KernelError(
            f"{name}: scores and indices must have the same shape (B, m), got {tuple(s.shape)} and {tuple(i.shape)}"
        )
    if not s.is_floating_point():
        raise KernelError(f"{name}: scores must be floating point, got {s.dtype}")
    if i.is_floating_point() or i.dtype == torch.bool or i.is_complex():
        raise KernelError(f"{name}: indices must be integers, got {i.dtype}")
    s = s.to(torch.float32)
    i = i.to(device=s.device, dtype=torch.int64)
    if metric == "l2":
        s = -s
    keep = (i >= 0) & (s > _NEG_INF)
    s = torch.where(keep, s, torch.full_like(s, _NEG_INF))
    i = torch.where(keep, i, torch.full_like(i, -1))
    return s, i


def _finish(s: torch.Tensor, i: torch.Tensor, k: int, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    s, i = select_topk(s, i, k)
    s, i = sort_best_first(s, i)
    i = torch.where(s > _NEG_INF, i, torch.full_like(i, -1))
    if metric == "l2":
        s = -s
    return pad_results(s, i, k, metric)


def merge_topk(
    parts: Iterable[tuple[Any, Any]], k: int, metric: str = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partial results ``[(scores, global_indices), ...]``, each ``(B, m_i)`` (or 1-D for B=1).

    Returns ``(scores, indices)`` of shape ``(B, k)``, float32 / int64, with ``topk``'s ordering,
    tie and padding rules.
    """
    k = check_k(k)
    metric = check_metric(metric)
    items = list(parts)
    if not items:
        raise KernelError("merge_topk needs at least one (scores, indices) part")
    ss: list[torch.Tensor] = []
    ii: list[torch.Tensor] = []
    for n, part in enumerate(items):
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise KernelError(f"part {n} must be a (scores, indices) pair")
        s, i = _internal(part[0], part[1], metric, f"part {n}")
        if ss and (s.shape[0] != ss[0].shape[0] or s.device != ss[0].device):
            raise KernelError(
                f"part {n} has batch {s.shape[0]} on {s.device}, expected batch {ss[0].shape[0]} on {ss[0].device}"
            )
        ss.append(s)
        ii.append(i)
    return _finish(torch.cat(ss, dim=1), torch.cat(ii, dim=1), k, metric)


class TopK:
    """Accumulates the top-k of a search done fragment by fragment.

    >>> acc = TopK(10, "cosine", batch=len(queries))
    >>> for offset, block in fragments:
    ...     acc.add(queries, block, offset)           # or acc.push(scores, global_indices)
    >>> scores, indices = acc.result()                # (B, 10), like topk over all fragments

    Memory stays O(B * k): pushed candidates are reduced to the running top-k as they arrive.
    """

    def __init__(self, k: int, metric: str = "cosine", batch: int = 1) -> None:
        self.k = check_k(k)
        self.metric = check_metric(metric)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
            raise KernelError(f"batch must be a non-negative int, got {batch!r}")
        self.batch = batch
        self._scores: list[torch.Tensor] = []
        self._indices: list[torch.Tensor] = []
        self._width = 0

    def reset(self) -> None:
        """Forget everything pushed so far."""
        self._scores, self._indices, self._width = [], [], 0

    def push(self, scores: Any, indices: Any) -> None:
        """Add candidates: public scores and *global* indices, both ``(batch, m)`` (1-D if batch is 1)."""
        s, i = _internal(scores, indices, self.metric, "push")
        if s.shape[0] != self.batch:
            raise KernelError(f"push: expected scores for batch {self.batch}, got shape {tuple(s.shape)}")
        if self._scores and s.device != self._scores[0].device:
            raise KernelError(f"push: scores on {s.device}, earlier pushes on {self._scores[0].device}")
        self._scores.append(s)
        self._indices.append(i)
        self._width += int(s.shape[1])
        if self._width > 4 * self.k:
            self._compact()

    def add(
        self,
        queries: Any,
        corpus_block: Any,
        offset: int = 0,
        mask_block: Any = None,
        *,
        corpus_norms: Any = None,
        corpus_scales: Any = None,
        backend: str = "auto",
    ) -> None:
        """Search ``corpus_block`` (rows ``offset .. offset + len(block)`` of the whole corpus) and push.

        ``mask_block``, ``corpus_norms`` and ``corpus_scales`` cover the block's rows only.
        """
        from . import topk

        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise KernelError(f"offset must be a non-negative int, got {offset!r}")
        s, i = topk(
            queries,
            corpus_block,
            self.k,
            metric=self.metric,
            mask=mask_block,
            backend=backend,
            corpus_norms=corpus_norms,
            corpus_scales=corpus_scales,
        )
        self.push(s, torch.where(i >= 0, i + offset, i))

    def _compact(self) -> None:
        s = torch.cat(self._scores, dim=1) if len(self._scores) > 1 else self._scores[0]
        i = torch.cat(self._indices, dim=1) if len(self._indices) > 1 else self._indices[0]
        s, i = select_topk(s, i, self.k)
        self._scores, self._indices, self._width = [s], [i], int(s.shape[1])

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores, indices)`` of shape ``(batch, k)`` over everything pushed so far."""
        if not self._scores:
            s = torch.full((self.batch, 0), _NEG_INF)
            return _finish(s, s.to(torch.int64), self.k, self.metric)
        self._compact()
        return _finish(self._scores[0], self._indices[0], self.k, self.metric)

    def __repr__(self) -> str:
        return f"TopK(k={self.k}, metric={self.metric!r}, batch={self.batch}, held={self._width})"
