"""Ingestion benchmark: append + commit N rows of text + a 512-d float32 embedding.

Side by side in one run: multimodal-store, ``np.save`` of the same arrays (a floor: raw
bytes to disk), and Deeplake 4 when it is installed. Also the time to open the N-row
dataset and the process RSS after opening it (the embeddings must not be loaded).

    python benchmarks/ingest.py [--rows 1000000] [--dim 512] [--repeats 3]

Prints a markdown table and appends rows to benchmarks/results/ingest.csv.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import append_csv, machine_info, markdown_table, median


def make_data(rows: int, dim: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((rows, dim), dtype=np.float32)
    texts = [f"caption number {i} of the benchmark corpus" for i in range(rows)]
    return texts, emb


def run_ours(path: Path, texts: list[str], emb: np.ndarray) -> float:
    import multimodal_store as mms
    from multimodal_store import types

    t0 = time.perf_counter()
    ds = mms.create(path)
    ds.add_column("text", types.Text())
    ds.add_column("embedding", types.Embedding(emb.shape[1]))
    ds.append({"text": texts, "embedding": emb})
    ds.commit("bench")
    return time.perf_counter() - t0


def run_numpy(path: Path, texts: list[str], emb: np.ndarray) -> float:
    path.mkdir(parents=True)
    t0 = time.perf_counter()
    np.save(path / "emb.npy", emb)
    np.save(path / "text.npy", np.asarray(texts))
    return time.perf_counter() - t0


def run_deeplake(path: Path, texts: list[str], emb: np.ndarray) -> float | None:
    try:
        import deeplake
    except ImportError:
        return None
    t0 = time.perf_counter()
    ds = deeplake.create(str(path))
    ds.add_column("text", deeplake.types.Text())
    ds.add_column("embedding", deeplake.types.Embedding(emb.shape[1]))
    ds.append({"text": texts, "embedding": emb})
    ds.commit()
    return time.perf_counter() - t0


OPEN_PROBE = """
import sys, time
import multimodal_store as mms
t_import = time.perf_counter()
ds = mms.open(sys.argv[1])
n = len(ds)
t1 = time.perf_counter()
# current RSS (ru_maxrss would include the parent's peak, which Linux keeps across exec)
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS")) / 1024
print(t1 - t_import, rss, n)
"""


def probe_open(path: Path) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", OPEN_PROBE, str(path)], capture_output=True, text=True, check=True)
    secs, rss, _n = out.stdout.split()
    return float(secs), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    texts, emb = make_data(args.rows, args.dim)
    root = Path(tempfile.mkdtemp(prefix="mms-ingest-"))
    results: dict[str, list[float]] = {"multimodal-store": [], "np.save (floor)": [], "deeplake": []}
    try:
        for r in range(args.repeats):
            results["multimodal-store"].append(run_ours(root / f"ours{r}", texts, emb))
            results["np.save (floor)"].append(run_numpy(root / f"np{r}", texts, emb))
            dl = run_deeplake(root / f"dl{r}", texts, emb)
            if dl is not None:
                results["deeplake"].append(dl)
        open_secs, rss_mb = probe_open(root / "ours0")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    base = median(results["multimodal-store"])
    rows = []
    for name, times in results.items():
        if not times:
            rows.append([name, "not installed", "", ""])
            continue
        t = median(times)
        rows.append([name, f"{t:.2f}", f"{args.rows / t:,.0f}", f"{t / base:.2f}x"])
    print(f"\nIngest {args.rows:,} rows (text + {args.dim}-d float32), median of {args.repeats}\n")
    print(markdown_table(["system", "seconds", "rows/s", "time vs ours"], rows))
    print(f"\nopen() of the {args.rows:,}-row dataset: {open_secs * 1000:.1f} ms, process max RSS {rss_mb:.0f} MB "
          f"(embeddings are {emb.nbytes / 2**20:.0f} MB on disk)\n")
    info = machine_info()
    append_csv("ingest.csv", [
        {**info, "system": name, "rows": args.rows, "dim": args.dim, "median_s": median(t) if t else "",
         "rows_per_s": args.rows / median(t) if t else ""}
        for name, t in results.items()
    ] + [{**info, "system": "open", "rows": args.rows, "dim": args.dim, "median_s": open_secs,
          "rows_per_s": "", "rss_mb": rss_mb}])


if __name__ == "__main__":
    main()
