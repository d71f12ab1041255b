"""The C kernel (``kernels/_simd.c``) through its checked wrapper, against a float64 reference."""

from __future__ import annotations

import platform
import shutil
import sys

import pytest
import torch

from multimodal_store.errors import KernelError
from multimodal_store.kernels import cpu_simd
from multimodal_store.kernels import torch_topk as tt
from multimodal_store.kernels._common import prepare

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def test_built_and_used_where_it_can_be() -> None:
    """On x86-64 Linux with a C compiler and AVX2/FMA/F16C the install must have built the kernel
    (a silently skipped build would leave every simd test below skipped)."""
    can = (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and shutil.which("cc") is not None
        and {"avx2", "fma", "f16c"} <= _cpu_flags()
    )
    if not can:
        pytest.skip("no C compiler or not an x86-64 CPU with AVX2/FMA/F16C")
    assert cpu_simd.available(), "kernels/_simd.c was not built by the install (pip install -e .)"


needs_simd = pytest.mark.skipif(not cpu_simd.available(), reason="the C kernel is not built or not supported")


def _reference(x: torch.Tensor, q: torch.Tensor, rows: slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x[rows].to(torch.float64)
    return q.to(torch.float64) @ xr.t(), (xr * xr).sum(dim=1)


def _check(x: torch.Tensor, q: torch.Tensor, rows: slice | torch.Tensor) -> None:
    got, sq = cpu_simd.scores(x, q, rows, norms=True)
    ref, ref_sq = _reference(x, q, rows)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert sq is not None
    # float32 accumulation of d products: error <= d * eps * sum |x_i q_i| (loose factor 2)
    d = int(x.shape[1])
    bound = 2 * d * 2.0**-24 * (q.abs().to(torch.float64) @ x[rows].abs().to(torch.float64).t()) + 1e-30
    assert bool(((got.to(torch.float64) - ref).abs() <= bound).all())
    assert torch.allclose(sq.to(torch.float64), ref_sq, rtol=d * 2.0**-23, atol=1e-30)
    plain, none = cpu_simd.scores(x, q, rows)
    assert none is None and torch.equal(plain, got)  # the fused norms do not change the dots


@needs_simd
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("d", [1, 7, 8, 9, 64, 100, 513])
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 9, 19, 49, 61])
def test_scores_match_float64(dtype: torch.dtype, d: int, batch: int) -> None:
    """Every query-group size of the row path (1-8, several groups), the packed path (more than
    48 queries: tiles of 6 queries, partial panels), tails (d % 8 != 0), blocks of 64 rows."""
    g = torch.Generator().manual_seed(d * 100 + batch)
    x = (torch.randn(150, d, generator=g) * 3).to(dtype)
    q = torch.randn(batch, d, generator=g)
    _check(x, q, slice(None))
    _check(x, q, slice(37, 141))  # an offset range
    _check(x, q, slice(149, 150))  # the last row alone: the tail must not read past the buffer
    idx = torch.randint(0, 150, (90,), generator=g)  # unsorted, with repeats
    _check(x, q, idx)


@needs_simd
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_strided_rows_and_empty(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    wide = torch.randn(80, 70, generator=g).to(dtype)
    x = wide[:, 5:45]  # rows 70 elements apart, 40 used
    assert x.stride() == (70, 1)
    q = torch.randn(4, 40, generator=g)
    _check(x, q, slice(None))
    _check(x, q, torch.tensor([79, 0, 3], dtype=torch.int64))
    s, sq = cpu_simd.scores(x, q, slice(10, 10), norms=True)
    assert s.shape == (4, 0) and sq is not None and sq.shape == (0,)
    s, _ = cpu_simd.scores(x, q, torch.empty(0, dtype=torch.int64))
    assert s.shape == (4, 0)


@needs_simd
def test_special_values_follow_ieee() -> None:
    """inf rows give +-inf (or NaN for inf * 0), NaN rows give NaN: as float32 arithmetic would."""
    x = torch.zeros(3, 16, dtype=torch.float16)
    x[0, 3] = float("inf")
    x[1, 4] = float("nan")
    x[2, 15] = 65504.0  # the largest float16, in the tail-free path
    q = torch.zeros(2, 16)
    q[0, 3] = 1.0
    q[0, 15] = 2.0
    s, sq = cpu_simd.scores(x, q, slice(None), norms=True)
    assert s[0, 0] == float("inf") and torch.isnan(s[1, 0])  # inf * 1 and inf * 0
    assert torch.isnan(s[0, 1]) and torch.isnan(s[1, 1])
    assert s[0, 2] == 2 * 65504.0 and s[1, 2] == 0.0
    assert sq is not None and sq[0] == float("inf") and torch.isnan(sq[1]) and sq[2] == 65504.0**2


@needs_simd
def test_errors_say_what_was_expected() -> None:
    x = torch.randn(10, 8).half()
    q = torch.randn(1, 8)
    with pytest.raises(KernelError, match="int8"):
        cpu_simd.scores(x.to(torch.int8), q, slice(None))
    with pytest.raises(KernelError, match="contiguous rows"):
        cpu_simd.scores(x.t(), torch.randn(1, 10), slice(None))
    with pytest.raises(KernelError, match=r"float32 \(B, 8\)"):
        cpu_simd.scores(x, torch.randn(1, 9), slice(None))
    with pytest.raises(KernelError, match=r"float32 \(B, 8\)"):
        cpu_simd.scores(x, q.half(), slice(None))
    with pytest.raises(KernelError, match=r"in \[0, 10\)"):
        cpu_simd.scores(x, q, torch.tensor([0, 10]))
    with pytest.raises(KernelError, match="step 1"):
        cpu_simd.scores(x, q, slice(0, 10, 2))
    with pytest.raises(KernelError, match="int64"):
        cpu_simd.scores(x, q, torch.tensor([1, 2], dtype=torch.int32))


def test_switch_off_with_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSTORE_CPU_SIMD", "0")
    assert not cpu_simd.available()
    args = prepare(torch.randn(1, 8), torch.randn(100, 8).half(), 5, "ip", None, None, None)
    assert not tt._use_simd(args)
    with pytest.raises(KernelError, match="not available"):
        cpu_simd.scores(torch.randn(10, 8), torch.randn(1, 8), slice(None))


@needs_simd
def test_routing_by_batch_dtype_and_scales() -> None:
    """The scan uses the kernel for batches up to 512 of float32 / float16 / bfloat16 rows."""
    x = torch.randn(100, 8)
    for dtype in DTYPES:
        assert tt._use_simd(prepare(torch.randn(512, 8), x.to(dtype), 5, "cosine", None, None, None))
        assert not tt._use_simd(prepare(torch.randn(513, 8), x.to(dtype), 5, "cosine", None, None, None))
    xi = torch.randint(-100, 100, (100, 8), dtype=torch.int8)
    assert not tt._use_simd(prepare(torch.randn(1, 8), xi, 5, "ip", None, None, torch.ones(100)))


def _internal_reference(
    x: torch.Tensor, q: torch.Tensor, metric: str, norms: torch.Tensor, given: bool
) -> torch.Tensor:
    """The torch backend's internal float32 scores, op for op (exact on small-integer data); l2
    uses the given norms squared, or the computed squared norms."""
    dot = (x.to(torch.float64) @ q[0].to(torch.float64)).to(torch.float32)
    if metric == "ip":
        return dot
    if metric == "cosine":
        qn = torch.linalg.vector_norm(q[0])
        qscale = torch.where(qn > 0, 1.0 / qn, torch.zeros_like(qn))
        return (dot * qscale) * torch.where(norms > 0, 1.0 / norms, torch.zeros_like(norms))
    x2 = norms * norms if given else (x.to(torch.float64) ** 2).sum(dim=1).to(torch.float32)
    return dot * 2.0 - x2


@needs_simd
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("given_norms", [False, True])
def test_topk1_keeps_the_exact_best_rows(dtype: torch.dtype, metric: str, given_norms: bool) -> None:
    """Small-integer rows (exact float32 sums, many exact ties): the kept rows, their order (ties to
    the lower row) and scores equal a full sort of the reference scores; masked, NaN and -inf rows
    never enter; contiguous ranges and unsorted positions; k from 1 to more than the rows."""
    g = torch.Generator().manual_seed(41)
    n, d = 700, 27
    x = torch.randint(-3, 4, (n, d), generator=g).to(dtype)
    x[5] = 0  # a zero row: cosine 0
    x[9, 2] = float("nan")  # a NaN score
    q = torch.randint(-3, 4, (1, d), generator=g).to(torch.float32)
    q[0, 2] = 1.0
    x[13, 2] = float("-inf")  # an -inf inner product (q[2] > 0)
    sq_norms = torch.linalg.vector_norm(x.to(torch.float64), dim=1).to(torch.float32)
    norms = sq_norms if given_norms else None
    mask = torch.rand(n, generator=g) < 0.7
    qn = torch.linalg.vector_norm(q[0])
    qscale = float(torch.where(qn > 0, 1.0 / qn, torch.zeros_like(qn)))
    ref = _internal_reference(x, q, metric, sq_norms, given_norms)
    perm = torch.randperm(n, generator=g)[:400]
    for rows, positions in ((slice(None), torch.arange(n)), (slice(100, 650), torch.arange(100, 650)), (perm, perm)):
        for m in (None, mask):
            ok = ref[positions] > float("-inf")  # NaN and -inf drop out
            if m is not None:
                ok &= m[positions]
            cand = positions[ok]
            order = sorted(cand.tolist(), key=lambda r: (-float(ref[r]), r))
            for k in (1, 7, 64, 2048):
                s, i = cpu_simd.topk1(x, q, rows, k, metric, norms=norms, qscale=qscale, mask=m)
                assert i.tolist() == order[:k], (k, metric)
                assert torch.equal(s, ref[i])


@needs_simd
def test_topk1_errors() -> None:
    x = torch.randn(10, 8)
    q = torch.randn(1, 8)
    with pytest.raises(KernelError, match="one query"):
        cpu_simd.topk1(x, torch.randn(2, 8), slice(None), 3, "ip")
    with pytest.raises(KernelError, match="metric"):
        cpu_simd.topk1(x, q, slice(None), 3, "dot")
    with pytest.raises(KernelError, match="k must be"):
        cpu_simd.topk1(x, q, slice(None), 0, "ip")
    with pytest.raises(KernelError, match=r"norms must be a contiguous torch.float32 \(10,\)"):
        cpu_simd.topk1(x, q, slice(None), 3, "cosine", norms=torch.ones(9))
    with pytest.raises(KernelError, match="mask must be"):
        cpu_simd.topk1(x, q, slice(None), 3, "ip", mask=torch.ones(10, dtype=torch.uint8))
    s, i = cpu_simd.topk1(x, q, slice(4, 4), 3, "ip")
    assert s.shape == (0,) and i.shape == (0,)
