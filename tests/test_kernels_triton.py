"""The Triton backend against the float64 reference.

Without a GPU (``tests/conftest.py`` sets ``TRITON_INTERPRET=1``) the same kernels run in Triton's
interpreter on CPU tensors: every interpreted op costs ~1 ms whatever its size, so the sizes stay
small (N <= 10k) and the bitonic merge, whose network is hundreds of ops, runs on a few tiles only.
Tests marked ``gpu`` run the compiled kernels on CUDA against the same reference.
"""

from __future__ import annotations

import pytest
import torch
from test_kernels_common import check_topk, make_corpus, reference_scores, tolerance

from multimodal_store.kernels import row_norms, topk
from multimodal_store.kernels._common import prepare

pytest.importorskip("triton")

from multimodal_store.kernels import triton_topk as tk

METRICS = ["cosine", "ip", "l2"]
needs_kernel = pytest.mark.skipif(
    not torch.cuda.is_available() and not tk.INTERPRET,
    reason="needs CUDA or TRITON_INTERPRET=1",
)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _triton(q, x, k, metric, *, mask=None, norms=None, scales=None, merge=None, n_splits=None):
    args = prepare(q, x, k, metric, mask, norms, scales)
    return tk.topk_triton(args, merge=merge, n_splits=n_splits)


# --------------------------------------------------------------------------------------
# interpreter-sized tests (also run on a GPU)


@needs_kernel
@pytest.mark.parametrize(
    ("dtype", "metric", "mask_kind"),
    [
        (torch.float32, "cosine", "none"),
        (torch.float32, "l2", "per_query"),
        (torch.float16, "ip", "shared"),
        (torch.float16, "cosine", "per_query"),
        (torch.bfloat16, "l2", "none"),
        (torch.bfloat16, "cosine", "shared"),
        (torch.int8, "cosine", "none"),
        (torch.int8, "ip", "shared"),
    ],
    ids=str,
)
def test_replace_min(dtype: torch.dtype, metric: str, mask_kind: str) -> None:
    x, scales = make_corpus(1500, 40, dtype, seed=1)  # non-power-of-two d, two 1024-row tiles
    q = torch.randn(3, 40, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    mask = None
    if mask_kind == "shared":
        mask = torch.rand(1500, generator=g) < 0.4
    elif mask_kind == "per_query":
        mask = torch.rand(3, 1500, generator=g) < 0.3
    got = _triton(
        q.to(DEVICE),
        x.to(DEVICE),
        9,
        metric,
        mask=None if mask is None else mask.to(DEVICE),
        scales=None if scales is None else scales.to(DEVICE),
    )
    check_topk(got, q, x, 9, metric, mask=mask, tol=tolerance(dtype, "triton"), scales=scales)


@needs_kernel
@pytest.mark.parametrize(("metric", "k"), [("ip", 8), ("cosine", 100)])
def test_bitonic(metric: str, k: int) -> None:
    """The bitonic merge (K_PAD 8 forced, and 128 as chosen for k=100) over a few tiles."""
    x, _ = make_corpus(1100 if k == 8 else 1500, 16, torch.float32, seed=4)
    q = torch.randn(2, 16, generator=torch.Generator().manual_seed(5))
    got = _triton(q.to(DEVICE), x.to(DEVICE), k, metric, merge=1)
    check_topk(got, q, x, k, metric)


@needs_kernel
def test_many_splits_some_empty() -> None:
    """Five row slices over three tiles: empty slices contribute only empty keys."""
    x, _ = make_corpus(2100, 20, torch.float32, seed=6)
    q = torch.randn(2, 20, generator=torch.Generator().manual_seed(7))
    norms = row_norms(x)
    got = _triton(q.to(DEVICE), x.to(DEVICE), 6, "cosine", norms=norms.to(DEVICE), n_splits=5)
    check_topk(got, q, x, 6, "cosine")


@needs_kernel
def test_k_larger_than_n_single_row_and_all_masked() -> None:
    x = torch.randn(1, 12)
    q = torch.randn(2, 12)
    got = _triton(q.to(DEVICE), x.to(DEVICE), 5, "l2")
    check_topk(got, q, x, 5, "l2")
    x = torch.randn(30, 12)
    got = _triton(q.to(DEVICE), x.to(DEVICE), 40, "ip")
    check_topk(got, q, x, 40, "ip")
    none = torch.zeros(30, dtype=torch.bool)
    s, i = _triton(q.to(DEVICE), x.to(DEVICE), 4, "cosine", mask=none.to(DEVICE))
    assert bool((i == -1).all()) and bool((s == float("-inf")).all())


@needs_kernel
@pytest.mark.parametrize("merge", [0, 1])
def test_exact_ties_and_zero_vectors(merge: int) -> None:
    """Integer data (exact scores, many duplicates) and zero rows / a zero query."""
    g = torch.Generator().manual_seed(8)
    base = torch.randint(-2, 3, (20, 16), generator=g).float()
    x = base[torch.randint(0, 20, (1100,), generator=g)]
    x[[0, 7, 500]] = 0.0
    q = torch.randint(-2, 3, (2, 16), generator=g).float()
    q[1] = 0.0  # zero query: every cosine is 0, so the first k rows in index order
    for metric in METRICS:
        got = _triton(q.to(DEVICE), x.to(DEVICE), 16, metric, merge=merge)
        check_topk(got, q, x, 16, metric, exact_indices=True)
    s, i = _triton(q.to(DEVICE), x.to(DEVICE), 16, "cosine", merge=merge)
    assert i[1].tolist() == list(range(16)) and bool((s[1] == 0).all())


@needs_kernel
def test_nan_rows_never_compete() -> None:
    x = torch.randn(300, 8)
    x[[3, 100]] = float("nan")
    q = torch.randn(2, 8)
    _s, i = _triton(q.to(DEVICE), x.to(DEVICE), 299, "ip")
    assert not bool(torch.isin(i.cpu(), torch.tensor([3, 100])).any())
    assert int((i == -1).sum(dim=1).min()) == 1


@needs_kernel
def test_large_k_uses_chunked_path_and_public_dispatch() -> None:
    x, _ = make_corpus(700, 24, torch.float16, seed=9)
    q = torch.randn(2, 24, generator=torch.Generator().manual_seed(10))
    got = topk(q.to(DEVICE), x.to(DEVICE), 300, metric="cosine", backend="triton")  # k > 256
    check_topk(got, q, x, 300, "cosine", tol=tolerance(torch.float16, "torch"))
    got = topk(q[0].to(DEVICE), x.to(DEVICE), 5, metric="l2", backend="triton")  # 1-D query
    assert got[0].shape == (1, 5)
    check_topk(got, q[0], x, 5, "l2", tol=tolerance(torch.float16, "triton"))


@needs_kernel
def test_ci_size_n10k_d512() -> None:
    """The CI size of the design doc: N = 10k, d = 512, B = 4."""
    x, _ = make_corpus(10_000, 512, torch.float16, seed=11)
    q = torch.randn(4, 512, generator=torch.Generator().manual_seed(12))
    norms = row_norms(x)
    got = _triton(q.to(DEVICE), x.to(DEVICE), 10, "cosine", norms=norms.to(DEVICE))
    check_topk(got, q, x, 10, "cosine", tol=tolerance(torch.float16, "triton"))


def test_interpreter_config_is_single() -> None:
    """``@triton.autotune`` with more than one config fails in the interpreter."""
    from multimodal_store.kernels.configs import stage1_configs

    assert len(stage1_configs("interpreter")) == 1
    if tk.INTERPRET:
        assert len(tk._topk_stage1.configs) == 1


# --------------------------------------------------------------------------------------
# real GPU


def _gpu_reference_check(q, x, k, metric, mask, scores, idx, tol):
    """Check GPU results for large N: exact scores of the returned rows plus the k-th best score."""
    ref = torch.empty(q.shape[0], x.shape[0], dtype=torch.float64, device="cuda")
    for s0 in range(0, x.shape[0], 1 << 20):
        ref[:, s0 : s0 + (1 << 20)] = reference_scores(q, x[s0 : s0 + (1 << 20)], metric).cuda()
    if mask is not None:
        fill = float("inf") if metric == "l2" else float("-inf")
        ref = torch.where(mask.expand_as(ref), ref, torch.full_like(ref, fill))
    best = ref.topk(k, dim=1, largest=metric != "l2").values
    scale = (
        1.0
        if metric == "cosine"
        else float(q.double().norm(dim=1).max()) * float(x[:4096].double().norm(dim=1).max())
    )
    torch.testing.assert_close(scores.double(), best, atol=2 * tol * scale, rtol=0)
    got = ref.gather(1, idx.clamp(min=0))
    torch.testing.assert_close(scores.double(), got, atol=tol * scale, rtol=0)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(("batch", "k"), [(1, 10), (16, 64), (64, 100), (7, 1000)])
def test_gpu_against_reference(dtype: torch.dtype, metric: str, batch: int, k: int) -> None:
    g = torch.Generator(device="cuda").manual_seed(batch * 1000 + k)
    n, d = 200_003, 384
    x = torch.randn(n, d, device="cuda", generator=g).to(dtype)
    q = torch.randn(batch, d, device="cuda", generator=g)
    mask = torch.rand(n, device="cuda", generator=g) < 0.7
    for m in (None, mask):
        s, i = topk(q, x, k, metric=metric, mask=m, backend="triton")
        assert s.shape == (batch, k) and i.device.type == "cuda"
        if m is not None:
            assert bool(m[i.clamp(min=0)].all())
        _gpu_reference_check(q, x, k, metric, m, s, i, tolerance(dtype, "triton"))


@pytest.mark.gpu
@pytest.mark.parametrize("merge", [0, 1])
def test_gpu_ties_and_small_cases(merge: int) -> None:
    g = torch.Generator().manual_seed(13)
    base = torch.randint(-2, 3, (50, 64), generator=g).float()
    x = base[torch.randint(0, 50, (50_000,), generator=g)].half()
    q = torch.randint(-2, 3, (5, 64), generator=g).float()
    for metric in METRICS:
        got = _triton(q.cuda(), x.cuda(), 32, metric, merge=merge)
        check_topk(got, q, x, 32, metric, exact_indices=True)
    got = _triton(q.cuda(), x[:3].cuda(), 32, "ip", merge=merge)
    check_topk(got, q, x[:3], 32, "ip")


@pytest.mark.gpu
def test_gpu_matches_torch_backend_per_query_mask() -> None:
    x, _ = make_corpus(100_000, 256, torch.float16, seed=14)
    q = torch.randn(33, 256, generator=torch.Generator().manual_seed(15))
    mask = torch.rand(33, 100_000, generator=torch.Generator().manual_seed(16)) < 0.05
    got = topk(q.cuda(), x.cuda(), 50, metric="cosine", mask=mask.cuda(), backend="triton")
    check_topk(got, q, x, 50, "cosine", mask=mask, tol=tolerance(torch.float16, "triton"))
