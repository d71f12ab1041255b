"""The one place that picks a backend.

``auto`` is ``triton`` when the corpus is on CUDA and triton imports, otherwise ``torch``.
Triton is imported lazily, on the first call that needs it, so this package imports (and
the torch backend runs) without triton installed.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import torch

from multimodal_store.errors import KernelError

from ._common import BACKENDS, TopKArgs

__all__ = ["available_backends", "choose_backend", "run_topk", "triton_importable", "triton_interpreting"]

TopKFn = Callable[[TopKArgs], tuple[torch.Tensor, torch.Tensor]]


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    """Whether ``import triton`` can work here (checked without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["triton"] is None
        return False


def triton_interpreting() -> bool:
    """Whether the Triton kernels run in the interpreter (``TRITON_INTERPRET=1``)."""
    from .configs import current_backend

    return current_backend() == "interpreter"


def available_backends() -> list[str]:
    """Backends that can run a search on this machine: ``torch`` always, ``triton`` when triton is
    installed and either a CUDA device is present or the interpreter is on."""
    out = ["torch"]
    if triton_importable() and (torch.cuda.is_available() or triton_interpreting()):
        out.append("triton")
    return out


def choose_backend(backend: Any, device: torch.device) -> str:
    """Resolve ``backend`` (``auto | triton | torch``) for a corpus on ``device``."""
    if backend not in BACKENDS:
        raise KernelError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "auto":
        return "triton" if (device.type == "cuda" and triton_importable()) else "torch"
    if backend == "triton":
        if not triton_importable():
            raise KernelError(
                "backend='triton' needs the triton package (pip install 'multimodal-store[triton]')"
            )
        if device.type != "cuda" and not triton_interpreting():
            raise KernelError(
                f"backend='triton' needs the corpus on a CUDA device (or TRITON_INTERPRET=1), got {device}"
            )
    return str(backend)


def _impl(name: str) -> TopKFn:
    if name == "triton":
        from .triton_topk import topk_triton

        return topk_triton
    from .torch_topk import topk_torch

    return topk_torch


def run_topk(args: TopKArgs, backend: Any = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Run the validated search on the chosen backend."""
    return _impl(choose_backend(backend, args.device))(args)
