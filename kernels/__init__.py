"""Exact similarity-search kernels: ``topk`` over a corpus, and streaming merges.

>>> from multimodal_store.kernels import topk
>>> scores, indices = topk(queries, corpus, k=10, metric="cosine")   # both (B, 10)

Semantics (every backend, and :func:`merge_topk` / :class:`TopK`):

* ``metric``: ``cosine`` (similarity; a zero query or zero row has cosine 0), ``ip`` (inner
  product) or ``l2`` (the true Euclidean distance ``|q - x|``, not its square). L2 rows are
  selected by ``|x|^2 - 2 q.x`` (a matmul) and the distances of the selected rows are then
  recomputed directly as ``|q - x|`` in float32, so they are accurate also near 0; two rows whose
  distances differ by less than float32 rounding may be selected either way.
* Results are sorted best first: similarity descending, L2 distance ascending; equal scores
  are ordered by the lower row index. Outputs are always ``(B, k)`` float32 scores and int64
  indices on the corpus device, also for a 1-D query.
* When fewer than ``k`` rows may compete (``N < k``, or a mask), the remaining slots hold
  index -1 and score -inf (L2: +inf). Masked rows are never returned. Rows whose score is
  NaN (NaN in the corpus) never compete; queries must be finite.
* ``k`` is 1 .. 2048.

Backends: ``torch`` (CPU, or any device; a streaming scan over row blocks) and ``triton``
(CUDA, fused two-stage kernel; on CPU only through ``TRITON_INTERPRET=1``). ``auto`` picks
triton for a CUDA corpus when triton is installed, torch otherwise. Triton is imported only
when used. On x86-64 CPUs with AVX2 / FMA / F16C the torch backend scores up to 512 queries
with a small C kernel built at install time (:mod:`.cpu_simd`): it reads float16 / bfloat16
rows at memory speed; without it (not built, another CPU) the torch paths give the same
results.
"""

from __future__ import annotations

from typing import Any

import torch

from ._common import MAX_K, METRICS, prepare
from .dispatch import available_backends, run_topk
from .merge import TopK, merge_topk
from .torch_topk import row_norms

__all__ = ["MAX_K", "METRICS", "TopK", "available_backends", "merge_topk", "row_norms", "topk"]


def topk(
    queries: Any,
    corpus: Any,
    k: int,
    metric: str = "cosine",
    mask: Any = None,
    backend: str = "auto",
    corpus_norms: Any = None,
    corpus_scales: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best rows of ``corpus`` for each query, exactly.

    Args:
        queries: ``(B, d)`` or ``(d,)``; float32 / float16 / bfloat16 (float64 is converted).
            torch tensors or numpy arrays.
        corpus: ``(N, d)`` float32 / float16 / bfloat16, or int8 with ``corpus_scales``
            (a numpy float64 corpus is converted to float32, a copy).
        k: number of results per query, 1 .. 2048.
        metric: ``cosine`` | ``ip`` | ``l2`` (true Euclidean distance).
        mask: bool ``(N,)`` shared by all queries, or ``(B, N)`` per query; True = the row may
            compete.
        backend: ``auto`` | ``triton`` | ``torch``.
        corpus_norms: optional float32 ``(N,)`` precomputed ``|x|`` per row (of the dequantized
            rows for int8), e.g. from :func:`row_norms`; skips recomputing them (cosine, l2)
            (without the C kernel it also enables the filtered half-precision CPU path).
        corpus_scales: for an int8 corpus, float32 ``(N,)`` per-row scales (``x = scale * x_int8``).

    Returns:
        ``(scores, indices)``: float32 and int64, shape ``(B, k)``, on the corpus device.

    Raises:
        KernelError: (a ``ValueError``) for invalid arguments, naming the expected and given values.
    """
    args = prepare(queries, corpus, k, metric, mask, corpus_norms, corpus_scales)
    return run_topk(args, backend)
