"""Media benchmark: frame extraction speed per mode, and image embedding throughput.

Frame extraction runs on generated H.264 clips (360p / 720p / 1080p, 30 fps, x264
``veryfast`` with B-frames, a panning noise texture and a scene change every 2-5 s, default
GOP with scene-cut key frames) and is reported as "x real time" (clip seconds / wall
seconds, and clip seconds / process CPU seconds, which a busy shared machine distorts less)
with one decoder thread, next to a plain PyAV decode of every frame (the floor
without frame skipping). Embedding throughput is images/s through a tiny random CLIP's
``encode_image`` (JPEG bytes of 720p frames: decode + resize + forward), one torch thread.

    python benchmarks/media.py [--seconds 20] [--sizes 360,720,1080] [--threads 1] [--repeats 3]

Prints a markdown table and appends rows to benchmarks/results/media.csv.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from _harness import append_csv, machine_info, markdown_table, median  # noqa: E402
from media_fixtures import make_video  # noqa: E402

SIZES = {360: (640, 360), 720: (1280, 720), 1080: (1920, 1080)}
SHOTS = (3.0, 4.0, 2.0, 5.0, 3.0, 3.0)  # scene changes at 3, 7, 9, 14, 17 s (repeated for longer clips)
MODES = ("scene", "keyframes", "uniform")


def make_clip(path: Path, height: int, seconds: float) -> Path:
    if path.exists():
        return path
    shots: list[float] = []
    while sum(shots) < seconds - 1e-9:
        shots.append(min(SHOTS[len(shots) % len(SHOTS)], seconds - sum(shots)))
    make_video(path, durations=tuple(shots), size=SIZES[height], fps=30, texture=True,
               options={"preset": "veryfast", "tune": "film"})
    return path


def raw_decode(path: Path, threads: int) -> int:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        s.codec_context.thread_count = threads
        return sum(1 for _ in c.decode(s))


def bench_frames(path: Path, seconds: float, threads: int, repeats: int) -> list[dict[str, Any]]:
    from multimodal_store.media import extract_frames

    rows = []
    runs: list[tuple[str, Any]] = [("decode all (PyAV)", lambda: raw_decode(path, threads))]
    for mode in MODES:
        runs.append((mode, lambda m=mode: len(list(extract_frames(path, m, threads=threads)))))
    for name, fn in runs:
        times, cpu, count = [], [], 0
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            count = fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        t, c = median(times), median(cpu)
        rows.append({"mode": name, "frames": count, "median_s": t, "x_realtime": seconds / t,
                     "cpu_s": c, "x_realtime_cpu": seconds / c})
    return rows


def bench_embed(path: Path, model_dir: str, repeats: int) -> dict[str, Any]:
    import torch

    from multimodal_store.embeddings import CLIPEmbedder
    from multimodal_store.media import extract_frames

    torch.set_num_threads(1)
    jpegs = []
    for frame in extract_frames(path, "uniform", every=0.25, max_frames=64):
        buf = io.BytesIO()
        frame.image.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    emb = CLIPEmbedder(model_dir, batch_size=32)
    emb.encode_image(jpegs[:4])  # warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        emb.encode_image(jpegs)
        times.append(time.perf_counter() - t0)
    t = median(times)
    return {"mode": "tiny CLIP encode_image (JPEG frames)", "frames": len(jpegs), "median_s": t,
            "images_per_s": len(jpegs) / t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--sizes", default="360,720,1080")
    ap.add_argument("--threads", type=int, default=1, help="decoder threads (0: FFmpeg's choice)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "mmstore-bench-media"),
                    help="folder for the generated clips (kept between runs)")
    args = ap.parse_args()

    import av
    import PIL
    import transformers

    from multimodal_store.embeddings.tiny import build_tiny_clip

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    info.update({"av": av.__version__, "ffmpeg": ".".join(map(str, av.library_versions["libavcodec"])),
                 "pillow": PIL.__version__, "transformers": transformers.__version__})
    results: list[dict[str, Any]] = []
    table = []
    sizes = [int(s) for s in args.sizes.split(",")]
    embed_at = 720 if 720 in sizes else sizes[-1]
    for height in sizes:
        t0 = time.perf_counter()
        clip = make_clip(cache / f"clip_{height}p_{args.seconds:g}s.mp4", height, args.seconds)
        print(f"{height}p clip ready ({time.perf_counter() - t0:.1f} s, {clip.stat().st_size / 1e6:.1f} MB)",
              file=sys.stderr)
        for row in bench_frames(clip, args.seconds, args.threads, args.repeats):
            row.update({"benchmark": "frames", "resolution": f"{height}p", "threads": args.threads,
                        "clip_s": args.seconds})
            results.append({**info, **row})
            table.append([f"{height}p", row["mode"], row["frames"], f"{row['median_s']:.3f}",
                          f"{row['x_realtime']:.1f}x", f"{row['x_realtime_cpu']:.1f}x", ""])
        if height == embed_at:
            with tempfile.TemporaryDirectory() as tmp:
                row = bench_embed(clip, build_tiny_clip(Path(tmp) / "clip"), args.repeats)
            row.update({"benchmark": "embed", "resolution": f"{height}p", "threads": 1})
            results.append({**info, **row})
            table.append([f"{height}p", row["mode"], row["frames"], f"{row['median_s']:.3f}", "", "",
                          f"{row['images_per_s']:.0f}"])
    print(f"\nmachine: {info['cpu']} ({info['cores']} cores), PyAV {info['av']} (libavcodec {info['ffmpeg']}), "
          f"decoder threads: {args.threads}, clips: {args.seconds:g} s at 30 fps\n")
    print(markdown_table(["clip", "mode", "frames", "median s", "x real time (wall)", "x real time (CPU)",
                          "images/s"], table))
    path = append_csv("media.csv", results)
    print(f"\nappended {len(results)} rows to {path}")


if __name__ == "__main__":
    main()
