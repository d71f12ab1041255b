"""A writer process for the crash and concurrency tests (run as a script)."""

from __future__ import annotations

import sys

import numpy as np

import multimodal_store as mms


def main() -> None:
    url, writer, batches, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    ds = mms.open(url)
    for b in range(batches):
        ids = [writer * 1_000_000 + b * rows + i for i in range(rows)]
        ds.append({"id": ids, "writer": [writer] * rows, "emb": np.full((rows, 4), float(b), np.float32)})
        v = ds.commit(f"writer {writer} batch {b}")
        print(f"committed {v} {ids[0]} {ids[-1]}", flush=True)


if __name__ == "__main__":
    main()
