"""``mmstore demo``: the seed's workflow end to end, offline.

Generates a few images and a short video with distinct scenes, builds a tiny random CLIP
model locally (no download), ingests everything into a dataset with the seed's columns and
runs the seed's three SQL queries verbatim. With real weights (``CLIPEmbedder("openai/clip-
vit-base-patch32")``) the same code gives meaningful rankings; the tiny model only proves the
pipeline.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["make_demo_media", "run_demo"]

SHAPES = {
    "a red square on a white background": ((220, 30, 30), "square"),
    "a blue circle on a white background": ((30, 60, 220), "circle"),
    "a green triangle on a white background": ((30, 170, 60), "triangle"),
    "a yellow square on a white background": ((235, 210, 40), "square"),
    "a purple circle on a white background": ((140, 50, 170), "circle"),
    "an orange triangle on a white background": ((245, 140, 20), "triangle"),
}


def _shape_image(color: tuple[int, int, int], shape: str, size: int = 160) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    m = size // 5
    if shape == "square":
        d.rectangle([m, m, size - m, size - m], fill=color)
    elif shape == "circle":
        d.ellipse([m, m, size - m, size - m], fill=color)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=color)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _video(path: Path, colors: list[tuple[int, int, int]], seconds_per_scene: float = 1.5, fps: int = 12) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.time_base = Fraction(1, fps)
        n = int(seconds_per_scene * fps)
        for s, color in enumerate(colors):
            for i in range(n):
                arr = np.zeros((96, 128, 3), dtype=np.uint8)
                arr[:] = color
                x = 10 + (i * 4) % 90
                arr[30:60, x:x + 20] = 255 - np.array(color, dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                frame.pts = s * n + i
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_demo_media(folder: Path) -> dict[str, Path]:
    """Write the demo's images (with caption files) and video; returns the two department folders."""
    eng, mkt = folder / "engineering", folder / "marketing"
    eng.mkdir(parents=True, exist_ok=True)
    mkt.mkdir(parents=True, exist_ok=True)
    for i, (caption, (color, shape)) in enumerate(SHAPES.items()):
        target = eng if i % 2 == 0 else mkt
        (target / f"shape{i}.jpg").write_bytes(_shape_image(color, shape))
        (target / f"shape{i}.txt").write_text(caption)
    _video(eng / "walkthrough.mp4", [(200, 40, 40), (40, 40, 200), (40, 160, 60)])
    (eng / "walkthrough.txt").write_text("an engineering walkthrough video")
    (mkt / "notes.md").write_text("Marketing notes. The campaign uses red squares and blue circles as its visual theme.")
    return {"engineering": eng, "marketing": mkt}


def run_demo(workdir: Path, out: Callable[[str], None] = print) -> None:
    """Build the demo dataset under ``workdir`` and print the seed's three queries' results."""
    import multimodal_store as deeplake  # the seed's code runs with only this import changed
    from multimodal_store.embeddings import CLIPEmbedder
    from multimodal_store.embeddings.tiny import build_tiny_clip

    workdir.mkdir(parents=True, exist_ok=True)
    folders = make_demo_media(workdir / "media")
    model_dir = build_tiny_clip(workdir / "tiny-clip")
    clip_model = CLIPEmbedder(model_dir)
    out(f"demo data in {workdir} (tiny random CLIP: rankings show the pipeline, not semantics)")

    kb = deeplake.open(str(workdir / "multimodal_knowledge"))
    for department, folder in folders.items():
        report = kb.ingest(folder, image_embedder=clip_model, metadata={"department": department}, progress=False)
        out(f"ingested {department}: {report}")

    def multimodal_retrieve(query: str, top_k: int = 5) -> deeplake.results.Results:
        """Find relevant images/video using text query."""
        return kb.query("""
            SELECT text, image, video_frame, content_type, metadata
            FROM multimodal_knowledge
            ORDER BY cosine_similarity(clip_embedding, :q)
            LIMIT :k
        """, {"q": clip_model.encode_text(query), "k": top_k})

    def image_search(query_image: bytes, top_k: int = 5) -> deeplake.results.Results:
        """Find similar images using an image as the query."""
        return kb.query("""
            SELECT text, image, metadata
            FROM multimodal_knowledge
            WHERE content_type = 'image'
            ORDER BY cosine_similarity(clip_embedding, :q)
            LIMIT :k
        """, {"q": clip_model.encode_image(query_image), "k": top_k})

    out("\n1) text -> images and frames: multimodal_retrieve('a red square')")
    out(repr(multimodal_retrieve("a red square")))
    query_image = (folders["engineering"] / "shape0.jpg").read_bytes()
    out("\n2) image -> similar images: image_search(shape0.jpg)  (the image itself ranks first)")
    out(repr(image_search(query_image)))
    out("\n3) metadata filter + IN + vector ranking (the seed's complex query)")
    results = kb.query("""
        SELECT image, text, video_frame
        FROM multimodal_knowledge
        WHERE metadata->>'department' = 'engineering'
        AND content_type IN ('image', 'video')
        ORDER BY cosine_similarity(clip_embedding, :q)
        LIMIT 10
    """, {"q": clip_model.encode_text("a walkthrough video")})
    out(repr(results))
