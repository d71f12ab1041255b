"""The LangChain integration beyond the standard suites: images with a tiny offline CLIP, the
dict filter language against a direct Python evaluation, MMR, scores, persistence, and a
retriever -> prompt -> chat model chain carrying image blocks. Real stores on tmp paths."""

from __future__ import annotations

import base64
import io
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.language_models.fake_chat_models import ParrotFakeChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnablePassthrough
from PIL import Image

import multimodal_store as mms
from multimodal_store.integrations.langchain import (
    MultimodalStoreRetriever,
    MultimodalStoreVectorStore,
    build_multimodal_message,
    filter_to_expr,
    multimodal_prompt,
    to_content_blocks,
)

# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny random CLIP (built offline) as LangChain embeddings with ``embed_image``."""
    pytest.importorskip("transformers")
    from multimodal_store.embeddings import CLIPEmbedder, as_langchain_embeddings, build_tiny_clip

    path = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
    return as_langchain_embeddings(CLIPEmbedder(path, device="cpu"))


def _image_bytes(seed: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=3)
    arr = np.clip(base + rng.integers(-60, 60, size=(48, 64, 3)), 0, 255).astype(np.uint8)
    arr[rng.integers(0, 40):, rng.integers(0, 50):] = rng.integers(0, 256, size=3)  # a block of colour
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


class PathOnlyImageEmbeddings(Embeddings):
    """A third-party style embedder: ``embed_image`` takes file paths only."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        for u in uris:
            assert isinstance(u, str) and Path(u).is_file(), u
        self.seen.extend(uris)
        return self.inner.embed_image(uris)


class FixedEmbeddings(Embeddings):
    """Texts mapped to given vectors (for exact MMR and score checks)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vectors[text]


# --------------------------------------------------------------------------------------------- images


def test_add_images_search_by_image_and_text(clip: Any, tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", clip)  # image_embedding defaults to clip
    raw = [_image_bytes(i) for i in range(5)] + [_image_bytes(5, "JPEG")]
    on_disk = tmp_path / "photo.png"
    on_disk.write_bytes(_image_bytes(99))
    inputs: list[Any] = [*raw, str(on_disk), Image.open(io.BytesIO(_image_bytes(7)))]
    metas: list[dict[str, Any]] = [{"caption": f"picture {i}", "n": i, "score": i / 3, "ok": i % 2 == 0}
                                   for i in range(len(inputs))]
    metas[1] = {"n": 1}  # no caption
    metas[2] = {"caption": 42}  # a caption that is not a string is not page_content
    ids = store.add_images(inputs, metadatas=metas, ids=None)
    assert len(ids) == len(set(ids)) == len(inputs)
    store.add_texts(["a photo of a cat", "a photo of a dog"], metadatas=[{"kind": "t"}, {}], ids=["t1", "t2"])

    for i, image in enumerate(inputs):
        probe = image if not isinstance(image, Image.Image) else _image_bytes(7)
        hits = store.similarity_search_by_image_with_score(probe, k=3)
        assert hits[0][0].id == ids[i]
        assert hits[0][1] == pytest.approx(1.0, abs=1e-4)
        assert hits[0][0].metadata == metas[i]  # exactly what was given: no injected keys
        expected = metas[i].get("caption") if isinstance(metas[i].get("caption"), str) else ""
        assert hits[0][0].page_content == expected

    # the image column holds the bytes exactly as given (path: the file's bytes; PIL: a PNG)
    assert store.get_image(ids[0]) == (raw[0], "image/png")
    assert store.get_image(ids[5]) == (raw[5], "image/jpeg")
    assert store.get_image(ids[6]) == (on_disk.read_bytes(), "image/png")
    data, mime = store.get_image(ids[7]) or (b"", "")
    assert mime == "image/png" and Image.open(io.BytesIO(data)).size == (64, 48)
    assert store.get_image("t1") is None and store.get_image("nope") is None
    assert set(store.get_images([ids[0], "t1", ids[3], "missing"])) == {ids[0], ids[3]}

    # text and image rows share one space: a text query finds the text row first
    top = store.similarity_search("a photo of a dog", k=len(inputs) + 2)
    assert top[0].id == "t2" and len(top) == len(inputs) + 2
    assert {d.id for d in top} == {*ids, "t1", "t2"}
    # filters apply to image rows too
    only = store.similarity_search_by_image(raw[0], k=10, filter={"ok": True})
    assert sorted(d.metadata["n"] for d in only) == [0, 4, 6]


def test_image_bytes_through_temp_files_for_path_only_embedders(clip: Any, tmp_path: Path) -> None:
    path_only = PathOnlyImageEmbeddings(clip)
    store = MultimodalStoreVectorStore(tmp_path / "kb", path_only, image_embedding=path_only)
    images = [_image_bytes(i) for i in range(3)]
    ids = store.add_images(images, ids=["a", "b", "c"])
    assert ids == ["a", "b", "c"] and len(path_only.seen) == 3
    assert not any(Path(p).exists() for p in path_only.seen)  # temporary files are removed
    direct = MultimodalStoreVectorStore(f"mem://{tmp_path.name}-direct", clip)
    direct.add_images(images, ids=["a", "b", "c"])
    for img in images:
        via_files = store.similarity_search_by_image_with_score(img, k=3)
        via_bytes = direct.similarity_search_by_image_with_score(img, k=3)
        assert [d.id for d, _ in via_files] == [d.id for d, _ in via_bytes]
        np.testing.assert_allclose([s for _, s in via_files], [s for _, s in via_bytes], atol=1e-5)


def test_images_need_an_image_embedding(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", DeterministicFakeEmbedding(size=8))
    with pytest.raises(ValueError, match="image_embedding"):
        store.add_images([_image_bytes(0)])
    with pytest.raises(TypeError, match="embed_image"):
        MultimodalStoreVectorStore(tmp_path / "kb2", DeterministicFakeEmbedding(size=8), image_embedding=object())


# --------------------------------------------------------------------------------------------- filters

_KEYS = ["a", "b", "c", "d"]
_VALUES: list[Any] = [0, 1, 2, -3, 1.0, 2.5, -0.5, 1e9, "x", "y", "1", "", "ab", "é", True, False, None]


def _kind(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "num"
    if isinstance(v, str):
        return "str"
    return "other"


def _eq(v: Any, x: Any) -> bool:
    return _kind(v) is not None and _kind(v) == _kind(x) and v == x


def _op_holds(v: Any, op: str, x: Any) -> bool:
    if op == "$eq":
        return _eq(v, x)
    if op == "$ne":
        return not _eq(v, x)
    if op == "$in":
        return any(_eq(v, y) for y in x)
    if op == "$nin":
        return not any(_eq(v, y) for y in x)
    if op == "$exists":
        return (v is not None) is x
    if _kind(v) != _kind(x) or _kind(v) not in ("num", "str"):
        return False
    return {"$gt": v > x, "$gte": v >= x, "$lt": v < x, "$lte": v <= x}[op]


def _holds(meta: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Direct Python evaluation of a filter dict (the documented Chroma semantics)."""
    for key, cond in flt.items():
        if key == "$and":
            ok = all(_holds(meta, f) for f in cond)
        elif key == "$or":
            ok = any(_holds(meta, f) for f in cond)
        else:
            conds = cond if isinstance(cond, dict) else {"$eq": cond}
            ok = all(_op_holds(meta.get(key), op, x) for op, x in conds.items())
        if not ok:
            return False
    return True


def _random_leaf(rng: random.Random) -> dict[str, Any]:
    key = rng.choice(_KEYS)
    scalars = [v for v in _VALUES if v is not None]
    op = rng.choice(["=", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "range"])
    if op == "=":
        return {key: rng.choice(scalars)}
    if op in ("$in", "$nin"):
        return {key: {op: rng.sample(scalars, rng.randint(0, 4))}}
    if op == "$exists":
        return {key: {op: rng.random() < 0.5}}
    if op == "range":
        lo, hi = sorted(rng.sample([-3, -0.5, 0, 1, 2, 2.5], 2))
        return {key: {"$gte": lo, "$lt": hi}}
    ordered = [v for v in scalars if not isinstance(v, bool)]
    return {key: {op: rng.choice(ordered if op.startswith(("$g", "$l")) else scalars)}}


def _random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    r = rng.random()
    if depth < 2 and r < 0.3:
        return {rng.choice(["$and", "$or"]): [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if r < 0.45:  # several top-level keys: AND
        out: dict[str, Any] = {}
        for _ in range(2):
            out.update(_random_leaf(rng))
        return out
    return _random_leaf(rng)


@pytest.fixture(scope="module")
def filter_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[MultimodalStoreVectorStore, dict[str, dict]]:
    rng = random.Random(1234)
    metas: dict[str, dict[str, Any]] = {}
    for i in range(80):
        meta = {}
        for key in _KEYS:
            if rng.random() < 0.75:  # else the key is missing
                meta[key] = rng.choice(_VALUES)
        metas[f"doc-{i}"] = meta
    store = MultimodalStoreVectorStore(tmp_path_factory.mktemp("filters") / "kb", DeterministicFakeEmbedding(size=8))
    store.add_texts([f"text {i}" for i in range(len(metas))], list(metas.values()), ids=list(metas))
    return store, metas


def _matching(store: MultimodalStoreVectorStore, flt: Any) -> set[str]:
    return {d.id for d in store.similarity_search("anything", k=1000, filter=flt) if d.id}


def test_filters_match_python_evaluation(filter_store: tuple[MultimodalStoreVectorStore, dict[str, dict]]) -> None:
    store, metas = filter_store
    rng = random.Random(7)
    nonempty = 0
    for _ in range(150):
        flt = _random_filter(rng)
        expected = {i for i, m in metas.items() if _holds(m, flt)}
        assert _matching(store, flt) == expected, flt
        nonempty += bool(expected) and len(expected) < len(metas)
    assert nonempty > 50  # the random filters are selective, not trivially all/none


@pytest.mark.parametrize("flt", [
    {"a": 1},  # matches 1 and 1.0, not True nor "1"
    {"a": True},
    {"a": "1"},
    {"a": {"$ne": 1}},  # includes rows without "a" (and a: null) and other types
    {"a": {"$nin": [1, "x"]}},
    {"a": {"$nin": []}},
    {"a": {"$in": []}},
    {"a": {"$in": [True, 2.5, "é"]}},
    {"a": {"$gt": "a"}},  # strings only, code-point order
    {"a": {"$gte": 0, "$lt": 2}},
    {"a": {"$exists": False}},
    {"a": 1, "b": {"$ne": "x"}},
    {"$or": [{"a": {"$lt": 0}}, {"b": False}]},
    {"$and": [{"c": {"$exists": True}}, {"$or": [{"d": "y"}, {"d": {"$gt": 1}}]}]},
])
def test_filter_semantics(filter_store: tuple[MultimodalStoreVectorStore, dict[str, dict]], flt: dict) -> None:
    store, metas = filter_store
    expected = {i for i, m in metas.items() if _holds(m, flt)}
    assert _matching(store, flt) == expected


def test_filter_edge_cases_explicit(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", DeterministicFakeEmbedding(size=8))
    store.add_texts(["1", "2", "3", "4", "5", "6"], [{"y": 1}, {"y": 1.0}, {"y": True}, {"y": "1"}, {}, {"y": None}],
                    ids=["int", "float", "bool", "str", "missing", "null"])
    assert _matching(store, {"y": 1}) == {"int", "float"}
    assert _matching(store, {"y": {"$ne": 1}}) == {"bool", "str", "missing", "null"}
    assert _matching(store, {"y": {"$nin": [True, "1"]}}) == {"int", "float", "missing", "null"}
    assert _matching(store, {"y": {"$gte": 1}}) == {"int", "float"}
    assert _matching(store, {"y": {"$exists": True}}) == {"int", "float", "bool", "str"}
    assert _matching(store, {}) == _matching(store, None) == {"int", "float", "bool", "str", "missing", "null"}
    # a store expression works as a filter too
    assert _matching(store, mms.col("metadata")["y"] == "1") == {"str"}


@pytest.mark.parametrize("bad", [
    {"$foo": 1}, {"a": {"$bad": 1}}, {"a": None}, {"a": {"$gt": True}}, {"$and": []}, {"$or": {"a": 1}},
    {"a": {"$in": "abc"}}, {"a": {}}, {"a": [1, 2]}, {"a": {"nested": 1}}, {"a": math.nan}, {"a": {"$exists": 1}},
    [("a", 1)],
])
def test_invalid_filters_raise(bad: Any) -> None:
    with pytest.raises(ValueError):
        filter_to_expr(bad)


# --------------------------------------------------------------------------------------------- behaviour


def test_upsert_persistence_and_reopen(tmp_path: Path) -> None:
    emb = DeterministicFakeEmbedding(size=8)
    store = MultimodalStoreVectorStore(tmp_path / "kb", emb)
    assert store.similarity_search("x") == [] and store.get_by_ids(["a"]) == [] and len(store) == 0
    store.add_texts(["one", "two"], [{"n": 1}, {"n": 2.0, "tags": ["a", "b"], "nested": {"k": None}}], ids=["a", "b"])
    store.add_documents([Document(id="a", page_content="uno", metadata={"n": 1, "lang": "es"})])
    assert len(store) == 2
    # another handle (as another process would) sees every committed write
    other = MultimodalStoreVectorStore(str(tmp_path / "kb"), emb)
    assert other.get_by_ids(["b", "zzz", "a", "b"]) == [
        Document(id="b", page_content="two", metadata={"n": 2.0, "tags": ["a", "b"], "nested": {"k": None}}),
        Document(id="a", page_content="uno", metadata={"n": 1, "lang": "es"}),
    ]
    assert isinstance(other.get_by_ids(["b"])[0].metadata["n"], float)
    other.delete(["a"])
    assert [d.id for d in store.similarity_search("uno", k=5)] == ["b"]
    assert not mms.open(tmp_path / "kb").has_uncommitted_changes
    assert len(mms.open(tmp_path / "kb").history) >= 4
    with pytest.raises(ValueError, match="size 8"):
        MultimodalStoreVectorStore(tmp_path / "kb", DeterministicFakeEmbedding(size=4)).add_texts(["x"])
    store.delete()
    assert len(store) == 0 and store.similarity_search("two") == []


def test_from_documents_and_ids(tmp_path: Path) -> None:
    docs = [Document(id="keep", page_content="a", metadata={"x": 1}), Document(page_content="b")]
    store = MultimodalStoreVectorStore.from_documents(docs, DeterministicFakeEmbedding(size=8), uri=tmp_path / "kb")
    got = {d.page_content: d for d in store.similarity_search("a", k=5)}
    assert got["a"].id == "keep" and got["a"].metadata == {"x": 1}
    assert got["b"].id and got["b"].id != "keep" and got["b"].metadata == {}
    mem = MultimodalStoreVectorStore.from_texts(["q"], DeterministicFakeEmbedding(size=8), ids=["i"])
    assert mem.dataset.url.startswith("mem://") and mem.get_by_ids(["i"])[0].page_content == "q"
    with pytest.raises(ValueError):
        store.add_texts(["a", "b"], ids=["only-one"])


_VECS = {"q": [1.0, 0.0, 0.0], "A": [1.0, 0.0, 0.0], "A2": [0.99, 0.141, 0.0], "B": [0.6, 0.0, 0.8],
         "C": [-1.0, 0.0, 0.0]}


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_scores_relevance_and_mmr(tmp_path: Path, metric: str) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", FixedEmbeddings(_VECS), metric=metric)
    store.add_texts(["A", "A2", "B", "C"], ids=["A", "A2", "B", "C"])
    scored = store.similarity_search_with_score("q", k=4)
    assert [d.id for d, _ in scored] == ["A", "A2", "B", "C"]
    best, worst = scored[0][1], scored[-1][1]
    assert (best, worst) == ((pytest.approx(0.0, abs=1e-5), pytest.approx(2.0)) if metric == "l2"
                             else (pytest.approx(1.0), pytest.approx(-1.0)))
    rel = store.similarity_search_with_relevance_scores("q", k=4)
    assert [r for _, r in rel] == pytest.approx([1.0, 0.995, 0.8, 0.0], abs=2e-3)
    assert [d.id for d, _ in store.similarity_search_with_relevance_scores("q", k=4, score_threshold=0.9)] == ["A", "A2"]
    assert [d.id for d in store.similarity_search("q", k=2)] == ["A", "A2"]
    assert [d.id for d in store.max_marginal_relevance_search("q", k=2, fetch_k=3, lambda_mult=0.3)] == ["A", "B"]
    assert [d.id for d in store.max_marginal_relevance_search_by_vector([1, 0, 0], k=2, lambda_mult=1.0)] == ["A", "A2"]
    assert store.max_marginal_relevance_search("q", k=2, filter={"nope": 1}) == []


async def test_async_variants(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", FixedEmbeddings(_VECS))
    assert await store.aadd_texts(["A", "A2", "B"], metadatas=[{"g": 1}, {"g": 2}, {"g": 1}], ids=["A", "A2", "B"])
    assert [d.id for d in await store.asimilarity_search("q", k=3, filter={"g": 1})] == ["A", "B"]
    assert [d.id for d in await store.amax_marginal_relevance_search("q", k=2, lambda_mult=0.3)] == ["A", "B"]
    rel = await store.asimilarity_search_with_relevance_scores("q", k=1)
    assert rel[0][1] == pytest.approx(1.0)
    await store.adelete(["A"])
    assert [d.id for d in await store.aget_by_ids(["A", "B"])] == ["B"]
    retriever = MultimodalStoreRetriever(vectorstore=store, k=1)
    assert [d.id for d in await retriever.ainvoke("q")] == ["A2"]


def test_retriever_options(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", FixedEmbeddings(_VECS))
    store.add_texts(["A", "A2", "B", "C"], metadatas=[{"g": 1}, {"g": 1}, {"g": 2}, {"g": 2}], ids=["A", "A2", "B", "C"])
    retriever = MultimodalStoreRetriever(vectorstore=store, k=2)
    assert [d.id for d in retriever.invoke("q")] == ["A", "A2"]
    assert [d.id for d in retriever.invoke("q", filter={"g": 2})] == ["B", "C"]
    assert [d.id for d in retriever.invoke("q", search_type="mmr", fetch_k=3, lambda_mult=0.3)] == ["A", "B"]
    assert [d.id for d in retriever.invoke("q", k=4, score_threshold=0.7)] == ["A", "A2", "B"]
    with pytest.raises(TypeError):
        retriever.invoke("q", bogus=1)


# --------------------------------------------------------------------------------------------- messages / chain


def test_chain_retriever_prompt_chat_model_carries_image_bytes(clip: Any, tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", clip)
    images = {f"img-{i}": _image_bytes(40 + i, "JPEG" if i == 1 else "PNG") for i in range(3)}
    store.add_images(list(images.values()), metadatas=[{"caption": f"image number {i}"} for i in range(3)],
                     ids=list(images))
    store.add_texts(["a photo of a cat", "a chart showing sales by month"], ids=["t-cat", "t-chart"])
    retriever = MultimodalStoreRetriever(vectorstore=store, k=5)

    model = ParrotFakeChatModel()  # answers with the message it got: records what arrived
    chain = {"question": RunnablePassthrough(), "documents": retriever} | multimodal_prompt(store) | model
    received = chain.invoke("what is in the pictures?")
    assert isinstance(received, HumanMessage)
    blocks = received.content
    assert isinstance(blocks, list)
    image_blocks = [b for b in blocks if isinstance(b, dict) and b["type"] == "image"]
    assert len(image_blocks) == 3
    got = {base64.b64decode(b["base64"]): b["mime_type"] for b in image_blocks}
    assert got == {images["img-0"]: "image/png", images["img-1"]: "image/jpeg", images["img-2"]: "image/png"}
    texts = [b["text"] for b in blocks if isinstance(b, dict) and b["type"] == "text"]
    assert texts[-1] == "Question: what is in the pictures?"
    assert any("a photo of a cat" in t for t in texts) and any("(image) image number 1" in t for t in texts)
    # LangChain parses them as standard blocks
    assert sorted(b["type"] for b in received.content_blocks) == ["image"] * 3 + ["text"] * 7
    # each image block follows the text block of its own document
    docs = retriever.invoke("what is in the pictures?")
    order = [b for b in blocks if isinstance(b, dict)]
    for doc in docs:
        if doc.id in images:
            i = next(j for j, b in enumerate(order) if b["type"] == "text" and doc.page_content in b["text"])
            assert base64.b64decode(order[i + 1]["base64"]) == images[doc.id]
    # the documents themselves carry no image bytes
    assert all(set(d.metadata) <= {"caption"} for d in docs)


def test_content_blocks_without_store_and_with_mapping() -> None:
    docs = [Document(id="x", page_content="hello"), Document(id="y", page_content="")]
    assert [b["type"] for b in to_content_blocks(docs)] == ["text", "text"]
    blocks = to_content_blocks(docs, {"y": (b"\x89PNG...", "image/png")})
    assert [b["type"] for b in blocks] == ["text", "text", "image"]
    assert blocks[2]["base64"] == base64.b64encode(b"\x89PNG...").decode() and blocks[2]["mime_type"] == "image/png"
    msg = build_multimodal_message("why?", docs, instructions=None)
    assert [b["type"] for b in msg.content if isinstance(b, dict)] == ["text", "text", "text"]
