"""Shared pieces of the similarity-search kernels.

Argument checking (one place, so every backend raises the same messages), metric and
dtype handling, the ``(score, row)`` -> ``int64`` key packing used by the Triton kernels,
exact top-k selection with ties to the lower index, and the conversion of internal scores
to the values the public functions return.

Internal convention: every backend ranks rows by an *internal* float32 score where higher is
better: the inner product (``ip``), the cosine similarity (``cosine``) or ``2 q.x - |x|^2``
(``l2``; the per-query constant ``|q|^2`` does not change the order). ``-inf`` marks a row
that may not compete (masked out, or padding). :func:`finalize` turns internal scores into
the public ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from multimodal_store.errors import KernelError

__all__ = [
    "BACKENDS",
    "CORPUS_DTYPES",
    "KEY_ROW_LIMIT",
    "MAX_K",
    "METRICS",
    "TopKArgs",
    "check_k",
    "check_metric",
    "finalize",
    "float_from_ordered",
    "ordered_int32",
    "pack_keys",
    "pad_results",
    "prepare",
    "select_topk",
    "sort_best_first",
    "to_public_scores",
    "unpack_keys",
]

MAX_K = 2048
METRICS = ("cosine", "ip", "l2")
BACKENDS = ("auto", "triton", "torch")
CORPUS_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int8)
_QUERY_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

# Packed keys hold the row in the low 31 bits as ``KEY_ROW_LIMIT - row``.
KEY_ROW_LIMIT = 2**31 - 1
_NEG_INF = float("-inf")


@dataclass(frozen=True)
class TopKArgs:
    """Validated arguments of :func:`multimodal_store.kernels.topk`.

    ``queries`` is float32 ``(B, d)`` on the corpus device; ``corpus`` is ``(N, d)`` in one of
    :data:`CORPUS_DTYPES`; ``mask`` is bool ``(N,)`` or ``(B, N)``; ``corpus_norms`` are the
    float32 ``|x|`` of the (dequantized) rows; ``corpus_scales`` the float32 per-row scales of
    an int8 corpus (``x = scale * x_int8``).
    """

    queries: torch.Tensor
    corpus: torch.Tensor
    k: int
    metric: str
    mask: torch.Tensor | None
    corpus_norms: torch.Tensor | None
    corpus_scales: torch.Tensor | None

    @property
    def batch(self) -> int:
        return int(self.queries.shape[0])

    @property
    def rows(self) -> int:
        return int(self.corpus.shape[0])

    @property
    def dim(self) -> int:
        return int(self.corpus.shape[1])

    @property
    def device(self) -> torch.device:
        return self.corpus.device


def _shape(t: torch.Tensor) -> str:
    return str(tuple(int(s) for s in t.shape))


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """A torch tensor sharing memory with ``x`` when possible (numpy arrays are accepted)."""
    if isinstance(x, torch.Tensor):
        return x
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise KernelError(f"{name} must be a torch tensor or a numpy array, got {type(x).__name__}") from exc
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if not arr.flags.c_contiguous and not arr.flags.f_contiguous:
        arr = np.ascontiguousarray(arr)
    try:
        return torch.from_numpy(arr)
    except TypeError as exc:
        raise KernelError(f"{name} has an unsupported numpy dtype {arr.dtype}") from exc


def check_k(k: Any) -> int:
    """``k`` as an int in ``[1, MAX_K]`` or a :class:`KernelError` naming what was given."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise KernelError(f"k must be an int, got {type(k).__name__}")
    k = int(k)
    if k < 1:
        raise KernelError(f"k must be at least 1, got {k}")
    if k > MAX_K:
        raise KernelError(f"k={k} exceeds the maximum supported k of {MAX_K}")
    return k


def check_metric(metric: Any) -> str:
    if metric not in METRICS:
        raise KernelError(f"metric must be one of {', '.join(map(repr, METRICS))}, got {metric!r}")
    return str(metric)


def _row_vector(x: Any, name: str, n: int, device: torch.device) -> torch.Tensor:
    t = _as_tensor(x, name)
    if t.dim() != 1 or int(t.shape[0]) != n:
        raise KernelError(f"{name} must have shape ({n},), got {_shape(t)}")
    if not t.is_floating_point():
        raise KernelError(f"{name} must be a float tensor, got {t.dtype}")
    return t.to(device=device, dtype=torch.float32).contiguous()


def prepare(
    queries: Any,
    corpus: Any,
    k: Any,
    metric: Any,
    mask: Any = None,
    corpus_norms: Any = None,
    corpus_scales: Any = None,
) -> TopKArgs:
    """Check every argument of ``topk`` and bring them to the corpus device.

    Raises :class:`KernelError` (a ``ValueError``) with the expected and the given value.
    """
    metric = check_metric(metric)
    k = check_k(k)
    x = _as_tensor(corpus, "corpus")
    if x.dim() != 2:
        raise KernelError(f"corpus must be 2-D (N, d), got shape {_shape(x)}")
    if x.dtype == torch.float64:
        x = x.to(torch.float32)
    if x.dtype not in CORPUS_DTYPES:
        raise KernelError(f"corpus dtype must be float32, float16, bfloat16 or int8, got {x.dtype}")
    n, d = int(x.shape[0]), int(x.shape[1])
    if d < 1:
        raise KernelError(f"corpus dim must be at least 1, got shape {_shape(x)}")
    device = x.device

    q = _as_tensor(queries, "queries")
    if q.dim() == 1:
        q = q.unsqueeze(0)
    if q.dim() != 2:
        raise KernelError(f"queries must be 1-D (d,) or 2-D (B, d), got shape {_shape(q)}")
    if q.dtype not in _QUERY_DTYPES:
        raise KernelError(f"queries dtype must be float32, float16, bfloat16 or float64, got {q.dtype}")
    if int(q.shape[1]) != d:
        raise KernelError(f"query dim {int(q.shape[1])} does not match corpus dim {d}")
    q = q.to(device=device, dtype=torch.float32).contiguous()
    if q.numel() and not bool(torch.isfinite(q).all()):
        raise KernelError("queries contain NaN or infinity")
    b = int(q.shape[0])

    m: torch.Tensor | None = None
    if mask is not None:
        m = _as_tensor(mask, "mask")
        if m.dtype != torch.bool:
            raise KernelError(f"mask dtype must be bool (True = row may compete), got {m.dtype}")
        if m.dim() == 2 and int(m.shape[0]) == 1 and b != 1:
            m = m[0]
        ok = (m.dim() == 1 and int(m.shape[0]) == n) or (m.dim() == 2 and tuple(m.shape) == (b, n))
        if not ok:
            raise KernelError(f"mask must have shape (N,) = ({n},) or (B, N) = ({b}, {n}), got {_shape(m)}")
        if m.dim() == 2 and b == 1:
            m = m[0]
        m = m.to(device).contiguous()

    norms = None if corpus_norms is None else _row_vector(corpus_norms, "corpus_norms", n, device)
    scales = None
    if corpus_scales is not None:
        if x.dtype != torch.int8:
            raise KernelError(f"corpus_scales is only for an int8 corpus, got corpus dtype {x.dtype}")
        scales = _row_vector(corpus_scales, "corpus_scales", n, device)
    return TopKArgs(q, x, k, metric, m, norms, scales)


# --------------------------------------------------------------------------------------
# (score, row) <-> int64 keys whose integer order is the score order, ties to the lower row


def ordered_int32(scores: torch.Tensor) -> torch.Tensor:
    """float32 -> int32 with the same order (-0.0 and +0.0 map to the same value)."""
    s = torch.where(scores == 0, torch.zeros((), dtype=scores.dtype, device=scores.device), scores)
    bits = s.contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


def float_from_ordered(o: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`ordered_int32`."""
    return torch.where(o < 0, o ^ 0x7FFFFFFF, o).contiguous().view(torch.float32)


def pack_keys(scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """int64 keys: high 32 bits the ordered score, low bits ``KEY_ROW_LIMIT - row``.

    A larger key means a better (higher) score, and for equal scores the lower row.
    ``rows`` must lie in ``[0, KEY_ROW_LIMIT]``.
    """
    hi = ordered_int32(scores.to(torch.float32)).to(torch.int64)
    return (hi << 32) | (KEY_ROW_LIMIT - rows.to(torch.int64))


def unpack_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_keys`: ``(scores float32, rows int64)``."""
    rows = KEY_ROW_LIMIT - (keys & 0xFFFFFFFF)
    hi = (keys >> 32).to(torch.int32)
    return float_from_ordered(hi), rows


# --------------------------------------------------------------------------------------
# exact selection and ordering (higher is better, ties to the lower index)


def inverse_norms(n: torch.Tensor) -> torch.Tensor:
    """``1 / n`` elementwise, 0 where ``n`` is not positive (cosine with a zero vector is 0)."""
    return torch.where(n > 0, 1.0 / n, torch.zeros_like(n))


def sort_best_first(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by score descending, equal scores by index ascending."""
    if scores.shape[-1] <= 1:
        return scores, indices
    order = torch.argsort(indices, dim=-1, stable=True)
    s = scores.gather(-1, order)
    i = indices.gather(-1, order)
    order = torch.argsort(s, dim=-1, descending=True, stable=True)
    return s.gather(-1, order), i.gather(-1, order)


def select_topk(
    scores: torch.Tensor, indices: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best entries of each row of ``scores`` (B, M), unsorted.

    Exact: among equal scores at the boundary the lower index wins (``indices`` default to
    the column positions). Entries that are ``-inf`` never displace a finite one. Returns
    ``(B, min(k, M))`` scores and int64 indices.
    """
    m = int(scores.shape[-1])
    if indices is None:
        indices = torch.arange(m, device=scores.device).expand(scores.shape)
    if m <= k:
        return scores, indices
    # k+1 sorted: the selection is exact unless the (k+1)-th best equals the k-th (a tie across
    # the boundary, where topk may have kept a higher index); -inf ties do not matter, those
    # entries are dropped. This needs no extra pass over the scores.
    vals, pos = torch.topk(scores, k + 1, dim=-1, sorted=True)
    tied = (vals[..., k] == vals[..., k - 1]) & (vals[..., k - 1] > _NEG_INF)
    vals, pos = vals[..., :k], pos[..., :k]
    idx = indices.gather(-1, pos)
    if bool(tied.any()):
        rows = tied.nonzero().squeeze(-1)
        s_sorted, i_sorted = sort_best_first(scores[rows], indices[rows])
        vals = vals.clone()
        idx = idx.clone()
        vals[rows] = s_sorted[:, :k]
        idx[rows] = i_sorted[:, :k]
    return vals, idx


# --------------------------------------------------------------------------------------
# public scores


def to_public_scores(internal: torch.Tensor, metric: str) -> torch.Tensor:
    """Higher-is-better scores (``-inf`` = empty) -> public scores for ``merge_topk``/``TopK``."""
    return -internal if metric == "l2" else internal


def pad_results(
    scores: torch.Tensor, indices: torch.Tensor, k: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad sorted ``(B, m<=k)`` results to ``(B, k)`` with index -1 and -inf (l2: +inf)."""
    b, m = int(scores.shape[0]), int(scores.shape[1])
    fill = float("inf") if metric == "l2" else _NEG_INF
    out_s = torch.full((b, k), fill, dtype=torch.float32, device=scores.device)
    out_i = torch.full((b, k), -1, dtype=torch.int64, device=scores.device)
    out_s[:, :m] = scores.to(torch.float32)
    out_i[:, :m] = indices.to(torch.int64)
    return out_s, out_i


def _dequantized_rows(args: TopKArgs, rows: torch.Tensor) -> torch.Tensor:
    x = args.corpus[rows].to(torch.float32)
    if args.corpus_scales is not None:
        x = x * args.corpus_scales[rows].unsqueeze(-1)
    return x


def _l2_distances(args: TopKArgs, indices: torch.Tensor) -> torch.Tensor:
    """True Euclidean distances from each query to the rows ``indices`` (B, m); -1 -> +inf.

    Computed directly as ``|q - x|`` in float32 (no cancellation), a chunk of queries at a time.
    """
    b, m = int(indices.shape[0]), int(indices.shape[1])
    out = torch.full((b, m), float("inf"), dtype=torch.float32, device=indices.device)
    if b == 0 or m == 0:
        return out
    safe = indices.clamp(min=0)
    step = max(1, (1 << 22) // max(1, m * args.dim))
    for b0 in range(0, b, step):
        b1 = min(b, b0 + step)
        rows = _dequantized_rows(args, safe[b0:b1].reshape(-1)).view(b1 - b0, m, args.dim)
        diff = rows - args.queries[b0:b1].unsqueeze(1)
        out[b0:b1] = torch.linalg.vector_norm(diff, dim=-1)
    return torch.where(indices >= 0, out, torch.full_like(out, float("inf")))


def finalize(
    args: TopKArgs, scores: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Internal candidates (B, m<=k) of any order -> public sorted, padded ``(B, k)`` results.

    Entries whose internal score is ``-inf`` (or NaN) become index -1. For ``l2`` the distances
    of the returned rows are recomputed exactly and the rows re-sorted by them.
    """
    scores = scores.to(torch.float32)
    indices = indices.to(torch.int64)
    valid = scores > _NEG_INF
    indices = torch.where(valid, indices, torch.full_like(indices, -1))
    scores = torch.where(valid, scores, torch.full_like(scores, _NEG_INF))
    if args.metric == "l2":
        dist = _l2_distances(args, indices)
        neg, indices = sort_best_first(-dist, indices)
        scores = -neg
    else:
        scores, indices = sort_best_first(scores, indices)
    return pad_results(scores, indices, args.k, args.metric)
