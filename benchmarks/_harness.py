"""Shared helpers for the benchmarks: machine/version stamps, medians, tables, CSV results."""

from __future__ import annotations

import csv
import datetime as _dt
import importlib
import platform
import statistics
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(mod: str) -> str:
    try:
        return str(importlib.import_module(mod).__version__)
    except Exception:
        return ""


def machine_info() -> dict[str, Any]:
    """Machine, device and library versions to stamp every result row with."""
    import os

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    for mod in ("multimodal_store", "numpy", "pyarrow", "torch", "triton", "faiss"):
        info[mod] = _version(mod)
    try:
        import torch

        info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:
        info["device"] = "cpu"
    return info


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def timeit(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` calls."""
    import time

    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |" for r in rows]
    return "\n".join(lines)


def append_csv(name: str, rows: list[dict[str, Any]]) -> Path:
    """Append result rows to benchmarks/results/<name> (header from the union of keys)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    existing: list[dict[str, Any]] = []
    if path.exists():
        with path.open() as f:
            existing = list(csv.DictReader(f))
        for r in existing:
            for k in r:
                if k not in keys:
                    keys.append(k)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in existing + rows:
            w.writerow({k: r.get(k, "") for k in keys})
    return path
