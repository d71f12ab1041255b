"""The optional C kernel for CPU scoring (``_simd.c``), behind a checked interface.

``scores`` computes float32 inner products of a few float32 queries with rows stored as
float16, bfloat16 or float32, read where they lie (a contiguous range, or the rows at given
positions), and optionally the rows' squared norms in the same pass. ``topk1`` scores one
query and keeps its ``k`` best rows inside the kernel (metric transform, mask and exact
tie-breaking included), so a single-query search makes one pass and no score array.
Half-precision rows are converted in registers, so a half-precision corpus is read at memory
speed: about twice as fast as a float32 one for a single query (``benchmarks/kernels.py``).

The kernel is built when the package is installed (``setup.py``; optional, skipped where no
C compiler works) and runs on x86-64 CPUs with AVX2, FMA and F16C. ``available()`` says
whether it runs here; set ``MMSTORE_CPU_SIMD=0`` to switch it off (the torch paths are then
used, e.g. to compare them).
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

import torch

from multimodal_store.errors import KernelError

__all__ = ["available", "scores", "topk1"]

_DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_ENV = "MMSTORE_CPU_SIMD"


@functools.cache
def _module() -> Any | None:
    try:
        mod = importlib.import_module(f"{__package__}._simd")
    except ImportError:
        return None
    return mod if mod.supported() else None


def available(dtype: torch.dtype | None = None) -> bool:
    """Whether the C kernel is built, runs on this CPU and is not switched off (for ``dtype``)."""
    if os.environ.get(_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if dtype is not None and dtype not in _DTYPE_CODES:
        return False
    return _module() is not None


_METRIC_CODES = {"ip": 0, "cosine": 1, "l2": 2}


def _checked(corpus: torch.Tensor, queries: torch.Tensor) -> tuple[Any, int]:
    """The C module and the dtype code, after checking the corpus and the queries."""
    mod = _module()
    if mod is None or not available():
        raise KernelError("the CPU SIMD kernel is not available here (check cpu_simd.available() first)")
    code = _DTYPE_CODES.get(corpus.dtype)
    if code is None:
        raise KernelError(f"corpus dtype must be float32, float16 or bfloat16, got {corpus.dtype}")
    if corpus.device.type != "cpu" or corpus.dim() != 2 or corpus.stride(1) != 1:
        raise KernelError(
            f"corpus must be a CPU (N, d) tensor with contiguous rows, got {corpus.device} "
            f"shape {tuple(corpus.shape)} strides {corpus.stride()}"
        )
    d = int(corpus.shape[1])
    if queries.dtype != torch.float32 or queries.dim() != 2 or int(queries.shape[1]) != d:
        raise KernelError(f"queries must be float32 (B, {d}), got {queries.dtype} {tuple(queries.shape)}")
    return mod, code


class _Rows:
    """Where the rows to score lie: a base address, an index buffer (0 = contiguous), a count."""

    def __init__(self, corpus: torch.Tensor, rows: slice | torch.Tensor) -> None:
        n_all = int(corpus.shape[0])
        self.base = corpus.data_ptr()
        self.index = 0
        self.first = 0
        self.positions: torch.Tensor | None = None  # keeps the index buffer alive
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n_all)
            if step != 1:
                raise KernelError(f"rows must be a slice with step 1, got step {step}")
            self.n = max(0, stop - start)
            self.first = start
            self.base += start * corpus.stride(0) * corpus.element_size()
            return
        if rows.dtype != torch.int64 or rows.dim() != 1:
            raise KernelError(f"rows must be a slice or a 1-D int64 tensor, got {rows.dtype} {tuple(rows.shape)}")
        self.positions = rows.contiguous()
        self.n = int(self.positions.shape[0])
        if self.n:
            lo, hi = int(self.positions.min()), int(self.positions.max())
            if lo < 0 or hi >= n_all:
                raise KernelError(f"row positions must lie in [0, {n_all}), got [{lo}, {hi}]")
            self.index = self.positions.data_ptr()


def scores(
    corpus: torch.Tensor,
    queries: torch.Tensor,
    rows: slice | torch.Tensor,
    *,
    norms: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, n)`` float32 ``queries @ corpus[rows].T`` and, with ``norms``, the rows' ``|x|^2``.

    ``corpus`` is a CPU ``(N, d)`` float32 / float16 / bfloat16 tensor whose rows are
    contiguous (``stride(1) == 1``); ``queries`` a float32 ``(B, d)`` tensor; ``rows`` a
    ``slice`` (step 1) or an int64 tensor of row positions. The sums are float32 with FMA
    (the same values as converting the rows to float32 and multiplying, up to the order of the
    additions).
    """
    mod, code = _checked(corpus, queries)
    q = queries.contiguous()
    r = _Rows(corpus, rows)
    b, d = int(q.shape[0]), int(q.shape[1])
    out = torch.empty((b, r.n), dtype=torch.float32)
    sq = torch.empty(r.n, dtype=torch.float32) if norms else None
    if r.n and b:
        mod.scores(
            out.data_ptr(), r.n, q.data_ptr(), b, d, r.base, corpus.stride(0) * corpus.element_size(),
            code, r.index, r.n, sq.data_ptr() if sq is not None else 0,
        )
    return out, sq


def topk1(
    corpus: torch.Tensor,
    query: torch.Tensor,
    rows: slice | torch.Tensor,
    k: int,
    metric: str,
    *,
    norms: torch.Tensor | None = None,
    qscale: float = 1.0,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best rows of ``corpus[rows]`` for one float32 ``query`` ``(1, d)``, kept while scoring.

    Ranks by the torch backend's internal score (higher is better): ``ip`` q.x, ``cosine``
    ``(q.x * qscale) / |x|`` (0 for a zero row; ``qscale`` = 1/|q|), ``l2`` ``2 q.x - |x|^2``;
    ``|x|`` from ``norms`` (float32 ``(N,)``, by corpus row) or computed in the same pass.
    Rows where ``mask`` (bool ``(N,)``, by corpus row) is False, and NaN or -inf scores, never
    enter; equal scores prefer the lower row. Returns ``(scores, rows)`` of length ``<= k``,
    best first; ``rows`` are corpus row positions.
    """
    mod, code = _checked(corpus, query)
    if int(query.shape[0]) != 1:
        raise KernelError(f"topk1 takes one query (1, d), got {tuple(query.shape)}")
    if metric not in _METRIC_CODES:
        raise KernelError(f"metric must be one of {sorted(_METRIC_CODES)}, got {metric!r}")
    if k < 1:
        raise KernelError(f"k must be >= 1, got {k}")
    n_all = int(corpus.shape[0])
    for name, t, dtype in (("norms", norms, torch.float32), ("mask", mask, torch.bool)):
        if t is not None and (t.dtype != dtype or tuple(t.shape) != (n_all,) or not t.is_contiguous()):
            raise KernelError(f"{name} must be a contiguous {dtype} ({n_all},), got {t.dtype} {tuple(t.shape)}")
    q = query.contiguous()
    r = _Rows(corpus, rows)
    out_s = torch.empty(k, dtype=torch.float32)
    out_i = torch.empty(k, dtype=torch.int64)
    count = 0
    if r.n:
        count = mod.topk1(
            out_s.data_ptr(), out_i.data_ptr(), k, q.data_ptr(), int(q.shape[1]), r.base,
            corpus.stride(0) * corpus.element_size(), code, r.index, r.n, r.first,
            norms.data_ptr() if norms is not None else 0, _METRIC_CODES[metric], float(qscale),
            mask.data_ptr() if mask is not None else 0,
        )
    return out_s[:count], out_i[:count]
