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
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 9, 19])
def test_scores_match_float64(dtype: torch.dtype, d: int, batch: int) -> None:
    """Every query-group size (1-8 and several groups), tails (d % 8 != 0), blocks of 64 rows."""
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
    """The scan uses the kernel for batches up to 128 of float32 / float16 / bfloat16 rows."""
    x = torch.randn(100, 8)
    for dtype in DTYPES:
        assert tt._use_simd(prepare(torch.randn(128, 8), x.to(dtype), 5, "cosine", None, None, None))
        assert not tt._use_simd(prepare(torch.randn(129, 8), x.to(dtype), 5, "cosine", None, None, None))
    xi = torch.randint(-100, 100, (100, 8), dtype=torch.int8)
    assert not tt._use_simd(prepare(torch.randn(1, 8), xi, 5, "ip", None, None, torch.ones(100)))
