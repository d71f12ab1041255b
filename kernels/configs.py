"""Autotune configurations of the Triton top-k kernel, per backend.

Built by a function, in the style of Triton's ``03-matrix-multiplication`` tutorial. The
interpreter gets exactly one config: ``@triton.autotune`` with more than one config does not
work there, and one large tile keeps the number of interpreted steps small.

Tile parameters:

* ``BLOCK_Q`` queries per program (the M side of ``tl.dot``; at least 16),
* ``BLOCK_N`` corpus rows per tile (the N side; the bitonic merge needs ``BLOCK_N >= K_PAD``),
* ``BLOCK_D`` the slice of the embedding dimension loaded per step (the K side).

Register budget: the running top-k is ``BLOCK_Q x K_PAD`` int64 keys and a tile is
``BLOCK_Q x BLOCK_N`` float32 scores plus as many int64 keys; :func:`prune_stage1` drops the
configs that would spill for the requested ``K_PAD`` (``tests/test_kernels_compile.py``
compiles every shipped config for sm_90 and checks ptxas reports no spills).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "MAX_BITONIC_K",
    "MAX_REPLACE_MIN_K",
    "STAGE1_TILES",
    "current_backend",
    "fits",
    "max_k_pad",
    "prune_stage1",
    "stage1_configs",
]

# Merge strategies of the running top-k (the K_PAD limits of each).
MAX_REPLACE_MIN_K = 64
MAX_BITONIC_K = 256

# Most int64 elements a program may hold in its running top-k / in one tile's keys.
_MAX_TOP_ELEMS = {4: 2048, 8: 4096}
_MAX_TILE_ELEMS = {4: 4096, 8: 8192}

# (BLOCK_Q, BLOCK_N, BLOCK_D, num_warps, num_stages, merges shipped: 0 replace-min, 1 bitonic).
# The bitonic network is large (a 256-wide tile is fully sorted), so it ships on two tiles only;
# that also keeps the sm_90 compile test short.
STAGE1_TILES: dict[str, list[tuple[int, int, int, int, int, tuple[int, ...]]]] = {
    # H100 / A100: small-batch search is memory bound (BLOCK_Q = 16, wide row tiles, deep
    # pipelining of the d loop); batches of 64+ want taller query tiles.
    "cuda": [
        (16, 128, 64, 4, 4, (0, 1)),
        (16, 128, 128, 4, 3, (0,)),
        (16, 256, 64, 8, 4, (0, 1)),
        (16, 256, 128, 8, 3, (0,)),
        (32, 128, 64, 4, 4, (0,)),
        (64, 128, 64, 8, 3, (0,)),
    ],
    # MI200 / MI300: 64-wide wavefronts, fewer stages.
    "hip": [
        (16, 128, 64, 4, 2, (0, 1)),
        (16, 256, 64, 8, 2, (0, 1)),
        (32, 128, 64, 4, 2, (0,)),
        (64, 128, 64, 8, 2, (0,)),
    ],
    # The interpreter: one config, valid for every K_PAD up to MAX_BITONIC_K. Large tiles keep the
    # number of interpreted steps (each costs ~1 ms whatever its size) small.
    "interpreter": [(16, 1024, 256, 4, 1, (0, 1))],
}


def current_backend() -> str:
    """``interpreter`` when ``TRITON_INTERPRET`` is on, else ``hip`` on ROCm torch, else ``cuda``.

    Decided without touching a GPU driver, so the configs can be built on a machine without one.
    """
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes"):
        return "interpreter"
    try:
        import torch

        if getattr(torch.version, "hip", None):
            return "hip"
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "cuda"


def fits(tile: tuple[int, int, int, int, int, tuple[int, ...]], k_pad: int, merge: int) -> bool:
    """Whether a tile config is shipped for merge ``merge`` with ``K_PAD = k_pad`` (and does not spill)."""
    bq, bn, _, warps, _, merges = tile
    if merge not in merges:
        return False
    if merge == 1 and bn < k_pad:  # the tile's top-k needs BLOCK_N >= K_PAD
        return False
    if bq * k_pad > _MAX_TOP_ELEMS.get(warps, 2048):
        return False
    return bq * bn <= _MAX_TILE_ELEMS.get(warps, 4096)


def max_k_pad(tile: tuple[int, int, int, int, int, tuple[int, ...]], merge: int) -> int:
    """The largest ``K_PAD`` a tile runs with ``merge`` (0 if none): its worst case for registers."""
    limit = MAX_REPLACE_MIN_K if merge == 0 else MAX_BITONIC_K
    k = limit
    while k >= 1 and not fits(tile, k, merge):
        k //= 2
    return k if k >= 1 and (merge == 0 or k > MAX_REPLACE_MIN_K) else 0


def stage1_configs(backend: str | None = None) -> list[Any]:
    """``triton.Config`` objects for the stage-1 kernel on ``backend`` (default: the current one)."""
    import triton

    tiles = STAGE1_TILES[backend or current_backend()]
    return [
        triton.Config(
            {"BLOCK_Q": bq, "BLOCK_N": bn, "LOG_N": bn.bit_length() - 1, "BLOCK_D": bd},
            num_warps=w,
            num_stages=s,
        )
        for bq, bn, bd, w, s, _ in tiles
    ]


def prune_stage1(configs: list[Any], named_args: dict[str, Any], **kwargs: Any) -> list[Any]:
    """Early pruning for ``@triton.autotune``: keep configs that fit ``K_PAD``/``MERGE`` and ``B``."""
    k_pad = int(kwargs.get("K_PAD", named_args.get("K_PAD", 1)))
    merge = int(kwargs.get("MERGE", named_args.get("MERGE", 0)))
    batch = int(named_args.get("B", 1))
    shipped = {t[:5]: t for tiles in STAGE1_TILES.values() for t in tiles}
    keep = []
    for c in configs:
        kw = c.kwargs
        tile = shipped.get((kw["BLOCK_Q"], kw["BLOCK_N"], kw["BLOCK_D"], c.num_warps, c.num_stages))
        if tile is None or not fits(tile, k_pad, merge):
            continue
        if batch <= 16 and kw["BLOCK_Q"] > 16:  # taller query tiles only waste work here
            continue
        keep.append(c)
    return keep or configs[:1]
