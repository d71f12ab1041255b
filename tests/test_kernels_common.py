"""Shared float64 reference for the kernel tests, and tests of argument checking and key packing.

The other ``test_kernels_*`` modules import :func:`reference_topk` and :func:`check_topk` from here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from multimodal_store.errors import KernelError
from multimodal_store.kernels import MAX_K, available_backends, topk
from multimodal_store.kernels._common import (
    pack_keys,
    prepare,
    select_topk,
    sort_best_first,
    unpack_keys,
)

# --------------------------------------------------------------------------------------
# float64 reference


def reference_scores(
    queries: torch.Tensor, corpus: torch.Tensor, metric: str, scales: torch.Tensor | None = None
) -> torch.Tensor:
    """float64 (B, N) public scores: ip, cosine (0 for a zero vector), or true L2 distance."""
    q = queries.detach().cpu().to(torch.float64)
    if q.dim() == 1:
        q = q.unsqueeze(0)
    x = corpus.detach().cpu().to(torch.float64)
    if scales is not None:
        x = x * scales.detach().cpu().to(torch.float64).unsqueeze(1)
    if metric == "ip":
        return q @ x.T
    if metric == "cosine":
        qn = q.norm(dim=1, keepdim=True)
        xn = x.norm(dim=1, keepdim=True)
        dots = q @ x.T
        den = qn * xn.T
        return torch.where(
            den > 0, dots / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(dots)
        )
    return torch.cdist(q, x)


def reference_topk(
    scores: torch.Tensor, k: int, metric: str, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact reference ordering: best first, ties to the lower index, -1 / -inf (+inf) padding."""
    b, n = scores.shape
    out_s = torch.full((b, k), float("inf") if metric == "l2" else float("-inf"), dtype=torch.float64)
    out_i = torch.full((b, k), -1, dtype=torch.int64)
    m = torch.ones((b, n), dtype=torch.bool) if mask is None else mask.detach().cpu().expand(b, n)
    for r in range(b):
        cols = torch.nonzero(m[r]).squeeze(1).numpy()
        vals = scores[r].numpy()[cols]
        key = vals if metric == "l2" else -vals
        order = np.lexsort((cols, key))[:k]  # primary: key ascending, then column ascending
        out_s[r, : len(order)] = torch.from_numpy(vals[order])
        out_i[r, : len(order)] = torch.from_numpy(cols[order])
    return out_s, out_i


def check_topk(
    got: tuple[torch.Tensor, torch.Tensor],
    queries: torch.Tensor,
    corpus: torch.Tensor,
    k: int,
    metric: str,
    *,
    mask: torch.Tensor | None = None,
    tol: float = 1e-5,
    scales: torch.Tensor | None = None,
    exact_indices: bool = False,
) -> None:
    """Compare a result with the float64 reference.

    ``tol`` is relative to ``|q| * max|x|`` (the scale of an inner product). Checks shapes and dtypes,
    padding, that returned rows are eligible and distinct, the score of every returned index
    (recomputed), the sorted score lists, and the order (best first, ties by lower index). With
    ``exact_indices`` the indices must equal the reference exactly (use when scores are exact).
    """
    scores, idx = got
    q = queries if queries.dim() == 2 else queries.unsqueeze(0)
    b = q.shape[0]
    assert scores.shape == (b, k) and idx.shape == (b, k), (scores.shape, idx.shape)
    assert scores.dtype == torch.float32 and idx.dtype == torch.int64
    scores, idx = scores.detach().cpu().to(torch.float64), idx.detach().cpu()
    ref_all = reference_scores(q, corpus, metric, scales)
    ref_s, ref_i = reference_topk(ref_all, k, metric, mask)
    x64 = corpus.detach().cpu().to(torch.float64)
    if scales is not None:
        x64 = x64 * scales.detach().cpu().to(torch.float64).unsqueeze(1)
    xmax = float(x64.norm(dim=1).max()) if x64.shape[0] else 0.0
    fill = float("inf") if metric == "l2" else float("-inf")
    for r in range(b):
        scale = 1.0 if metric == "cosine" else max(float(q[r].double().norm()) * xmax, 1.0)
        if metric == "l2":
            scale = max(float(q[r].double().norm()) + xmax, 1.0)
        atol = tol * scale
        n_valid = int((ref_i[r] >= 0).sum())
        assert int((idx[r] >= 0).sum()) == n_valid, (r, idx[r], ref_i[r])
        assert bool((idx[r, :n_valid] >= 0).all()) and bool((idx[r, n_valid:] == -1).all())
        assert bool((scores[r, n_valid:] == fill).all()), scores[r]
        rows = idx[r, :n_valid]
        assert len(set(rows.tolist())) == n_valid, "duplicate rows"
        if mask is not None:
            m = mask.detach().cpu()
            m = m if m.dim() == 1 else m[r]
            assert bool(m[rows].all()), "a masked-out row was returned"
        # every returned score is the score of its row
        torch.testing.assert_close(scores[r, :n_valid], ref_all[r, rows], atol=atol, rtol=0)
        # the j-th best score matches the reference's j-th best (the set is right up to ties)
        torch.testing.assert_close(scores[r, :n_valid], ref_s[r, :n_valid], atol=2 * atol, rtol=0)
        # ordering: best first, equal scores by lower index
        s = scores[r, :n_valid]
        better = -s if metric == "l2" else s
        assert bool((better[:-1] >= better[1:]).all()), s
        same = better[:-1] == better[1:]
        assert bool((rows[:-1][same] < rows[1:][same]).all()), "ties must be ordered by lower index"
        if exact_indices:
            assert torch.equal(idx[r], ref_i[r]), (idx[r], ref_i[r])


def tolerance(dtype: torch.dtype, backend: str) -> float:
    """Relative tolerance: the torch backend computes in float32 with float32 queries; the Triton
    kernel rounds the queries to the storage type (float16 / bfloat16 / float16 for int8)."""
    if backend == "torch" or dtype == torch.float32:
        return 2e-5
    return {torch.float16: 3e-3, torch.int8: 3e-3, torch.bfloat16: 2e-2}[dtype]


def make_corpus(
    n: int, d: int, dtype: torch.dtype, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Random rows in ``dtype`` (int8 comes with per-row scales)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    if dtype == torch.int8:
        scales = x.abs().amax(dim=1).clamp(min=1e-6) / 127.0
        return torch.round(x / scales.unsqueeze(1)).to(torch.int8), scales
    return x.to(dtype), None


# --------------------------------------------------------------------------------------
# the reference itself


def test_reference_orders_ties_by_index() -> None:
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=torch.float64)
    rs, ri = reference_topk(s, 4, "ip")
    assert ri.tolist() == [[1, 2, 4, 3]]
    rs, ri = reference_topk(s, 7, "l2", mask=torch.tensor([True, False, True, True, True]))
    assert ri.tolist() == [[0, 3, 2, 4, -1, -1, -1]]
    assert rs[0, -1] == float("inf")


# --------------------------------------------------------------------------------------
# packing and exact selection helpers


def test_pack_keys_order_matches_score_then_lower_row() -> None:
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2000, generator=g)
    s[::7] = 0.0
    s[1::7] = -0.0
    s[2::11] = float("-inf")
    s[3::13] = float("inf")
    s[100:110] = 1.5
    rows = torch.randperm(2000, generator=g)
    keys = pack_keys(s, rows)
    got_s, got_r = unpack_keys(keys)
    assert torch.equal(got_r, rows)
    assert torch.equal(got_s, torch.where(s == 0, torch.zeros_like(s), s))
    order = torch.argsort(keys, descending=True)
    ref = np.lexsort((rows.numpy(), -np.where(s.numpy() == 0, 0.0, s.numpy())))
    assert torch.equal(order, torch.from_numpy(ref))


@pytest.mark.parametrize("k", [1, 3, 8, 50])
def test_select_topk_exact_with_ties(k: int) -> None:
    g = torch.Generator().manual_seed(k)
    s = torch.randint(0, 6, (4, 40), generator=g).float()
    s[1, :] = float("-inf")
    s[2, 5:] = float("-inf")
    idx = torch.randperm(40, generator=g).expand(4, 40).contiguous()
    vals, got = select_topk(s, idx, k)
    vals, got = sort_best_first(vals, got)
    for r in range(4):
        order = np.lexsort((idx[r].numpy(), -s[r].numpy()))[:k]
        assert torch.equal(vals[r], s[r][order])
        finite = vals[r] > float("-inf")  # -inf entries are "empty": any of them may be kept
        assert torch.equal(got[r][finite], idx[r][order][finite]), (r, got[r], idx[r][order])


# --------------------------------------------------------------------------------------
# argument checking (shared by every backend)


def test_validation_messages() -> None:
    q = torch.randn(2, 384)
    x = torch.randn(10, 512)
    with pytest.raises(KernelError, match="query dim 384 does not match corpus dim 512"):
        topk(q, x, 3)
    x = torch.randn(10, 384)
    with pytest.raises(KernelError, match=f"k=4096 exceeds the maximum supported k of {MAX_K}"):
        topk(q, x, 4096)
    with pytest.raises(KernelError, match="k must be at least 1, got 0"):
        topk(q, x, 0)
    with pytest.raises(KernelError, match="k must be an int, got float"):
        topk(q, x, 2.0)  # type: ignore[arg-type]
    with pytest.raises(KernelError, match="metric must be one of 'cosine', 'ip', 'l2', got 'dot'"):
        topk(q, x, 3, metric="dot")
    with pytest.raises(KernelError, match="backend must be one of 'auto', 'triton', 'torch', got 'cuda'"):
        topk(q, x, 3, backend="cuda")
    with pytest.raises(
        KernelError, match=r"mask must have shape \(N,\) = \(10,\) or \(B, N\) = \(2, 10\), got \(9,\)"
    ):
        topk(q, x, 3, mask=torch.ones(9, dtype=torch.bool))
    with pytest.raises(KernelError, match="mask dtype must be bool"):
        topk(q, x, 3, mask=torch.ones(10, dtype=torch.int64))
    with pytest.raises(KernelError, match=r"corpus_norms must have shape \(10,\), got \(3,\)"):
        topk(q, x, 3, corpus_norms=torch.ones(3))
    with pytest.raises(KernelError, match="corpus_scales is only for an int8 corpus"):
        topk(q, x, 3, corpus_scales=torch.ones(10))
    with pytest.raises(KernelError, match=r"corpus must be 2-D \(N, d\), got shape \(2, 5, 384\)"):
        topk(q, torch.randn(2, 5, 384), 3)
    with pytest.raises(KernelError, match=r"queries must be 1-D \(d,\) or 2-D \(B, d\)"):
        topk(torch.randn(1, 2, 384), x, 3)
    with pytest.raises(KernelError, match="queries contain NaN or infinity"):
        topk(torch.full((384,), float("nan")), x, 3)
    with pytest.raises(KernelError, match="corpus dtype must be float32, float16, bfloat16 or int8"):
        topk(q, x.to(torch.int32), 3)
    # KernelError is a ValueError for callers that do not know this package
    with pytest.raises(ValueError):
        topk(q, x, 3, metric="nope")


def test_prepare_normalizes_inputs() -> None:
    q = np.random.default_rng(0).standard_normal(8)  # numpy float64, 1-D
    x = np.random.default_rng(1).standard_normal((5, 8))
    args = prepare(q, x, 3, "ip", mask=np.array([True, False, True, True, True]))
    assert args.queries.shape == (1, 8) and args.queries.dtype == torch.float32
    assert args.corpus.dtype == torch.float32 and args.mask is not None and args.mask.shape == (5,)


def test_available_backends_lists_torch() -> None:
    backends = available_backends()
    assert backends[0] == "torch"
    assert set(backends) <= {"torch", "triton"}


def test_import_and_search_without_triton() -> None:
    """``import multimodal_store.kernels`` and the torch backend work when triton cannot be imported."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["triton"] = None  # any "import triton" now raises ImportError
        import torch
        from multimodal_store.kernels import topk, available_backends
        s, i = topk(torch.randn(3, 16), torch.randn(50, 16), 4)
        assert s.shape == (3, 4) and i.shape == (3, 4)
        assert available_backends() == ["torch"], available_backends()
        try:
            topk(torch.randn(16), torch.randn(50, 16), 4, backend="triton")
        except ValueError as e:
            assert "triton" in str(e), e
        else:
            raise AssertionError("backend='triton' should fail without triton")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
