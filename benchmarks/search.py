"""Search benchmark: exact top-10 over N x 512 float32 rows plus a text column.

Side by side in one run: multimodal-store (SQL through the store, and the kernel alone),
numpy (matmul + argpartition), faiss ``IndexFlatIP``, and LanceDB / Deeplake when installed.
Cases: unfiltered and a 10% filter, nq = 1 and 16, and the seed's full query (JSON filter +
IN + top-10 + decoding 10 images). Medians of >= 5 runs, ratios to faiss, and GB/s against a
memory bandwidth measured in the same run.

    python benchmarks/search.py [--rows 1000000] [--dim 512] [--repeats 7]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import append_csv, machine_info, markdown_table, median, timeit


def bandwidth_gbs(nbytes: int = 1 << 30) -> float:
    """Read bandwidth of this machine: a large float32 sum (one pass over memory)."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    t = median(timeit(lambda: a.sum(), repeats=5))
    return nbytes / t / 1e9


def numpy_topk(corpus: np.ndarray, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
    scores = corpus @ q.T  # (N, nq)
    if mask is not None:
        scores[~mask] = -np.inf
    idx = np.argpartition(-scores, k, axis=0)[:k]
    return idx


def build_store(path: Path, emb: np.ndarray, rng: np.random.Generator) -> None:
    from PIL import Image

    import multimodal_store as mms
    from multimodal_store import types

    n = len(emb)
    ds = mms.create(path)
    ds.add_column("content_type", types.Text())
    ds.add_column("text", types.Text())
    ds.add_column("image", types.Image())
    ds.add_column("metadata", types.Json())
    ds.add_column("clip_embedding", types.Embedding(emb.shape[1]))
    buf = io.BytesIO()
    # a smooth 224x224 picture (a few KB as JPEG): a third of the rows hold one
    yy, xx = np.mgrid[0:224, 0:224]
    pixels = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)
    Image.fromarray(pixels).save(buf, format="JPEG", quality=85)
    jpeg = buf.getvalue()
    kinds = np.array(["image", "video", "text"])[np.arange(n) % 3]
    depts = np.where(np.arange(n) % 10 == 0, "engineering", "other")  # 10% of the rows
    images = [jpeg if i % 3 == 0 else None for i in range(n)]
    ds.append({
        "content_type": kinds.tolist(),
        "text": [f"row {i}" for i in range(n)],
        "image": images,
        "metadata": [{"department": d} for d in depts.tolist()],
        "clip_embedding": emb,
    })
    ds.commit("bench")


def _deeplake_dataset(path: Path, emb: np.ndarray) -> object | None:
    """The same embeddings in a Deeplake 4 dataset, when deeplake is installed."""
    try:
        import deeplake
    except ImportError:
        return None
    ds = deeplake.create(str(path))
    ds.add_column("embedding", deeplake.types.Embedding(emb.shape[1]))
    ds.add_column("row", deeplake.types.Int64())
    ds.append({"embedding": emb, "row": np.arange(len(emb), dtype=np.int64)})
    ds.commit()
    return ds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    import torch

    import multimodal_store as mms
    from multimodal_store.kernels import topk

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    queries = rng.standard_normal((16, args.dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    mask10 = np.arange(args.rows) % 10 == 0
    bw = bandwidth_gbs()
    nbytes = emb.nbytes

    root = Path(tempfile.mkdtemp(prefix="mms-search-"))
    rows: list[list[str]] = []
    records: list[dict] = []
    dl_recall: float | None = None
    try:
        build_store(root / "kb", emb, rng)
        ds = mms.open_read_only(root / "kb")
        corpus = torch.from_numpy(emb)
        cases = {}
        for nq in (1, 16):
            q = queries[:nq]
            tq = torch.from_numpy(q)
            cases[("numpy matmul+argpartition", nq, "none")] = lambda q=q: numpy_topk(emb, q, args.k)
            cases[("numpy matmul+argpartition", nq, "10%")] = lambda q=q: numpy_topk(emb, q, args.k, mask10)
            cases[("ours: kernels.topk", nq, "none")] = lambda tq=tq: topk(tq, corpus, args.k, metric="ip")
            tmask = torch.from_numpy(mask10)
            cases[("ours: kernels.topk", nq, "10%")] = lambda tq=tq, tmask=tmask: topk(tq, corpus, args.k, metric="ip", mask=tmask)
        try:
            import faiss

            faiss.omp_set_num_threads(1)
            index = faiss.IndexFlatIP(args.dim)
            index.add(emb)
            sel = faiss.IDSelectorBatch(np.flatnonzero(mask10).astype(np.int64))
            params = faiss.SearchParameters(sel=sel)
            for nq in (1, 16):
                q = queries[:nq]
                cases[("faiss IndexFlatIP", nq, "none")] = lambda q=q: index.search(q, args.k)
                cases[("faiss IndexFlatIP", nq, "10%")] = lambda q=q: index.search(q, args.k, params=params)
        except ImportError:
            pass
        q0 = queries[0]
        dl = _deeplake_dataset(root / "deeplake", emb)
        if dl is not None:
            arr = ", ".join(f"{x:.6f}" for x in q0)
            dl_rows = np.asarray(dl.query(
                f"SELECT * ORDER BY COSINE_SIMILARITY(embedding, ARRAY[{arr}]) DESC LIMIT 10")["row"][:]).ravel()
            exact = np.argsort(-(emb @ q0), kind="stable")[: args.k]  # unit rows: cosine order = ip order
            dl_recall = len(set(dl_rows.tolist()) & set(exact.tolist())) / args.k
            # the query result is lazy: reading the winners' row ids makes it compute
            cases[("deeplake 4 TQL cosine LIMIT 10 (rows read)", 1, "none")] = lambda: np.asarray(dl.query(
                f"SELECT * ORDER BY COSINE_SIMILARITY(embedding, ARRAY[{arr}]) DESC LIMIT 10")["row"][:])
        cases[("ours: SQL ORDER BY cosine LIMIT 10", 1, "none")] = lambda: ds.query(
            "SELECT text FROM kb ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 10", {"q": q0})
        cases[("ours: SQL + JSON filter (10%)", 1, "10%")] = lambda: ds.query(
            "SELECT text FROM kb WHERE metadata->>'department' = 'engineering' "
            "ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 10", {"q": q0})

        def seed_full() -> None:
            res = ds.query("""
                SELECT image, text
                FROM multimodal_knowledge
                WHERE metadata->>'department' = 'engineering'
                AND content_type IN ('image', 'video')
                ORDER BY cosine_similarity(clip_embedding, :q)
                LIMIT 10
            """, {"q": q0})
            for r in res:
                img = r["image"]
                if img is not None:
                    img.load()

        cases[("ours: seed query 3 + decode 10 images", 1, "10%")] = seed_full
        timings = {key: median(timeit(fn, repeats=args.repeats)) for key, fn in cases.items()}
        for (name, nq, filt), t in timings.items():
            ref = timings.get(("faiss IndexFlatIP", nq, filt))
            rows.append([name, str(nq), filt, f"{t * 1000:.2f}", f"{nbytes / t / 1e9:.1f}",
                         f"{t / ref:.2f}x" if ref else "n/a"])
            records.append({**machine_info(), "case": name, "nq": nq, "filter": filt, "rows": args.rows,
                            "dim": args.dim, "median_ms": t * 1000, "gbs": nbytes / t / 1e9, "bandwidth_gbs": bw,
                            "vs_faiss": t / ref if ref else ""})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nExact top-{args.k} over {args.rows:,} x {args.dim} float32 ({nbytes / 1e9:.2f} GB); "
          f"measured read bandwidth {bw:.1f} GB/s; 1 thread; median of {args.repeats}\n")
    print(markdown_table(["system", "nq", "filter", "ms", "column GB/s", "vs faiss"], rows))
    if dl_recall is not None:
        print(f"\nDeeplake's top-10 holds {dl_recall:.0%} of the exact top-10 (recall@10 against numpy).")
    print("\ncolumn GB/s = size of the whole embedding column / time; a filtered search that skips rows can exceed "
          "the machine's bandwidth on this measure.")
    append_csv("search.csv", records)


if __name__ == "__main__":
    main()
