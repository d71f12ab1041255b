"""Streaming merge: ``merge_topk`` and the ``TopK`` accumulator have ``topk``'s semantics."""

from __future__ import annotations

import pytest
import torch
from test_kernels_common import check_topk

from multimodal_store.errors import KernelError
from multimodal_store.kernels import TopK, merge_topk, topk

METRICS = ["cosine", "ip", "l2"]


def _int_data(n: int, d: int, b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer-valued rows with many duplicates: every score is exact and ties are common."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(-3, 4, (n // 4, d), generator=g).float()
    x = base[torch.randint(0, n // 4, (n,), generator=g)]
    q = torch.randint(-3, 4, (b, d), generator=g).float()
    return q, x


def _fragments(n: int, seed: int) -> list[tuple[int, int]]:
    g = torch.Generator().manual_seed(seed)
    cuts = sorted(set(torch.randint(1, n, (6,), generator=g).tolist()))
    bounds = [0, *cuts, n]
    return [(bounds[j], bounds[j + 1]) for j in range(len(bounds) - 1)]


@pytest.mark.parametrize("metric", METRICS)
def test_merge_of_fragments_equals_full_search(metric: str) -> None:
    q, x = _int_data(900, 12, 4, seed=1)
    full = topk(q, x, 25, metric=metric, backend="torch")
    parts = []
    for s0, s1 in _fragments(900, 2):
        s, i = topk(q, x[s0:s1], 25, metric=metric, backend="torch")
        parts.append((s, torch.where(i >= 0, i + s0, i)))
    merged = merge_topk(parts[::-1], 25, metric)  # order of the parts does not matter
    assert torch.equal(merged[1], full[1])
    assert torch.equal(merged[0], full[0])
    check_topk(merged, q, x, 25, metric, exact_indices=True)


@pytest.mark.parametrize("metric", METRICS)
def test_accumulator_add_equals_full_search(metric: str) -> None:
    q, x = _int_data(700, 10, 3, seed=3)
    mask = torch.rand(3, 700, generator=torch.Generator().manual_seed(4)) < 0.5
    acc = TopK(30, metric, batch=3)
    for s0, s1 in _fragments(700, 5):
        acc.add(q, x[s0:s1], s0, mask[:, s0:s1])
    got = acc.result()
    full = topk(q, x, 30, metric=metric, mask=mask, backend="torch")
    assert torch.equal(got[1], full[1]) and torch.equal(got[0], full[0])
    check_topk(got, q, x, 30, metric, mask=mask, exact_indices=True)


def test_push_ties_go_to_the_lower_global_index_whatever_the_order() -> None:
    acc = TopK(4, "ip", batch=1)
    acc.push(torch.tensor([[5.0, 7.0]]), torch.tensor([[90, 91]]))
    acc.push(torch.tensor([5.0, 7.0, 1.0]), torch.tensor([10, 11, 12]))  # 1-D for batch 1
    acc.push(torch.tensor([[7.0]]), torch.tensor([[50]]))
    s, i = acc.result()
    assert i.tolist() == [[11, 50, 91, 10]]
    assert s.tolist() == [[7.0, 7.0, 7.0, 5.0]]


def test_l2_ascending_and_padding() -> None:
    s, i = merge_topk(
        [
            (torch.tensor([[0.5, 2.0]]), torch.tensor([[3, 8]])),
            (torch.tensor([[0.5, float("inf")]]), torch.tensor([[1, -1]])),
        ],
        k=5,
        metric="l2",
    )
    assert i.tolist() == [[1, 3, 8, -1, -1]]
    assert s[0, :3].tolist() == [0.5, 0.5, 2.0] and bool((s[0, 3:] == float("inf")).all())
    s, i = merge_topk([(torch.tensor([[1.0, 3.0]]), torch.tensor([[4, -1]]))], k=3, metric="cosine")
    assert i.tolist() == [[4, -1, -1]] and s[0, 1:].tolist() == [float("-inf")] * 2


def test_entries_with_index_minus_one_are_ignored() -> None:
    """A padded partial result (-1 with a stray finite score) never displaces a real row."""
    s, i = merge_topk([(torch.tensor([[9.0, 1.0]]), torch.tensor([[-1, 2]]))], k=2, metric="ip")
    assert i.tolist() == [[2, -1]] and s.tolist() == [[1.0, float("-inf")]]


def test_result_before_any_push_is_all_padding() -> None:
    s, i = TopK(3, "l2", batch=2).result()
    assert s.shape == (2, 3) and bool((i == -1).all()) and bool((s == float("inf")).all())


def test_many_pushes_compact_and_match_merge() -> None:
    g = torch.Generator().manual_seed(6)
    acc = TopK(16, "cosine", batch=2)
    parts = []
    for c in range(40):
        s = torch.randint(0, 50, (2, 13), generator=g).float() / 50
        i = torch.arange(13).expand(2, 13) + 13 * c
        parts.append((s, i))
        acc.push(s, i)
    got = acc.result()
    ref = merge_topk(parts, 16, "cosine")
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    # against a direct reference: all scores, ties by the lower index
    all_s = torch.cat([p[0] for p in parts], dim=1)
    all_i = torch.cat([p[1] for p in parts], dim=1)
    for r in range(2):
        order = sorted(range(all_s.shape[1]), key=lambda j: (-float(all_s[r, j]), int(all_i[r, j])))[:16]
        assert got[1][r].tolist() == [int(all_i[r, j]) for j in order]


def test_merge_errors() -> None:
    with pytest.raises(KernelError, match="at least one"):
        merge_topk([], 3)
    with pytest.raises(KernelError, match="part 1 has batch 1"):
        merge_topk(
            [
                (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long)),
                (torch.zeros(3), torch.zeros(3, dtype=torch.long)),
            ],
            3,
        )
    with pytest.raises(KernelError, match="same shape"):
        merge_topk([(torch.zeros(2, 3), torch.zeros(2, 4, dtype=torch.long))], 3)
    with pytest.raises(KernelError, match="indices must be integers"):
        merge_topk([(torch.zeros(2, 3), torch.zeros(2, 3))], 3)
    with pytest.raises(KernelError, match="exceeds the maximum"):
        TopK(5000)
    with pytest.raises(KernelError, match="metric must be one of"):
        TopK(5, "hamming")
    acc = TopK(5, batch=2)
    with pytest.raises(KernelError, match="expected scores for batch 2"):
        acc.push(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(KernelError, match="offset must be a non-negative int"):
        acc.add(torch.zeros(2, 4), torch.zeros(5, 4), -1)
