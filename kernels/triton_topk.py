# mypy: allow-untyped-defs
# (the @triton.jit kernels cannot carry Python type annotations; the host functions are typed)
"""The Triton backend: a fused, two-stage exact top-k search.

Stage 1 (:func:`_topk_stage1`): one program per (block of queries, contiguous slice of rows).
It walks its slice tile by tile: ``tl.dot`` with float32 accumulation (``input_precision=
"ieee"`` for float32 inputs), the metric's scaling (``1/|q|`` precomputed per query, ``1/|x|``
given or computed from the same loads), masked / out-of-range rows to -inf, then packs every
``(score, row)`` into one int64 key whose integer order is the score order with ties to the
lower row (high 32 bits: the float bits made monotonic; low 32 bits: ``2^31 - 1 - row``), so
the running top-k needs no argsort and carries exact indices. A tile is merged only when its
best key beats the running k-th best (threshold skip), by

* ``MERGE = 0`` "replace-min" (``K_PAD <= 64``): while the tile's best beats the running
  minimum, swap it in, using only max / min / where;
* ``MERGE = 1`` bitonic (``K_PAD <= 256``): a bitonic top-k network reduces the tile to its best
  ``K_PAD`` keys in ascending order; ``max(running_desc, tile_asc)`` holds the best ``K_PAD`` of
  both (a bitonic sequence) and ``log2(K_PAD)`` half-cleaner stages sort it again. The network is
  written out here instead of calling ``tl.topk`` / ``tl.sort``: those find compare-exchange
  partners with an xor-reduction, which the interpreter runs element by element (~25x slower
  tests), and they compiled slower with more registers (sm_90, K=256: 252 vs 172 registers).

Stage 2 merges the per-program candidates (``B x splits x K_PAD`` keys, small) with
``torch.topk`` on the keys, which are unique, so the result is exact and ordered. No ``B x N``
score matrix exists at any time. For ``k > 256`` the chunked matmul + ``torch.topk`` scan of
:mod:`.torch_topk` is used on the same device.

Under ``TRITON_INTERPRET=1`` the same kernel runs on CPU tensors (tests); bfloat16 is stored as
uint16 there, so tiles are upcast to float32 after loading (``UPCAST``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from multimodal_store.errors import KernelError

from ._common import TopKArgs, finalize, inverse_norms, unpack_keys
from .configs import MAX_BITONIC_K, MAX_REPLACE_MIN_K, current_backend, prune_stage1, stage1_configs
from .torch_topk import topk_torch

__all__ = ["INTERPRET", "launch_stage1", "topk_triton"]

INTERPRET = current_backend() == "interpreter"

# Smallest int64: the key of an entry that may not compete. The running list starts filled
# with the distinct keys _KEY_EMPTY + j, which still rank below every real key.
_KEY_EMPTY: tl.constexpr = tl.constexpr(-(2**63))
_KEY_REAL_MIN = -(2**63) + 2**32  # every key of a real (score, row) pair is >= this

_METRIC_CODE = {"ip": 0, "cosine": 1, "l2": 2}


def _combine(name: str, fallback: object) -> object:
    """A combine function of ``triton.language.standard`` if present (the interpreter runs those
    with numpy; any other combine function is interpreted element by element)."""
    return getattr(tl.standard, name, None) or fallback


@triton.jit
def _max_fn(a, b):
    return tl.maximum(a, b)


@triton.jit
def _min_fn(a, b):
    return tl.minimum(a, b)


@triton.jit
def _sum_fn(a, b):
    return a + b


_MAX = _combine("_elementwise_max", _max_fn)
_MIN = _combine("_elementwise_min", _min_fn)
_SUM = _combine("_sum_combine", _sum_fn)


@triton.jit
def _merge_replace_min(top, key, best, kth):
    """Replace-min: while a tile key beats the running minimum, swap it in (max / min / where only).

    Keys are unique (the row is part of the key, empty slots are distinct), so ``==`` picks one slot.
    """
    go = tl.reduce((best > kth).to(tl.int32), 0, _MAX)
    while go > 0:
        # a query whose best does not beat its minimum writes the minimum back and drops its best
        # (the minimum only grows, so that key can never enter any more)
        top = tl.where(top == kth[:, None], tl.maximum(best, kth)[:, None], top)
        key = tl.where(key == best[:, None], _KEY_EMPTY, key)
        best = tl.reduce(key, 1, _MAX)
        kth = tl.reduce(top, 1, _MIN)
        go = tl.reduce((best > kth).to(tl.int32), 0, _MAX)
    return top, kth


@triton.jit
def _merge_bitonic(
    top, key, BLOCK_Q: tl.constexpr, LOG_N: tl.constexpr, K_PAD: tl.constexpr, LOG_K: tl.constexpr
):
    """Best ``K_PAD`` of the running list (sorted descending) and a tile, sorted descending.

    The tile is reduced to its top ``K_PAD`` in ascending order with a bitonic top-k network
    (sort runs of ``K_PAD`` in alternating directions, then repeatedly keep the elementwise max of
    adjacent runs and re-merge). ``max(running_desc, tile_asc)`` is a bitonic sequence holding the
    best ``K_PAD`` of both; ``LOG_K`` half-cleaner stages sort it. Rows are viewed as hypercubes
    ``(BLOCK_Q, 2, ..., 2)``; bit ``b`` of a position is axis ``n - b``. The partner of an element
    across a bit is ``sum(pair) - element`` (int64, wrapping), which keeps every step a builtin.
    """
    # (constexpr names cannot be reassigned inside the unrolled loops, hence the repeated expressions)
    # 1) sort runs of K_PAD, alternating directions (the last pass of the whole network ascending)
    h = tl.reshape(key, [BLOCK_Q] + [2] * LOG_N)
    for st in tl.static_range(1, LOG_K + 1):
        for i in tl.static_range(st):
            # compare-exchange across bit (st - 1 - i), i.e. hypercube axis LOG_N - (st - 1 - i)
            part = tl.reduce(h, LOG_N - st + 1 + i, _SUM, keep_dims=True) - h
            right = tl.reshape(tl.arange(0, 2), [1] * (LOG_N - st + 1 + i) + [2] + [1] * (st - 1 - i))
            if st < LOG_N:
                desc = tl.reshape(tl.arange(0, 2), [1] * (LOG_N - st) + [2] + [1] * st) == 0
                take_hi = (right == 0) == desc
            else:  # K_PAD == BLOCK_N: this is the final pass, ascending
                take_hi = right == 1
            h = tl.where(take_hi, tl.maximum(h, part), tl.minimum(h, part))
    # 2) halve: keep the elementwise max of adjacent (descending, ascending) runs, re-merge
    for r in tl.static_range(LOG_N - LOG_K):
        h = tl.reduce(h, LOG_N - r - LOG_K, _MAX)  # LOG_N - r - 1 bits remain
        for i in tl.static_range(LOG_K):
            # bit (LOG_K - 1 - i) is axis (LOG_N - r - 1) - (LOG_K - 1 - i)
            part = tl.reduce(h, LOG_N - r - LOG_K + i, _SUM, keep_dims=True) - h
            right = tl.reshape(tl.arange(0, 2), [1] * (LOG_N - r - LOG_K + i) + [2] + [1] * (LOG_K - 1 - i))
            if LOG_N - r - 1 > LOG_K:
                desc = tl.reshape(tl.arange(0, 2), [1] * (LOG_N - r - 1 - LOG_K) + [2] + [1] * LOG_K) == 0
                take_hi = (right == 0) == desc
            else:  # the last round: ascending
                take_hi = right == 1
            h = tl.where(take_hi, tl.maximum(h, part), tl.minimum(h, part))
    tile_asc = tl.reshape(h, [BLOCK_Q, K_PAD])
    # 3) bitonic merge of max(running_desc, tile_asc), descending
    g = tl.reshape(tl.maximum(top, tile_asc), [BLOCK_Q] + [2] * LOG_K)
    for i in tl.static_range(LOG_K):
        part = tl.reduce(g, 1 + i, _SUM, keep_dims=True) - g
        right = tl.reshape(tl.arange(0, 2), [1] * (1 + i) + [2] + [1] * (LOG_K - 1 - i))
        g = tl.where(right == 0, tl.maximum(g, part), tl.minimum(g, part))
    return tl.reshape(g, [BLOCK_Q, K_PAD])


@triton.autotune(
    configs=stage1_configs(),
    key=["B_BUCKET", "D", "K_PAD", "MERGE", "METRIC", "HAS_NORMS", "HAS_MASK"],
    prune_configs_by={"early_config_prune": prune_stage1},
)
@triton.jit
def _topk_stage1(
    q_ptr,  # (B, D) queries in the compute dtype
    x_ptr,  # (N, D) corpus, unit stride along D
    qinv_ptr,  # (B,) float32 1/|q| (cosine)
    scale_ptr,  # (N,) float32 per-row scales (int8 corpus)
    norm_ptr,  # (N,) float32 |x| of the dequantized rows
    mask_ptr,  # (N,) or (B, N) uint8, nonzero = may compete
    out_ptr,  # (B, n_splits, K_PAD) int64 candidate keys
    B,
    N,
    D,
    stride_q,
    stride_x,
    stride_m,
    n_splits,
    B_BUCKET,  # next power of two of B (<= 256): the autotune key, so every batch size does not retune
    K_PAD: tl.constexpr,
    LOG_K: tl.constexpr,
    MERGE: tl.constexpr,  # 0 replace-min, 1 bitonic
    METRIC: tl.constexpr,  # 0 ip, 1 cosine, 2 l2
    HAS_SCALE: tl.constexpr,
    HAS_NORMS: tl.constexpr,
    HAS_MASK: tl.constexpr,
    MASK_2D: tl.constexpr,
    X_INT8: tl.constexpr,
    FP32_DOT: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    LOG_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_q = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = offs_q < B
    n_tiles = (N + BLOCK_N - 1) // BLOCK_N
    per_split = (n_tiles + n_splits - 1) // n_splits
    t_begin = pid_s * per_split
    t_end = tl.minimum(t_begin + per_split, n_tiles)

    jk = tl.arange(0, K_PAD)
    # distinct "empty" keys, sorted descending (the bitonic merge keeps the list sorted)
    top = tl.zeros([BLOCK_Q, K_PAD], dtype=tl.int64) + ((K_PAD - 1 - jk).to(tl.int64) + _KEY_EMPTY)[None, :]
    kth = tl.reduce(top, 1, _MIN)
    qinv = tl.zeros([BLOCK_Q], dtype=tl.float32)
    if METRIC == 1:
        qinv = tl.load(qinv_ptr + offs_q, mask=q_ok, other=0.0)
    q_rows = offs_q.to(tl.int64) * stride_q

    for t in range(t_begin, t_end):
        offs_n = t * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        x_rows = offs_n.to(tl.int64) * stride_x
        acc = tl.zeros([BLOCK_Q, BLOCK_N], dtype=tl.float32)
        xx = tl.zeros([BLOCK_N], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            d_ok = offs_d < D
            qt = tl.load(
                q_ptr + q_rows[:, None] + offs_d[None, :], mask=q_ok[:, None] & d_ok[None, :], other=0.0
            )
            xt = tl.load(
                x_ptr + x_rows[:, None] + offs_d[None, :], mask=n_ok[:, None] & d_ok[None, :], other=0
            )
            if UPCAST:
                qt = qt.to(tl.float32)
                xt = xt.to(tl.float32)
            elif X_INT8:
                xt = xt.to(qt.dtype)
            if FP32_DOT:
                acc = tl.dot(qt, tl.trans(xt), acc, input_precision="ieee")
            else:
                acc = tl.dot(qt, tl.trans(xt), acc)
            if METRIC != 0 and not HAS_NORMS:
                xf = xt.to(tl.float32)
                xx += tl.reduce(xf * xf, 1, _SUM)

        if HAS_SCALE:
            sc = tl.load(scale_ptr + offs_n, mask=n_ok, other=0.0)
            acc = acc * sc[None, :]
            xx = xx * (sc * sc)
        if METRIC == 1:
            if HAS_NORMS:
                xn = tl.load(norm_ptr + offs_n, mask=n_ok, other=0.0)
            else:
                xn = tl.sqrt(xx)
            inv_x = tl.where(xn > 0, 1.0 / tl.where(xn > 0, xn, 1.0), 0.0)
            s = acc * qinv[:, None] * inv_x[None, :]
        elif METRIC == 2:
            if HAS_NORMS:
                xn = tl.load(norm_ptr + offs_n, mask=n_ok, other=0.0)
                xx = xn * xn
            s = 2.0 * acc - xx[None, :]
        else:
            s = acc

        valid = q_ok[:, None] & n_ok[None, :] & (s == s)  # NaN scores never compete
        if HAS_MASK:
            if MASK_2D:
                m_ptrs = mask_ptr + offs_q.to(tl.int64)[:, None] * stride_m + offs_n[None, :]
                mv = tl.load(m_ptrs, mask=q_ok[:, None] & n_ok[None, :], other=0)
                valid = valid & (mv != 0)
            else:
                mv = tl.load(mask_ptr + offs_n, mask=n_ok, other=0)
                valid = valid & (mv != 0)[None, :]
        # (score, row) -> int64 key: monotonic float bits above, 2^31 - 1 - row below
        s = tl.where(s == 0.0, 0.0, s)  # -0.0 and +0.0 are the same score
        bits = s.to(tl.int32, bitcast=True)
        mono = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
        key = (mono.to(tl.int64) << 32) | (2147483647 - offs_n).to(tl.int64)[None, :]
        key = tl.where(valid, key, _KEY_EMPTY)

        best = tl.reduce(key, 1, _MAX)
        if tl.reduce((best > kth).to(tl.int32), 0, _MAX) > 0:  # threshold skip
            if MERGE == 0:
                top, kth = _merge_replace_min(top, key, best, kth)
            else:
                top = _merge_bitonic(top, key, BLOCK_Q, LOG_N, K_PAD, LOG_K)
                kth = tl.reduce(top, 1, _MIN)

    out = out_ptr + offs_q.to(tl.int64)[:, None] * (n_splits * K_PAD) + pid_s * K_PAD + jk[None, :]
    tl.store(out, top, mask=q_ok[:, None])


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _num_splits(args: TopKArgs, k_pad: int) -> int:
    """Row slices per query block: enough programs to fill the GPU, >= 1024 rows per slice."""
    n = args.rows
    if INTERPRET or args.device.type != "cuda":
        # every program fills its own running list first: few programs keep the interpreter fast
        return max(1, min(4, triton.cdiv(n, 8192)))
    sms = torch.cuda.get_device_properties(args.device).multi_processor_count
    q_blocks = triton.cdiv(args.batch, 16)
    splits = triton.cdiv(4 * sms, q_blocks)
    splits = min(splits, triton.cdiv(n, 1024))
    # keep the candidate buffer small (<= 64 MiB of keys)
    splits = min(splits, max(1, (64 << 20) // (8 * max(1, args.batch) * k_pad)))
    return max(1, splits)


def launch_stage1(args: TopKArgs, k_pad: int, merge: int, n_splits: int | None = None) -> torch.Tensor:
    """Check shapes, allocate, build the grid and run stage 1; returns the (B, splits*K_PAD) keys."""
    x = args.corpus
    if x.stride(1) != 1:
        x = x.contiguous()
    if x.dtype == torch.int8:
        q = args.queries.to(torch.float16)
    else:
        q = args.queries.to(x.dtype)
    q = q.contiguous()
    b, n, d = args.batch, args.rows, args.dim
    if n >= 2**31 - 1:
        raise KernelError(f"the triton backend handles at most {2**31 - 2} rows, got {n}")
    splits = int(n_splits) if n_splits else _num_splits(args, k_pad)
    out = torch.empty((b, splits, k_pad), dtype=torch.int64, device=x.device)
    dummy = out
    qinv = dummy
    if args.metric == "cosine":
        qn = torch.linalg.vector_norm(args.queries, dim=1)
        qinv = inverse_norms(qn).contiguous()
    scales = args.corpus_scales if args.corpus_scales is not None else dummy
    norms = args.corpus_norms if (args.corpus_norms is not None and args.metric != "ip") else None
    mask = args.mask.view(torch.uint8) if args.mask is not None else None
    stride_m = int(mask.stride(0)) if (mask is not None and mask.dim() == 2) else 0

    def grid(meta: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(b, meta["BLOCK_Q"]), splits)

    _topk_stage1[grid](
        q,
        x,
        qinv,
        scales,
        norms if norms is not None else dummy,
        mask if mask is not None else dummy,
        out,
        b,
        n,
        d,
        q.stride(0),
        x.stride(0),
        stride_m,
        splits,
        min(_next_pow2(b), 256),
        K_PAD=k_pad,
        LOG_K=k_pad.bit_length() - 1,
        MERGE=merge,
        METRIC=_METRIC_CODE[args.metric],
        HAS_SCALE=args.corpus_scales is not None,
        HAS_NORMS=norms is not None,
        HAS_MASK=mask is not None,
        MASK_2D=mask is not None and mask.dim() == 2,
        X_INT8=x.dtype == torch.int8,
        FP32_DOT=x.dtype == torch.float32,
        UPCAST=INTERPRET,
    )
    return out.view(b, splits * k_pad)


def merge_stage2(keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 2: the best ``k`` of the per-program candidate keys -> (scores, rows), -inf/-1 if empty."""
    kk = min(k, int(keys.shape[1]))
    top = torch.topk(keys, kk, dim=1).values
    scores, rows = unpack_keys(top)
    empty = top < _KEY_REAL_MIN
    scores = torch.where(empty, torch.full_like(scores, float("-inf")), scores)
    rows = torch.where(empty, torch.full_like(rows, -1), rows)
    return scores, rows


def topk_triton(
    args: TopKArgs, *, n_splits: int | None = None, merge: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Public-format ``(scores, indices)`` computed by the Triton kernels.

    ``merge`` forces a merge strategy (0 replace-min, 1 bitonic) for tests; by default it is
    chosen from ``k``. ``k > 256`` uses the chunked matmul + ``torch.topk`` scan.
    """
    if args.device.type != "cuda" and not INTERPRET:
        raise KernelError(
            f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1), got a corpus on {args.device}"
        )
    k_pad = _next_pow2(args.k)
    if merge is None:
        merge = 0 if k_pad <= MAX_REPLACE_MIN_K else 1
    if k_pad > MAX_BITONIC_K or args.rows == 0 or args.batch == 0:
        return topk_torch(args)
    if merge not in (0, 1):
        raise KernelError(f"merge must be 0 (replace-min) or 1 (bitonic), got {merge}")
    keys = launch_stage1(args, k_pad, merge, n_splits)
    scores, rows = merge_stage2(keys, args.k)
    return finalize(args, scores, rows)
