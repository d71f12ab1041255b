"""The torch (CPU) backend of ``multimodal_store.kernels.topk`` against a float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_kernels_common import check_topk, make_corpus, tolerance

from multimodal_store.kernels import cpu_simd, row_norms, topk
from multimodal_store.kernels import torch_topk as tt
from multimodal_store.kernels._common import finalize, prepare

METRICS = ["cosine", "ip", "l2"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8]


@pytest.fixture(autouse=True, params=["simd", "torch-only"])
def cpu_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the C kernel (where it is built and the CPU runs it) and without it."""
    if request.param == "simd":
        if not cpu_simd.available():
            pytest.skip("the C kernel (kernels/_simd.c) is not built or this CPU lacks AVX2/FMA/F16C")
        monkeypatch.setenv("MMSTORE_CPU_SIMD", "1")
    else:
        monkeypatch.setenv("MMSTORE_CPU_SIMD", "0")
    return str(request.param)


@pytest.fixture
def no_simd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The filtered half-precision path is the one taken without the C kernel."""
    monkeypatch.setenv("MMSTORE_CPU_SIMD", "0")


def _run(q, x, k, metric, *, mask=None, scales=None, norms=None, block_rows=None, threads=None):
    """topk on the torch backend, optionally with a small block size to force many blocks."""
    args = prepare(q, x, k, metric, mask, norms, scales)
    s, i = tt.scan(args, block_rows=block_rows, threads=threads)
    return finalize(args, s, i)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
def test_dtypes_and_metrics(dtype: torch.dtype, metric: str) -> None:
    x, scales = make_corpus(1500, 100, dtype)  # non-power-of-two d
    q = torch.randn(5, 100, generator=torch.Generator().manual_seed(1))
    got = topk(q, x, 17, metric=metric, backend="torch", corpus_scales=scales)
    check_topk(got, q, x, 17, metric, tol=tolerance(dtype, "torch"), scales=scales)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("threads", [1, 2])
def test_many_blocks(metric: str, threads: int) -> None:
    """Small blocks: the running top-k is merged across ~40 blocks (and split over threads)."""
    x, _ = make_corpus(2500, 33, torch.float32, seed=2)
    q = torch.randn(1, 33, generator=torch.Generator().manual_seed(3))
    got = _run(q, x, 9, metric, block_rows=64, threads=threads)
    check_topk(got, q, x, 9, metric)
    qb = torch.randn(6, 33, generator=torch.Generator().manual_seed(4))
    got = _run(qb, x, 40, metric, block_rows=50)  # block smaller than k
    check_topk(got, qb, x, 40, metric)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.usefixtures("no_simd")
def test_half_precision_filter_path(dtype: torch.dtype, metric: str, batch: int) -> None:
    """One or two queries with corpus_norms: the filtered reduced-precision gemv path."""
    x, _ = make_corpus(3000, 64, dtype, seed=5)
    norms = row_norms(x)
    args = prepare(torch.randn(batch, 64), x, 12, metric, None, norms, None)
    assert tt._use_filter(args), "the filter path should be taken here"
    q = torch.randn(batch, 64, generator=torch.Generator().manual_seed(6))
    got = _run(q, x, 12, metric, norms=norms, block_rows=256)
    check_topk(got, q, x, 12, metric, tol=tolerance(dtype, "torch"))
    # same rows as the exact conversion path
    ref = topk(q, x, 12, metric=metric, backend="torch")
    assert torch.equal(got[1], ref[1])


@pytest.mark.usefixtures("no_simd")
def test_filter_path_keeps_near_ties_exact() -> None:
    """Rows whose float16-rounded scores tie must still come out in float32 order."""
    g = torch.Generator().manual_seed(7)
    base = torch.randn(64, generator=g)
    x = (base + 1e-3 * torch.randn(400, 64, generator=g)).half()
    q = base.unsqueeze(0)
    norms = row_norms(x)
    got = _run(q, x, 25, "cosine", norms=norms, block_rows=128)
    check_topk(got, q, x, 25, "cosine", tol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.usefixtures("no_simd")
def test_filter_path_error_bound_is_needed(dtype: torch.dtype) -> None:
    """Scores spaced far below the half-precision rounding of the query (and of the output): the
    top rows are only found if the filter keeps every row within its error bound of the k-th best."""
    g = torch.Generator().manual_seed(17)
    d, n = 64, 3000
    q = torch.randn(d, generator=g)
    q_hat = q / q.norm()
    noise = torch.randn(n, d, generator=g) * 10.0
    noise -= (noise @ q_hat).unsqueeze(1) * q_hat  # orthogonal to q: only its rounding error remains
    a = 0.5 + 1e-5 * torch.randperm(n, generator=g).float()
    x = (a.unsqueeze(1) * q_hat + noise).to(dtype)
    got = _run(q, x, 12, "ip", norms=row_norms(x), block_rows=512)
    check_topk(got, q, x, 12, "ip", exact_indices=True)


@pytest.mark.usefixtures("no_simd")
def test_filter_path_masks_and_few_eligible() -> None:
    x, _ = make_corpus(2000, 48, torch.float16, seed=8)
    norms = row_norms(x)
    q = torch.randn(2, 48, generator=torch.Generator().manual_seed(9))
    mask = torch.zeros(2, 2000, dtype=torch.bool)
    mask[0, ::97] = True  # 21 eligible rows, fewer than k in most blocks
    mask[1, 1500:] = True
    got = _run(q, x, 30, "ip", mask=mask, norms=norms, block_rows=256)
    check_topk(got, q, x, 30, "ip", mask=mask)


def test_reduced_gemv_self_check_passes_here() -> None:
    assert tt._reduced_gemv_ok(torch.float16, 64)


@pytest.mark.parametrize("kind", ["none", "shared", "per_query", "all_false", "few"])
def test_masks(kind: str) -> None:
    x, _ = make_corpus(1200, 24, torch.float32, seed=10)
    q = torch.randn(4, 24, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(12)
    mask: torch.Tensor | None
    if kind == "none":
        mask = None
    elif kind == "shared":
        mask = torch.rand(1200, generator=g) < 0.3
    elif kind == "per_query":
        mask = torch.rand(4, 1200, generator=g) < 0.2
    elif kind == "all_false":
        mask = torch.zeros(1200, dtype=torch.bool)
    else:
        mask = torch.zeros(4, 1200, dtype=torch.bool)
        mask[:, [5, 700, 1199]] = True
    for metric in METRICS:
        got = _run(q, x, 10, metric, mask=mask, block_rows=128)
        check_topk(got, q, x, 10, metric, mask=mask)
    if kind == "all_false":
        s, i = topk(q, x, 10, metric="l2", mask=mask, backend="torch")
        assert bool((i == -1).all()) and bool((s == float("inf")).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("with_norms", [False, True])
def test_sparse_masks_gather_only_eligible_rows(dtype: torch.dtype, metric: str, with_norms: bool) -> None:
    """A mask letting ~10% of the rows compete: only those rows are scored (in place or gathered)."""
    x, scales = make_corpus(3000, 40, dtype, seed=21)
    norms = row_norms(x, scales) if with_norms else None
    g = torch.Generator().manual_seed(22)
    shared = torch.rand(3000, generator=g) < 0.1
    per_query = torch.rand(3, 3000, generator=g) < 0.04
    for q in (torch.randn(1, 40, generator=g), torch.randn(3, 40, generator=g)):
        for mask in (shared, per_query[: q.shape[0]]):
            args = prepare(q, x, 11, metric, mask, norms, scales)
            assert tt._sparse_rows(args) is not None
            for block_rows, threads in ((None, 1), (64, 1), (64, 2)):
                got = _run(q, x, 11, metric, mask=mask, scales=scales, norms=norms,
                           block_rows=block_rows, threads=threads)
                check_topk(got, q, x, 11, metric, mask=mask, tol=tolerance(dtype, "torch"), scales=scales)


@pytest.mark.parametrize("metric", METRICS)
def test_sparse_mask_ties_go_to_the_lower_index(metric: str) -> None:
    g = torch.Generator().manual_seed(23)
    base = torch.randint(-2, 3, (30, 16), generator=g).float()
    x = base[torch.randint(0, 30, (2000,), generator=g)]
    mask = torch.rand(2000, generator=g) < 0.15
    for q in (torch.randint(-2, 3, (1, 16), generator=g).float(), torch.randint(-2, 3, (4, 16), generator=g).float()):
        for block_rows, threads in ((None, 1), (16, 1), (16, 2)):
            got = _run(q, x, 25, metric, mask=mask, block_rows=block_rows, threads=threads)
            check_topk(got, q, x, 25, metric, mask=mask, exact_indices=True)


def test_k_larger_than_n_and_single_row() -> None:
    x = torch.randn(1, 8)
    q = torch.randn(3, 8)
    for metric in METRICS:
        got = topk(q, x, 5, metric=metric, backend="torch")
        check_topk(got, q, x, 5, metric)
        assert got[1][:, 0].tolist() == [0, 0, 0] and bool((got[1][:, 1:] == -1).all())
    x = torch.randn(7, 8)
    got = topk(q, x, 2048, metric="ip", backend="torch")
    check_topk(got, q, x, 2048, "ip")


def test_empty_corpus_and_empty_batch() -> None:
    s, i = topk(torch.randn(2, 4), torch.empty(0, 4), 3, backend="torch")
    assert s.shape == (2, 3) and bool((i == -1).all()) and bool((s == float("-inf")).all())
    s, i = topk(torch.empty(0, 4), torch.randn(5, 4), 3, backend="torch")
    assert s.shape == (0, 3) and i.shape == (0, 3)


@pytest.mark.parametrize("metric", METRICS)
def test_exact_ties_go_to_the_lower_index(metric: str) -> None:
    """Integer data: every score is exact, duplicated rows tie exactly."""
    g = torch.Generator().manual_seed(13)
    base = torch.randint(-2, 3, (40, 16), generator=g).float()
    x = base[torch.randint(0, 40, (900,), generator=g)]  # many exact duplicates
    q = torch.randint(-2, 3, (3, 16), generator=g).float()
    for block_rows in (None, 32):
        got = _run(q, x, 50, metric, block_rows=block_rows)
        check_topk(got, q, x, 50, metric, exact_indices=True)
    # the fp16 filter path sees the same ties
    got = _run(q[:1], x.half(), 50, metric, norms=row_norms(x), block_rows=64)
    check_topk(got, q[:1], x.half(), 50, metric, exact_indices=True)


def test_zero_vectors_cosine_is_zero() -> None:
    x = torch.randn(50, 12)
    x[[3, 10, 20]] = 0.0
    q = torch.zeros(2, 12)
    q[1] = torch.randn(12)
    s, i = topk(q, x, 50, metric="cosine", backend="torch")
    assert bool((s[0] == 0).all()) and i[0].tolist() == list(range(50))  # all ties -> index order
    row = dict(zip(i[1].tolist(), s[1].tolist(), strict=True))
    assert row[3] == row[10] == row[20] == 0.0
    check_topk((s, i), q, x, 50, "cosine")


def test_one_dimensional_query_and_numpy_inputs() -> None:
    rng = np.random.default_rng(14)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    q = rng.standard_normal(20)  # float64 numpy, 1-D
    s, i = topk(q, x, 4, metric="l2", backend="torch")
    assert s.shape == (1, 4) and i.shape == (1, 4)
    check_topk((s, i), torch.from_numpy(q), torch.from_numpy(x), 4, "l2")
    mask = rng.random(300) < 0.5
    got = topk(q, x, 4, metric="ip", mask=mask, backend="torch")
    check_topk(got, torch.from_numpy(q), torch.from_numpy(x), 4, "ip", mask=torch.from_numpy(mask))


def test_corpus_norms_are_used() -> None:
    x, _ = make_corpus(400, 16, torch.float32, seed=15)
    q = torch.randn(2, 16)
    norms = row_norms(x)
    for metric in ("cosine", "l2"):
        got = topk(q, x, 6, metric=metric, backend="torch", corpus_norms=norms)
        check_topk(got, q, x, 6, metric)
    # the given norms are what cosine divides by
    s, i = topk(q, x, 6, metric="cosine", backend="torch", corpus_norms=norms * 2)
    s_ref, i_ref = topk(q, x, 6, metric="cosine", backend="torch")
    assert torch.equal(i, i_ref)
    torch.testing.assert_close(s, s_ref / 2)


def test_nan_rows_never_compete() -> None:
    x = torch.randn(200, 8)
    x[[4, 50]] = float("nan")
    q = torch.randn(2, 8)
    for metric in METRICS:
        _s, i = topk(q, x, 199, metric=metric, backend="torch")
        assert not bool(torch.isin(i, torch.tensor([4, 50])).any())
        assert int((i == -1).sum(dim=1).min()) == 1  # 198 valid rows for k=199


def test_auto_backend_on_cpu_is_torch() -> None:
    x = torch.randn(100, 8)
    q = torch.randn(3, 8)
    assert torch.equal(topk(q, x, 5)[1], topk(q, x, 5, backend="torch")[1])


def test_int8_with_scales_and_norms() -> None:
    x, scales = make_corpus(800, 40, torch.int8, seed=16)
    assert scales is not None
    q = torch.randn(3, 40)
    norms = row_norms(x, scales)
    for metric in METRICS:
        got = topk(q, x, 11, metric=metric, backend="torch", corpus_scales=scales, corpus_norms=norms)
        check_topk(got, q, x, 11, metric, scales=scales)


def test_positions_above_screens_chunks_exactly() -> None:
    """The chunk-maximum prefilter finds exactly the entries above the floor, also next to NaN
    (a NaN chunk maximum must not hide a candidate) and in a ragged tail."""
    g = torch.Generator().manual_seed(31)
    for n in (100, 8 * 1024, 20 * 1024 + 37):
        row = torch.randn(n, generator=g)
        row[torch.randint(0, n, (5,), generator=g)] = float("nan")
        row[torch.randint(0, n, (5,), generator=g)] = float("-inf")
        row[3] = float("nan")
        row[4] = 9.0  # a candidate in the same chunk as a NaN
        row[n - 1] = 8.0  # a candidate in the tail
        for floor in (float("-inf"), 0.0, 2.5, 7.0, 10.0):
            got = tt._positions_above(row, torch.tensor(floor))
            want = (row > floor).nonzero().squeeze(1)
            assert torch.equal(got, want), (n, floor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("with_norms", [False, True])
@pytest.mark.parametrize("batch", [20, 50])
def test_batches_over_eight_queries(dtype: torch.dtype, metric: str, with_norms: bool, batch: int) -> None:
    """20 queries (the C kernel's row path in groups of 8) and 50 (its packed path: query tiles
    of 6, 8-row panels, a partial last panel), a dense per-query mask, row blocks split over two
    threads."""
    x, _ = make_corpus(1037, 45, dtype, seed=51)
    norms = row_norms(x) if with_norms else None
    g = torch.Generator().manual_seed(52)
    q = torch.randn(batch, 45, generator=g)
    mask = torch.rand(batch, 1037, generator=g) < 0.6
    for block_rows, threads in ((None, 1), (100, 2)):
        got = _run(q, x, 13, metric, mask=mask, norms=norms, block_rows=block_rows, threads=threads)
        check_topk(got, q, x, 13, metric, mask=mask, tol=tolerance(dtype, "torch"))
