"""The optional C kernel for CPU scoring (``_simd.c``), behind a checked interface.

``scores`` computes float32 inner products of a few float32 queries with rows stored as
float16, bfloat16 or float32, read where they lie (a contiguous range, or the rows at given
positions), and optionally the rows' squared norms in the same pass. Half-precision rows are
converted in registers, so a half-precision corpus is read at memory speed: about twice as
fast as a float32 one for a single query (``benchmarks/kernels.py``).

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

__all__ = ["available", "scores"]

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
    n_all, d = int(corpus.shape[0]), int(corpus.shape[1])
    if queries.dtype != torch.float32 or queries.dim() != 2 or int(queries.shape[1]) != d:
        raise KernelError(f"queries must be float32 (B, {d}), got {queries.dtype} {tuple(queries.shape)}")
    q = queries.contiguous()
    base = corpus.data_ptr()
    index = 0
    idx: torch.Tensor | None = None
    if isinstance(rows, slice):
        start, stop, step = rows.indices(n_all)
        if step != 1:
            raise KernelError(f"rows must be a slice with step 1, got step {step}")
        n = max(0, stop - start)
        base += start * corpus.stride(0) * corpus.element_size()
    else:
        if rows.dtype != torch.int64 or rows.dim() != 1:
            raise KernelError(f"rows must be a slice or a 1-D int64 tensor, got {rows.dtype} {tuple(rows.shape)}")
        idx = rows.contiguous()
        n = int(idx.shape[0])
        if n and (int(idx.min()) < 0 or int(idx.max()) >= n_all):
            raise KernelError(f"row positions must lie in [0, {n_all}), got [{int(idx.min())}, {int(idx.max())}]")
        index = idx.data_ptr() if n else 0
    b = int(q.shape[0])
    out = torch.empty((b, n), dtype=torch.float32)
    sq = torch.empty(n, dtype=torch.float32) if norms else None
    if n and b:
        mod.scores(
            out.data_ptr(), n, q.data_ptr(), b, d, base, corpus.stride(0) * corpus.element_size(),
            code, index, n, sq.data_ptr() if sq is not None else 0,
        )
    return out, sq
