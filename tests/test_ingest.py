"""Folder ingestion and the ``mmstore`` CLI, on generated media with a tiny local CLIP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multimodal_store as mms
from multimodal_store.demo import make_demo_media
from multimodal_store.ingest import chunk_text, default_schema

pytest.importorskip("av")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory):
    from multimodal_store.embeddings import CLIPEmbedder, build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    return CLIPEmbedder(path)


@pytest.fixture()
def media(tmp_path: Path) -> Path:
    folders = make_demo_media(tmp_path / "media")
    (folders["marketing"] / "broken.jpg").write_bytes(b"this is not a jpeg")
    (folders["marketing"] / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 50)
    return tmp_path / "media"


def test_ingest_rows_embeddings_errors_and_resume(tmp_path: Path, media: Path, clip) -> None:
    ds = mms.open(tmp_path / "kb")
    report = ds.ingest(media, image_embedder=clip, progress=False)
    # 6 images + 1 video + 1 markdown file ingested; the two broken files reported, not fatal
    assert report.files_ingested == 8
    assert sorted(Path(p).name for p, _ in report.errors) == ["broken.jpg", "broken.mp4"]
    assert all("broken" in msg or "decode" in msg or "image" in msg.lower() for _, msg in report.errors)
    assert report.version == ds.version == 1
    rows = list(mms.open(tmp_path / "kb"))
    kinds = [r["content_type"] for r in rows]
    assert kinds.count("image") == 6 and kinds.count("text") == 1
    frames = [r for r in rows if r["content_type"] == "video"]
    assert len(frames) >= 3  # three distinct scenes in the generated clip
    ts = [r["timestamp"] for r in frames]
    assert ts == sorted(ts) and ts[0] == pytest.approx(0.0, abs=0.1)
    for r in frames:
        assert r["video_frame"].size == (128, 96)
        assert r["metadata"]["source"].endswith("walkthrough.mp4")
        assert "walkthrough.mp4" in r["text"]
    # sidecar captions were used, not ingested as text documents
    captions = {Path(r["source"]).name: r["text"] for r in rows if r["content_type"] == "image"}
    assert captions["shape0.jpg"] == "a red square on a white background"
    # embeddings equal a direct encode of the same image bytes
    img_row = next(r for r in rows if r["source"].endswith("shape0.jpg"))
    direct = clip.encode_image([(media / "engineering" / "shape0.jpg").read_bytes()])[0]
    np.testing.assert_allclose(img_row["clip_embedding"], direct, atol=1e-5)
    # resumable: a second run skips everything already ingested
    again = mms.open(tmp_path / "kb").ingest(media, image_embedder=clip, progress=False)
    assert again.files_ingested == 0 and again.files_skipped == 8 and again.rows_added == 0
    # a modified file replaces its old rows instead of adding duplicates
    shape = media / "engineering" / "shape0.jpg"
    shape.write_bytes((media / "marketing" / "shape1.jpg").read_bytes())
    third = mms.open(tmp_path / "kb").ingest(media, image_embedder=clip, progress=False)
    assert third.files_ingested == 1 and third.rows_added == 1
    rows = list(mms.open(tmp_path / "kb"))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(rows)
    mine = [r for r in rows if r["source"] == str(shape)]
    assert len(mine) == 1
    np.testing.assert_allclose(mine[0]["clip_embedding"], clip.encode_image([shape.read_bytes()])[0], atol=1e-5)
    fresh = mms.open(tmp_path / "kb2")
    with pytest.raises(mms.MultimodalStoreError):
        fresh.ingest(media, image_embedder=clip, progress=False, on_error="raise")
    assert not fresh.has_uncommitted_changes and fresh.version == 0  # nothing of the failed run stays


def test_default_schema_matches_seed_columns() -> None:
    schema = default_schema(512, 1536)
    for name in ("content_type", "text", "image", "video_frame", "clip_embedding", "text_embedding", "metadata"):
        assert name in schema
    assert schema["clip_embedding"] == mms.types.Embedding(512)


def test_chunk_text() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    chunks = chunk_text(text, size=300, overlap=50)
    assert all(len(c) <= 300 for c in chunks)
    assert chunks[0].startswith("Sentence number 0") and chunks[-1].endswith("199 is here.")
    joined = " ".join(chunks)
    assert all(f"number {i} " in joined for i in range(200))
    with pytest.raises(mms.DataError):
        chunk_text("x", size=10, overlap=10)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "multimodal_store.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_commands(tmp_path: Path, media: Path, clip) -> None:
    db = tmp_path / "db"
    res = _cli("ingest", str(media), "--db", str(db), "--model", clip.model_name, "--quiet")
    assert res.returncode == 0, res.stderr
    assert "files ingested" in res.stdout and "broken.jpg" in res.stdout
    res = _cli("info", str(db))
    assert res.returncode == 0 and "clip_embedding" in res.stdout and "rows" in res.stdout
    res = _cli("query", str(db), "SELECT content_type, COUNT(*) AS n FROM kb GROUP BY content_type ORDER BY n DESC")
    assert res.returncode == 0, res.stderr
    assert "image" in res.stdout and "video" in res.stdout
    out = tmp_path / "out"
    res = _cli("search", str(db), "a red square", "--k", "3", "--model", clip.model_name,
               "--save-images", str(out))
    assert res.returncode == 0, res.stderr
    assert len(list(out.glob("*.jpg"))) >= 1
    res = _cli("query", str(db), "SELECT * FROM kb WHER x = 1")
    assert res.returncode == 1 and "line 1" in res.stderr
    res = _cli("info", str(tmp_path / "missing"))
    assert res.returncode == 1 and "not a dataset" in res.stderr
    res = _cli("query", "--help")
    assert res.returncode == 0 and "--param" in res.stdout
