"""The torch backend: a streaming top-k scan over row blocks (CPU, and CUDA for k > 256).

Memory is O(block): the corpus is read one block of rows at a time, each block's scores
``(B, rows_in_block)`` are reduced to their exact top-k at once, and the per-block candidates
are merged into a running top-k. No ``B x N`` score matrix is ever built.

Speed on CPU (see ``benchmarks/kernels.py``):

* up to 512 queries, with the C kernel built (``cpu_simd``, x86-64 with AVX2 / FMA / F16C): it
  reads float16 / bfloat16 / float32 rows in place, converts halves in registers and
  accumulates in float32, so half-precision storage streams at memory speed (about twice as
  fast as float32 for one query); squared norms come from the same pass when none are given,
  and sparse masks are read by position. One query keeps its top-k inside the kernel while
  scoring (no score buffer, no selection passes). The row range is split over
  ``torch.get_num_threads()`` Python threads (the kernel releases the GIL).
  Without the kernel:
* one float32 query with faiss installed: faiss's SIMD ``fvec_inner_products_ny`` per block
  (it streams rows faster than BLAS gemv), the row range split over ``torch.get_num_threads()``
  Python threads (faiss releases the GIL). Without faiss the query is padded to two rows, because
  MKL's matrix-matrix kernel streams memory faster than its matrix-vector one.
* float32 batches: one BLAS matmul per block of rows (``B x rows`` ~ 4M scores).
* float16 / bfloat16 with one or two queries and ``corpus_norms`` given: torch's reduced
  precision matrix-vector kernel reads the stored halves directly and accumulates in
  float32, but rounds its output to the storage type. We use it as a *filter*: with a
  rigorous bound on that rounding (and on rounding the query) every row that could still be
  in the top-k under float32 scoring is kept and rescored exactly in float32. This reads half
  the bytes of float32 storage. A one-time self-check disables the filter if the platform's
  kernel does not round as expected.
* otherwise (batches, int8, no norms): each block is converted into a float32 buffer and
  multiplied there (float32 accumulation, float32 results).
* a sparse mask (at most a quarter of the rows may compete): only the eligible rows are
  visited, read in place by faiss's by-index inner products (one float32 query) or gathered
  block by block into a cache-sized buffer; a 10% mask costs about a quarter of a full scan.

With one query, each block is selected among the scores above the running k-th best only
(one comparison pass), and blocks are large: streaming a block evicts the caches, so each
block's small torch ops start cold.
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from . import cpu_simd
from ._common import TopKArgs, finalize, inverse_norms, select_topk

__all__ = ["row_norms", "scan", "topk_torch"]

_NEG_INF = float("-inf")
# One or two queries on a half-precision corpus use the filtered matrix-vector path (without the C kernel).
_FILTER_MAX_BATCH = 2
# Batches up to this size use the C kernel (larger ones: BLAS on float32 blocks is as fast or faster).
_SIMD_MAX_BATCH = 512
# Rows per block of the streaming paths that need no conversion buffer (per-block overhead is fixed).
_FAST_BLOCK = 1 << 15
# Relative bound on the output rounding of the reduced-precision gemv (2x the unit roundoff).
_OUT_ROUNDING = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}


def topk_torch(args: TopKArgs, *, block_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Public-format ``(scores, indices)`` of shape ``(B, k)`` computed with torch ops."""
    scores, indices = scan(args, block_rows=block_rows)
    return finalize(args, scores, indices)


def _pow2_clamp(rows: int, lo: int, hi: int) -> int:
    rows = 1 << max(0, int(math.log2(max(1, rows))))
    return int(min(max(rows, lo), hi))


def _default_block_rows(args: TopKArgs) -> int:
    if args.device.type == "cuda":
        # the (B, rows) float32 scores <= 256 MiB, a float32 copy of the rows <= 512 MiB
        rows = min((1 << 26) // max(1, args.batch), (1 << 27) // args.dim)
        return _pow2_clamp(rows, 4096, 1 << 20)
    if _streams_in_place(args):
        # large blocks: streaming a block evicts the caches, so every block pays cold per-op
        # overheads afterwards; two blocks per thread at least; (B, rows) scores <= 8 MiB
        hi = _pow2_clamp((1 << 21) // args.batch, 1 << 13, 1 << 17)
        return _pow2_clamp(args.rows // (2 * torch.get_num_threads()), 1 << 13, hi)
    # (B, rows) scores of ~16 MiB: few enough blocks that the per-op thread synchronization stays
    # small (many small parallel ops are very slow on a busy machine)
    rows = (1 << 22) // max(1, args.batch)
    if args.corpus.dtype != torch.float32:
        rows = min(rows, (8 << 20) // (4 * args.dim))  # an 8 MiB buffer stays in the last-level cache
    return _pow2_clamp(rows, 1024, 1 << 18)


class _Running:
    """Running exact top-k of internal scores (higher is better) for ``B`` queries."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.scores: list[torch.Tensor] = []
        self.indices: list[torch.Tensor] = []
        self.width = 0

    def add(self, scores: torch.Tensor, indices: torch.Tensor) -> None:
        self.scores.append(scores)
        self.indices.append(indices)
        self.width += int(scores.shape[-1])
        if self.width >= 8 * self.k and len(self.scores) > 1:
            self.compact()

    def compact(self) -> None:
        if len(self.scores) > 1:
            s = torch.cat(self.scores, dim=-1)
            i = torch.cat(self.indices, dim=-1)
        else:
            s, i = self.scores[0], self.indices[0]
        s, i = select_topk(s, i, self.k)
        self.scores, self.indices, self.width = [s], [i], int(s.shape[-1])

    def kth(self) -> torch.Tensor | None:
        """Per-query k-th best score when ``k`` candidates are held, else ``None``."""
        if self.width < self.k:
            return None
        self.compact()
        return self.scores[0].amin(dim=-1)

    def result(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.scores:
            empty = torch.empty((batch, 0), device=device)
            return empty, empty.to(torch.int64)
        self.compact()
        return self.scores[0], self.indices[0]


@functools.lru_cache(maxsize=1)
def _faiss() -> Any:
    """The optional faiss module (its SIMD kernels stream float32 rows fastest), or None."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss if hasattr(faiss, "fvec_inner_products_ny") and hasattr(faiss, "fvec_norms_L2") else None


Rows = slice | torch.Tensor
"""The rows a block scores: a contiguous range, or the sorted positions of gathered rows."""


class _BlockScorer:
    """Internal scores of every query against one block of rows, in float32.

    A block is a contiguous range of rows (read in place) or the positions of rows that a
    sparse mask lets compete (read in place by the C kernel or faiss, or gathered into a
    cache-sized buffer). With the C kernel (``simd``) the faiss, BLAS and conversion-buffer
    members are unused.
    """

    def __init__(self, args: TopKArgs, block_rows: int) -> None:
        self.args = args
        q = args.queries
        self.q = q
        on_cpu = args.device.type == "cpu"
        # a single query is padded to two rows: MKL's gemm streams faster than its gemv
        self.q_mm = torch.cat([q, torch.zeros_like(q)]) if (q.shape[0] == 1 and on_cpu) else q
        qn = torch.linalg.vector_norm(q, dim=1)
        self.inv_q = inverse_norms(qn).unsqueeze(1)
        self.block_rows = block_rows
        self.simd = _use_simd(args)
        self.buf: torch.Tensor | None = None
        if args.corpus.dtype != torch.float32 and on_cpu and not self.simd:
            self.buf = torch.empty((block_rows, args.dim), dtype=torch.float32)
        self.gather_buf: torch.Tensor | None = None
        # faiss's fvec kernels beat BLAS for one query (and for row norms) on CPU
        self.faiss: Any = _faiss() if on_cpu else None
        self.q_np = q[0].numpy() if (self.faiss is not None and q.shape[0] == 1) else None
        # one float32 query can score gathered rows in place (no copy) when no norm must be computed
        self.in_place = (
            self.q_np is not None
            and args.corpus.dtype == torch.float32
            and args.corpus.is_contiguous()
            and args.corpus_scales is None
            and (args.metric == "ip" or args.corpus_norms is not None)
        )

    def rows_fp32(self, rows: Rows) -> torch.Tensor:
        corpus = self.args.corpus
        if isinstance(rows, torch.Tensor):
            xb = self._gather(rows)
        else:
            xb = corpus[rows]
        if xb.dtype == torch.float32:
            return xb
        n = int(xb.shape[0])
        if self.buf is None or n > self.buf.shape[0]:
            return xb.to(torch.float32)
        out = self.buf[:n]
        out.copy_(xb)
        return out

    def _gather(self, rows: torch.Tensor) -> torch.Tensor:
        """The rows at ``rows`` copied into a reused buffer of the storage type."""
        corpus = self.args.corpus
        n = int(rows.shape[0])
        if self.gather_buf is None or self.gather_buf.shape[0] < n:
            self.gather_buf = torch.empty(
                (max(n, self.block_rows), self.args.dim), dtype=corpus.dtype, device=corpus.device
            )
        out = self.gather_buf[:n]
        torch.index_select(corpus, 0, rows, out=out)
        return out

    def _faiss_ok(self, xf: torch.Tensor) -> bool:
        return self.faiss is not None and xf.is_contiguous()

    def norms(
        self, rows: Rows, xf: torch.Tensor | None, *, squared: bool = False, sq: torch.Tensor | None = None
    ) -> torch.Tensor:
        """|x| (or |x|^2) of the dequantized rows: given, computed by the C kernel (``sq``, the
        squares), or computed from the float32 block.

        Computed squares are summed directly (not squared roots), so integer data gives exact
        L2 scores and exact ties.
        """
        args = self.args
        if args.corpus_norms is not None:
            n = args.corpus_norms[rows]
            return n * n if squared else n
        if sq is not None:
            return sq if squared else sq.sqrt()
        assert xf is not None, "rows scored in place need given norms"
        count = int(xf.shape[0])
        if self._faiss_ok(xf):
            n = torch.empty(count, dtype=torch.float32)
            fn = self.faiss.fvec_norms_L2sqr if squared else self.faiss.fvec_norms_L2
            fn(self.faiss.swig_ptr(n.numpy()), self.faiss.swig_ptr(xf.numpy()), args.dim, count)
        elif squared:
            n = xf.square().sum(dim=1)
        else:
            n = torch.linalg.vector_norm(xf, dim=1)
        if args.corpus_scales is not None:
            sc = args.corpus_scales[rows]
            n = n * (sc * sc) if squared else n * sc.abs()
        return n

    def dots(self, xf: torch.Tensor) -> torch.Tensor:
        """(B, rows) float32 inner products of the queries with the float32 block."""
        rows = int(xf.shape[0])
        if self.q_np is not None and self._faiss_ok(xf):
            out = torch.empty((1, rows), dtype=torch.float32)
            sp = self.faiss.swig_ptr
            self.faiss.fvec_inner_products_ny(
                sp(out.numpy()), sp(self.q_np), sp(xf.numpy()), self.args.dim, rows
            )
            return out
        b = int(self.q.shape[0])
        if b >= 32:  # large batches: (B, rows) directly, no transposed copy
            return torch.mm(self.q, xf.t())
        # (rows, B) then transposed: BLAS streams the corpus block once in this orientation
        return torch.mm(xf, self.q_mm.t()).t()[:b].contiguous()

    def dots_in_place(self, rows: torch.Tensor) -> torch.Tensor:
        """(1, rows) inner products of the one query with the rows at ``rows``, read where they lie."""
        out = torch.empty((1, int(rows.shape[0])), dtype=torch.float32)
        sp = self.faiss.swig_ptr
        self.faiss.fvec_inner_products_by_idx(
            sp(out.numpy()), sp(self.q_np), sp(self.args.corpus.numpy()), sp(rows.numpy()),
            self.args.dim, 1, int(rows.shape[0]),
        )
        return out

    def scores(self, rows: Rows, mask: torch.Tensor | None) -> torch.Tensor:
        """Internal scores ``(B, len(rows))``; rows that ``mask`` rules out score -inf."""
        args = self.args
        xf: torch.Tensor | None = None
        sq: torch.Tensor | None = None
        if self.simd:
            want_sq = args.metric != "ip" and args.corpus_norms is None
            s, sq = cpu_simd.scores(args.corpus, self.q, rows, norms=want_sq)
        elif isinstance(rows, torch.Tensor) and self.in_place:
            s = self.dots_in_place(rows)
        else:
            xf = self.rows_fp32(rows)
            s = self.dots(xf)
        if args.corpus_scales is not None:
            s.mul_(args.corpus_scales[rows])
        if args.metric == "cosine":
            xn = self.norms(rows, xf, sq=sq)
            inv_x = inverse_norms(xn)
            s.mul_(self.inv_q).mul_(inv_x)
        elif args.metric == "l2":
            s.mul_(2.0).sub_(self.norms(rows, xf, squared=True, sq=sq))
        return apply_mask(s, mask, rows)


def apply_mask(s: torch.Tensor, mask: torch.Tensor | None, rows: Rows) -> torch.Tensor:
    """Set the scores of rows that may not compete (masked out) to -inf, in place."""
    if mask is None:
        return s
    return s.masked_fill_(mask[..., rows].logical_not(), _NEG_INF)


def select_block(s: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of a block of scores; rows scoring NaN never compete.

    torch.topk ranks NaN first, so a NaN can only hide among the selected values: the block is
    cleaned (NaN -> -inf) and selected again only then, which costs no pass in the common case.
    """
    vals, idx = select_topk(s, None, k)
    if bool(torch.isnan(vals).any()):
        s = torch.nan_to_num(s, nan=_NEG_INF, posinf=float("inf"), neginf=_NEG_INF)
        vals, idx = select_topk(s, None, k)
    return vals, idx


def select_above(
    s: torch.Tensor, k: int, floor: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Exact top-k of a block of scores among the entries above ``floor`` (per query), or None.

    ``floor`` is the running k-th best of earlier (lower-indexed) rows, so an entry equal to it
    loses the tie and only entries strictly above it can enter. For one query, one comparison
    pass finds them; after the first blocks there are few, and selecting among them is far
    cheaper than a full ``topk`` of the block. For a batch, torch's row-wise ``topk`` is about
    as fast as the comparison and compaction passes, so the block is selected directly.
    """
    if floor is None or s.shape[0] != 1:
        return select_block(s, k)
    pos = _positions_above(s[0], floor[0])
    if pos.shape[0] == 0:
        return None
    vals, p = select_topk(s[:, pos], None, k)
    return vals, pos[p]


# Rows per chunk of the chunk-maximum prefilter of ``_positions_above``.
_CHUNK = 1024


def _positions_above(row: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """Sorted positions of the entries of ``row`` strictly above ``floor`` (NaN never passes).

    Long rows are screened by chunk maxima first (one fast reduction), and only the chunks whose
    maximum passes (or is NaN, which hides the other entries' maximum) are compared entry by
    entry: after the first blocks of a scan only a few chunks hold a candidate.
    """
    n = int(row.shape[0])
    m = n - n % _CHUNK
    if m < 8 * _CHUNK:
        return (row > floor).nonzero().squeeze(1)
    cm = row[:m].view(-1, _CHUNK).amax(dim=1)
    hot = ((cm > floor) | cm.isnan()).nonzero().squeeze(1)
    idx = (hot.unsqueeze(1) * _CHUNK + torch.arange(_CHUNK, device=row.device)).flatten()
    pos = idx[row[idx] > floor]
    if m < n:
        pos = torch.cat([pos, (row[m:] > floor).nonzero().squeeze(1) + m])
    return pos


# A mask that lets at most this share of the rows compete makes the scan gather those rows.
_SPARSE_SHARE = 0.25


def _sparse_rows(args: TopKArgs) -> torch.Tensor | None:
    """Sorted positions of the rows that some query may rank, when the mask leaves few of them."""
    if args.mask is None:
        return None
    union = args.mask if args.mask.dim() == 1 else args.mask.any(dim=0)
    if union.device.type == "cpu":  # numpy counts and lists set bits several times faster
        bits = union.numpy()
        if np.count_nonzero(bits) > _SPARSE_SHARE * args.rows:
            return None
        return torch.from_numpy(np.flatnonzero(bits))
    if int(torch.count_nonzero(union)) > _SPARSE_SHARE * args.rows:
        return None
    return union.nonzero().squeeze(1)


def scan(
    args: TopKArgs, *, block_rows: int | None = None, threads: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Internal top-k candidates ``(B, <=k)`` (higher is better, unsorted) of the whole corpus.

    A sparse mask (at most a quarter of the rows may compete) makes the scan visit only the
    eligible rows: a single float32 query reads them in place, other cases gather them block
    by block into a cache-sized buffer. ``threads`` (default ``torch.get_num_threads()``)
    splits the C kernel and the single-query faiss paths over Python threads (both release the
    GIL); the other paths parallelize inside torch.
    """
    n, b = args.rows, args.batch
    if n == 0 or b == 0:
        return _Running(args.k).result(b, args.device)
    rows = _sparse_rows(args)
    if rows is None and _use_filter(args):
        nb = int(block_rows) if block_rows else _FAST_BLOCK
        return _scan_filtered(args, nb, _BlockScorer(args, min(nb, 4096)), _Running(args.k))
    nb = int(block_rows) if block_rows else _default_block_rows(args)
    total = n
    if rows is not None:
        total = int(rows.shape[0])
        if not block_rows and not _streams_in_place(args):
            nb = min(nb, _pow2_clamp((8 << 20) // (4 * args.dim), 256, 1 << 15))  # cache-sized gathers
    t = int(threads) if threads else torch.get_num_threads()
    if t > 1 and total >= 2 * nb and _streams_in_place(args):
        per = -(-total // (t * nb)) * nb  # rows per thread, a multiple of the block
        bounds = [(r0, min(total, r0 + per)) for r0 in range(0, total, per)]
        with ThreadPoolExecutor(max_workers=len(bounds)) as pool:
            parts = list(pool.map(lambda r: _scan_range(args, r[0], r[1], nb, rows), bounds))
        running = _Running(args.k)
        for sc, ix in parts:
            running.add(sc, ix)
        return running.result(b, args.device)
    return _scan_range(args, 0, total, nb, rows)


def _scan_range(
    args: TopKArgs, r0: int, r1: int, nb: int, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k candidates of rows ``r0:r1``, or of ``rows[r0:r1]`` when the rows are gathered."""
    if args.batch == 1 and _use_simd(args):
        return _simd_single_query(args, slice(r0, r1) if rows is None else rows[r0:r1])
    scorer = _BlockScorer(args, nb)
    running = _Running(args.k)
    # gathered rows of a shared mask all compete; a per-query mask still applies to them
    mask = None if (rows is not None and args.mask is not None and args.mask.dim() == 1) else args.mask
    for s0 in range(r0, r1, nb):
        s1 = min(r1, s0 + nb)
        block: Rows = slice(s0, s1) if rows is None else rows[s0:s1]
        found = select_above(scorer.scores(block, mask), args.k, running.kth())
        if found is None:
            continue
        vals, idx = found
        running.add(vals, idx + s0 if isinstance(block, slice) else block[idx])
    return running.result(args.batch, args.device)


def _simd_single_query(args: TopKArgs, rows: Rows) -> tuple[torch.Tensor, torch.Tensor]:
    """One query: the C kernel keeps the top-k while it scores (no score blocks, no selection passes)."""
    mask = args.mask
    if mask is not None:
        if mask.dim() == 1 and isinstance(rows, torch.Tensor):
            mask = None  # gathered rows of a shared mask all compete
        elif mask.dim() == 2:
            mask = mask[0]
    qscale = 1.0
    if args.metric == "cosine":  # the same float32 1/|q| as the block scorer's
        qscale = float(inverse_norms(torch.linalg.vector_norm(args.queries[0])))
    norms = args.corpus_norms.contiguous() if args.corpus_norms is not None else None
    s, i = cpu_simd.topk1(
        args.corpus, args.queries, rows, args.k, args.metric, norms=norms, qscale=qscale,
        mask=mask.contiguous() if mask is not None else None,
    )
    return s.unsqueeze(0), i.unsqueeze(0)


def _use_simd(args: TopKArgs) -> bool:
    """The C kernel scores this search (CPU, no int8 scales, a batch it is faster for)."""
    return (
        args.device.type == "cpu"
        and args.corpus_scales is None
        and 0 < args.batch <= _SIMD_MAX_BATCH
        and args.corpus.stride(1) == 1
        and cpu_simd.available(args.corpus.dtype)
    )


def _streams_in_place(args: TopKArgs) -> bool:
    """A GIL-releasing kernel streams the rows in place (large blocks, Python threads)."""
    return _use_simd(args) or _faiss_single_query(args)


def _faiss_single_query(args: TopKArgs) -> bool:
    return (
        args.device.type == "cpu"
        and args.batch == 1
        and args.corpus.dtype == torch.float32
        and args.corpus.is_contiguous()
        and _faiss() is not None
    )


# --------------------------------------------------------------------------------------
# filtered half-precision path


def _use_filter(args: TopKArgs) -> bool:
    return (
        args.device.type == "cpu"
        and args.corpus.dtype in _OUT_ROUNDING
        and 0 < args.batch <= _FILTER_MAX_BATCH
        and args.corpus_norms is not None
        and args.corpus.stride(1) == 1
        and not _use_simd(args)
        and _reduced_gemv_ok(args.corpus.dtype, args.dim)
    )


@functools.cache
def _reduced_gemv_ok(dtype: torch.dtype, dim: int) -> bool:
    """Self-check: torch's half-precision mv accumulates in float32 and rounds once.

    The filter's error bound relies on it; a platform whose kernel accumulates in half
    precision fails this check and the exact conversion path is used instead.
    """
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(512, dim, generator=g).to(dtype)
    x[:, : max(1, dim // 2)] *= 4.0  # large partial sums that a half-precision accumulator would round
    q = torch.nn.functional.normalize(torch.randn(dim, generator=g), dim=0).to(dtype)
    try:
        got = torch.mv(x, q).to(torch.float64)
    except RuntimeError:  # pragma: no cover - no half-precision mv on this platform
        return False
    ref = x.to(torch.float64) @ q.to(torch.float64)
    xn = torch.linalg.vector_norm(x.to(torch.float64), dim=1)
    bound = ref.abs() * _OUT_ROUNDING[dtype] + xn * dim * 2.0**-23 + 2.0**-24
    return bool(((got - ref).abs() <= bound).all())


def _scan_filtered(
    args: TopKArgs, nb: int, scorer: _BlockScorer, running: _Running
) -> tuple[torch.Tensor, torch.Tensor]:
    """One or two queries over a float16/bfloat16 corpus with known row norms.

    Per block and query: ``t = mv(X, q_hat)`` in the storage type (float32 accumulation, one
    rounding of the output), an upper bound ``e`` on ``|t - x.q_hat|``, then only rows whose
    optimistic score reaches the pessimistic k-th best are rescored exactly in float32.
    """
    n, b, k, d = args.rows, args.batch, args.k, args.dim
    dtype = args.corpus.dtype
    assert args.corpus_norms is not None
    norms_all = args.corpus_norms
    q = args.queries
    qn = torch.linalg.vector_norm(q, dim=1)
    if bool((qn == 0).any()):
        return _scan_range(args, 0, n, nb)
    q_hat = q / qn.unsqueeze(1)
    q_low = q_hat.to(dtype)
    # |q_low - q_hat| bounds the error of rounding the query: |x.(q_low - q_hat)| <= |x| dq
    dq = [float(v) * 1.001 for v in torch.linalg.vector_norm(q_low.to(torch.float32) - q_hat, dim=1)]
    rel_acc = d * 2.0**-23  # float32 accumulation error, relative to |x| |q_hat|
    u = _OUT_ROUNDING[dtype] + 2.0**-20  # output rounding, plus float32 rounding of the affine map
    qn_l = [float(v) for v in qn]
    cap = max(16 * k, 4096)
    thr: torch.Tensor | None = None
    metric = args.metric

    for s0 in range(0, n, nb):
        s1 = min(n, s0 + nb)
        xb = args.corpus[s0:s1]
        xn = norms_all[s0:s1]
        # internal score = a * (x.q_hat) + c, per row (a > 0)
        inv_x = inverse_norms(xn) if metric == "cosine" else None
        c = (xn * xn).neg_() if metric == "l2" else None
        cand_s: list[torch.Tensor] = []
        cand_i: list[torch.Tensor] = []
        exact_block: torch.Tensor | None = None
        for j in range(b):
            a = inv_x if inv_x is not None else (qn_l[j] if metric == "ip" else 2.0 * qn_l[j])
            t = torch.mv(xb, q_low[j]).to(torch.float32)
            # |t - x.q_hat| <= |x| (dq + rel_acc) + u |t| + tiny  (NaN rows never become candidates)
            base = xn * (dq[j] + rel_acc) + 2.0**-24
            if c is not None:
                base.add_(c.abs(), alpha=2.0**-20 / (2.0 * qn_l[j]))
            e = torch.addcmul(base, t.abs(), torch.full((), u)).mul_(a)
            sc = t.mul_(a)
            if c is not None:
                sc.add_(c)
            lower = sc - e
            upper = sc.add_(e)
            eligible = None
            if args.mask is not None:
                eligible = args.mask[s0:s1] if args.mask.dim() == 1 else args.mask[j, s0:s1]
                lower.masked_fill_(eligible.logical_not(), _NEG_INF)
            cut = torch.topk(lower, k).values[-1] if lower.shape[0] > k else lower.new_tensor(_NEG_INF)
            if thr is not None:
                cut = torch.maximum(cut, thr[j])
            if bool(cut > _NEG_INF):
                hit = upper >= cut
                if eligible is not None:
                    hit &= eligible
            else:  # fewer than k rows with a finite lower bound: every eligible row is a candidate
                hit = eligible if eligible is not None else torch.ones_like(upper, dtype=torch.bool)
            rows = hit.nonzero().squeeze(1)
            if rows.shape[0] <= cap:
                exact = _exact_scores(args, rows + s0, q[j])
                exact = torch.nan_to_num_(exact, nan=_NEG_INF, posinf=float("inf"), neginf=_NEG_INF)
                vals, pos = select_topk(exact.unsqueeze(0), None, k)
                cand_s.append(vals[0])
                cand_i.append(rows[pos[0]] + s0)
            else:  # too many candidates: score the block exactly
                if exact_block is None:
                    exact_block = scorer.scores(slice(s0, s1), args.mask)
                vals, pos = select_block(exact_block[j : j + 1], k)
                cand_s.append(vals[0])
                cand_i.append(pos[0] + s0)
        width = max(int(c_.shape[0]) for c_ in cand_s)
        running.add(_stack_padded(cand_s, width, _NEG_INF), _stack_padded(cand_i, width, -1))
        thr = running.kth()
    return running.result(b, args.device)


def _exact_scores(args: TopKArgs, rows: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """float32 internal scores of one query against the given rows."""
    x = args.corpus[rows].to(torch.float32)
    dot = x @ q
    if args.metric == "ip":
        return dot
    assert args.corpus_norms is not None
    xn = args.corpus_norms[rows]
    if args.metric == "cosine":
        qn = torch.linalg.vector_norm(q)
        inv = torch.where(xn > 0, 1.0 / (xn * qn), torch.zeros_like(xn))
        return dot * inv
    return 2.0 * dot - xn * xn


def _stack_padded(parts: list[torch.Tensor], width: int, fill: float) -> torch.Tensor:
    out = torch.full((len(parts), width), fill, dtype=parts[0].dtype, device=parts[0].device)
    for j, p in enumerate(parts):
        out[j, : p.shape[0]] = p
    return out


# --------------------------------------------------------------------------------------


def row_norms(
    corpus: torch.Tensor, corpus_scales: torch.Tensor | None = None, *, block_rows: int = 8192
) -> torch.Tensor:
    """float32 ``|x|`` of every row (dequantized with ``corpus_scales`` for int8), blockwise.

    Pass the result as ``corpus_norms`` to ``topk`` to skip recomputing it on every search.
    """
    n = int(corpus.shape[0])
    out = torch.empty(n, dtype=torch.float32, device=corpus.device)
    for s0 in range(0, n, block_rows):
        s1 = min(n, s0 + block_rows)
        out[s0:s1] = torch.linalg.vector_norm(corpus[s0:s1].to(torch.float32), dim=1)
    if corpus_scales is not None:
        out.mul_(corpus_scales.to(device=corpus.device, dtype=torch.float32).abs())
    return out
