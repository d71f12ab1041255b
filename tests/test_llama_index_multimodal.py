"""Multimodal LlamaIndex use of the store: ``MultiModalVectorStoreIndex`` with the store as text and
image store, a dataset filled by ``ds.ingest`` (images, a real video, text) served as nodes,
the multimodal retriever with a tiny local CLIP, and query engines whose LLM must receive the
retrieved images and video frames as image blocks."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")
pytest.importorskip("av")
pytest.importorskip("transformers")

from llama_index.core import StorageContext
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    ImageBlock,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding, MockMultiModalEmbedding
from llama_index.core.indices.multi_modal import MultiModalVectorStoreIndex
from llama_index.core.llms import CustomLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, NodeWithScore, TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from media_fixtures import make_video
from PIL import Image

import multimodal_store as mms
from multimodal_store.integrations.llama_index import (
    MultimodalQueryEngine,
    MultimodalStoreRetriever,
    MultimodalStoreVectorStore,
    build_multimodal_query_engine,
)

ANSWER = "a red square and two video frames"


def _png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


class RecordingLLM(CustomLLM):
    """A multimodal chat LLM that records the messages it is sent and gives a canned answer."""

    calls: list[list[ChatMessage]] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "recording_multi_modal_llm"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=100_000, num_output=256, is_chat_model=True, model_name="recording")

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        self.calls.append(list(messages))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=ANSWER))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=ANSWER)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        yield CompletionResponse(text=ANSWER, delta=ANSWER)

    def image_bytes(self) -> list[bytes]:
        """The raw bytes of every ImageBlock received, in order."""
        return [b.resolve_image(as_base64=False).read() for msgs in self.calls for m in msgs for b in m.blocks
                if isinstance(b, ImageBlock)]


def _node_bytes(node: Any) -> bytes:
    assert isinstance(node, ImageNode) and node.image
    return base64.b64decode(node.image)


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from multimodal_store.embeddings import CLIPEmbedder, build_tiny_clip

    return CLIPEmbedder(build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip"))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, clip: Any) -> Path:
    """A dataset made by ds.ingest: two images, a two-shot video and a text file."""
    root = tmp_path_factory.mktemp("ingest")
    media = root / "media"
    media.mkdir()
    (media / "red.png").write_bytes(_png((230, 20, 20)))
    (media / "blue.png").write_bytes(_png((20, 20, 230)))
    make_video(media / "clip.mp4", durations=(1.0, 1.0), size=(64, 48), fps=8)
    (media / "notes.txt").write_text("Notes about the red car parked on the street.")
    ds = mms.open(root / "kb")
    report = ds.ingest(media, image_embedder=clip, progress=False)
    assert not report.errors and report.files_ingested == 4
    return root / "kb"


@pytest.fixture()
def kb(ingested: Path, tmp_path: Path) -> Path:
    """A private copy of the ingested dataset."""
    return Path(shutil.copytree(ingested, tmp_path / "kb"))


def _stored(kb: Path) -> list[dict[str, Any]]:
    return mms.open(kb).to_arrow().to_pylist()


# --------------------------------------------------------------------------------------------- ingested rows


def test_ingested_rows_come_back_as_nodes(kb: Path) -> None:
    rows = _stored(kb)
    frames = [r for r in rows if r["content_type"] == "video"]
    assert len(frames) >= 2
    store = MultimodalStoreVectorStore(kb)
    assert store.columns.embedding == "clip_embedding"
    nodes = {n.node_id: n for n in store.get_nodes()}
    assert len(nodes) == len(rows)
    for r in frames:
        node = nodes[f"{r['source']}#frame={r['frame_index']}"]
        assert isinstance(node, ImageNode)
        assert _node_bytes(node) == r["video_frame"]["data"] and node.image_mimetype == "image/jpeg"
        assert {k: node.metadata[k] for k in ("source", "timestamp", "frame_index")} == {
            "source": r["source"], "timestamp": r["timestamp"], "frame_index": r["frame_index"]}
        assert node.text.startswith("frame at 00:0") and node.text.endswith("of clip.mp4")
        assert node.ref_doc_id == r["source"]
    image_row = next(r for r in rows if r["source"].endswith("red.png"))
    red = nodes[image_row["source"]]
    assert isinstance(red, ImageNode) and red.image_mimetype == "image/png"
    assert _node_bytes(red) == image_row["image"]["data"] == Path(image_row["source"]).read_bytes()
    text_row = next(r for r in rows if r["content_type"] == "text")
    chunk = nodes[f"{text_row['source']}#chunk=0"]
    assert type(chunk) is TextNode and "red car" in chunk.text
    # ids select rows; filters work on ingest metadata; delete(source) removes a whole file
    some = [f"{frames[1]['source']}#frame={frames[1]['frame_index']}", image_row["source"], "nope"]
    assert [n.node_id for n in store.get_nodes(some)] == some[:2]
    only_video = MetadataFilters(filters=[MetadataFilter(key="source", value="clip.mp4",
                                                         operator=FilterOperator.TEXT_MATCH)])
    q = VectorStoreQuery(query_embedding=rows[0]["clip_embedding"], similarity_top_k=50, filters=only_video)
    assert {n.metadata["frame_index"] for n in store.query(q).nodes or []} == {r["frame_index"] for r in frames}
    frame_ids = {f"{r['source']}#frame={r['frame_index']}" for r in frames}
    by_doc = MetadataFilters(filters=[MetadataFilter(key="doc_id", value=frames[0]["source"])])
    assert {n.node_id for n in store.get_nodes(filters=by_doc)} == frame_ids
    assert set(store.query(VectorStoreQuery(similarity_top_k=50, doc_ids=[frames[0]["source"]])).ids or []) == frame_ids
    store.delete(frames[0]["source"])
    assert len(mms.open(kb)) == len(rows) - len(frames)
    store.delete_nodes([image_row["source"]])
    assert sorted(MultimodalStoreVectorStore(kb).node_ids()) == sorted(
        r["source"] if r["content_type"] == "image" else f"{r['source']}#chunk=0"
        for r in rows if r["content_type"] != "video" and r is not image_row)


def test_nodes_added_to_an_ingested_dataset(kb: Path, clip: Any) -> None:
    store = MultimodalStoreVectorStore(kb)
    vec = clip.encode_image([_png((0, 200, 0))])[0].tolist()
    store.add([ImageNode(id_="green", image=base64.b64encode(_png((0, 200, 0))).decode(), embedding=vec,
                         metadata={"color": "green"})])
    hit = store.query(VectorStoreQuery(query_embedding=vec, similarity_top_k=1))
    assert hit.ids == ["green"] and hit.similarities is not None and hit.similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert _node_bytes(hit.nodes[0]) == _png((0, 200, 0))  # type: ignore[index]
    with pytest.raises(ValueError, match="embedding size mismatch"):
        store.add([TextNode(id_="bad", text="x", embedding=[1.0, 2.0])])


# --------------------------------------------------------------------------------------------- retriever


def test_retriever_text_frames_and_image_queries(kb: Path, clip: Any) -> None:
    store = MultimodalStoreVectorStore(kb)
    rows = _stored(kb)
    retriever = MultimodalStoreRetriever(store, clip, similarity_top_k=1, image_similarity_top_k=10)
    hits = retriever.retrieve("a red car")
    assert type(hits[0].node) is TextNode and "red car" in hits[0].node.get_content()
    images = hits[1:]
    assert len(images) == sum(r["content_type"] in ("image", "video") for r in rows)
    assert all(isinstance(h.node, ImageNode) and h.node.image for h in images)
    # ranked by the CLIP text tower against the stored image embeddings
    q = clip.encode_text(["a red car"])[0]
    by_id = {h.node.node_id: h.score for h in images}
    for h in images:
        r = next(r for r in rows if h.node.node_id in (r["source"], f"{r['source']}#frame={r['frame_index']}"))
        emb = np.asarray(r["clip_embedding"])
        assert by_id[h.node.node_id] == pytest.approx(float(emb @ q / np.linalg.norm(emb) / np.linalg.norm(q)),
                                                      abs=1e-4)
    assert [h.score for h in images] == sorted((h.score for h in images), reverse=True)
    assert {h.node.node_id for h in retriever.text_to_image_retrieve("a red car")} == {h.node.node_id for h in images}
    # image -> image: the same image comes first, whether given as bytes, path or PIL image
    red_path = next(r["source"] for r in rows if r["source"].endswith("red.png"))
    for query in (Path(red_path).read_bytes(), red_path, Image.open(red_path)):
        top = retriever.image_to_image_retrieve(query)[0]
        assert top.node.node_id == red_path and top.score == pytest.approx(1.0, abs=1e-4)
    # filters apply to every search
    frames_only = MultimodalStoreRetriever(store, clip, image_similarity_top_k=10, filters=MetadataFilters(
        filters=[MetadataFilter(key="frame_index", value=0, operator=FilterOperator.GTE)]))
    assert {h.node.metadata["source"] for h in frames_only.text_to_image_retrieve("anything")} == {
        r["source"] for r in rows if r["content_type"] == "video"}
    assert frames_only.text_retrieve("anything") == []


async def test_retriever_async(kb: Path, clip: Any) -> None:
    retriever = MultimodalStoreRetriever(MultimodalStoreVectorStore(kb), clip, image_similarity_top_k=2)
    hits = await retriever.aretrieve("a red car")
    assert [type(h.node) for h in hits] == [TextNode, ImageNode, ImageNode]
    assert len(await retriever.atext_to_image_retrieve("blue")) == 2
    assert len(await retriever.atext_retrieve("notes")) == 1
    red_path = next(r["source"] for r in _stored(kb) if r["source"].endswith("red.png"))
    assert (await retriever.aimage_to_image_retrieve(red_path))[0].node.node_id == red_path


def test_retriever_with_a_separate_text_model(kb: Path, clip: Any) -> None:
    ds = mms.open(kb)
    ds.add_column("text_embedding", mms.types.Embedding(8))
    ds.update(mms.col("content_type") == "text", {"text_embedding": [0.5] * 8})
    ds.commit("text vectors")
    retriever = MultimodalStoreRetriever(MultimodalStoreVectorStore(kb), clip, text_embed_model=MockEmbedding(embed_dim=8),
                                         text_embedding_column="text_embedding", similarity_top_k=5,
                                         image_similarity_top_k=1)
    hits = retriever.retrieve("cars")
    assert [type(h.node) for h in hits] == [TextNode, ImageNode]
    assert hits[0].score == pytest.approx(1.0) and "red car" in hits[0].node.get_content()


# --------------------------------------------------------------------------------------------- query engines


@pytest.mark.parametrize("native", [True, False])
async def test_query_engine_sends_images_and_frames_to_the_llm(kb: Path, clip: Any, native: bool) -> None:
    store = MultimodalStoreVectorStore(kb)
    rows = _stored(kb)
    frame_bytes = {r["video_frame"]["data"] for r in rows if r["content_type"] == "video"}
    retriever = MultimodalStoreRetriever(store, clip, similarity_top_k=1, image_similarity_top_k=len(rows))
    llm = RecordingLLM()
    engine = build_multimodal_query_engine(retriever, llm, native=None if native else False)
    assert isinstance(engine, RetrieverQueryEngine if native else MultimodalQueryEngine)
    response = engine.query("What do the images and the video show?")
    assert str(response) == ANSWER
    retrieved = [_node_bytes(n.node) for n in response.source_nodes if isinstance(n.node, ImageNode)]
    sent = llm.image_bytes()
    assert sorted(sent) == sorted(retrieved)  # every retrieved image reached the LLM, byte for byte
    assert frame_bytes <= set(sent)  # including the frames of the real video
    assert any(r["image"] and r["image"]["data"] in sent for r in rows)  # and the ingested images
    text = " ".join(b.text for msgs in llm.calls for m in msgs for b in m.blocks if hasattr(b, "text") and b.text)
    assert "What do the images and the video show?" in text and "clip.mp4" in text
    # async path
    llm.calls.clear()
    response = await engine.aquery("again?")
    assert str(response) == ANSWER and sorted(llm.image_bytes()) == sorted(retrieved)


# --------------------------------------------------------------------------------------------- MultiModalVectorStoreIndex


@pytest.mark.filterwarnings("ignore:Call to deprecated class SimpleMultiModalQueryEngine:DeprecationWarning")
def test_multimodal_vector_store_index(tmp_path: Path) -> None:
    colors = {"red": (220, 0, 0), "green": (0, 200, 0), "blue": (0, 0, 220)}
    images = {name: _png(c) for name, c in colors.items()}
    (tmp_path / "green.png").write_bytes(images["green"])
    nodes: list[Any] = [
        TextNode(id_="t1", text="Red things are warm.", metadata={"kind": "text"}),
        TextNode(id_="t2", text="Blue things are cold.", metadata={"kind": "text"}),
        ImageNode(id_="red", image=base64.b64encode(images["red"]).decode(), metadata={"kind": "image"}),
        ImageNode(id_="green", image_path=str(tmp_path / "green.png"), text="a green square",
                  metadata={"kind": "image"}),
        ImageNode(id_="blue", image=base64.b64encode(images["blue"]).decode(), metadata={"kind": "image"}),
    ]
    text_store = MultimodalStoreVectorStore(tmp_path / "text")
    image_store = MultimodalStoreVectorStore(tmp_path / "images")
    embed, image_embed = MockEmbedding(embed_dim=8), MockMultiModalEmbedding(embed_dim=16)
    index = MultiModalVectorStoreIndex(
        nodes, storage_context=StorageContext.from_defaults(vector_store=text_store, image_store=image_store),
        embed_model=embed, image_embed_model=image_embed,
    )
    assert len(image_store.dataset) == 3 and len(text_store.dataset) == 3  # t1, t2 and the captioned image
    assert image_store.dataset.schema["embedding"].dim == 16

    def check(index: MultiModalVectorStoreIndex) -> None:
        hits = index.as_retriever(similarity_top_k=3, image_similarity_top_k=3).retrieve("warm colours")
        got_images = {h.node.node_id: _node_bytes(h.node) for h in hits if isinstance(h.node, ImageNode)}
        assert got_images == images
        assert {h.node.node_id for h in hits if not isinstance(h.node, ImageNode)} >= {"t1", "t2"}

    check(index)
    # reopened from the two urls in fresh stores
    reopened = MultiModalVectorStoreIndex.from_vector_store(
        MultimodalStoreVectorStore(tmp_path / "text"), embed_model=embed,
        image_vector_store=MultimodalStoreVectorStore(tmp_path / "images"), image_embed_model=image_embed,
    )
    check(reopened)
    # the index's own multimodal query engine gets the images from the store
    llm = RecordingLLM()
    response = reopened.as_query_engine(llm=llm, similarity_top_k=1, image_similarity_top_k=3).query("colours?")
    assert str(response) == ANSWER and sorted(llm.image_bytes()) == sorted(images.values())
    # the store's retriever with a LlamaIndex multimodal embedding
    mm = MultimodalStoreRetriever(MultimodalStoreVectorStore(tmp_path / "images"), image_embed, image_similarity_top_k=3)
    assert {h.node.node_id for h in mm.image_to_image_retrieve(images["red"])} == set(images)
    assert {h.node.node_id for h in mm.image_to_image_retrieve(str(tmp_path / "green.png"))} == set(images)
    # deleting through the index removes the row from the store
    index.delete_nodes(["t2"])
    assert "t2" not in MultimodalStoreVectorStore(tmp_path / "text").node_ids()


def test_node_with_score_text_for_frames_is_not_empty(kb: Path) -> None:
    store = MultimodalStoreVectorStore(kb)
    frames = [n for n in store.get_nodes() if n.metadata.get("frame_index") is not None]
    for node in frames:
        assert NodeWithScore(node=node).get_content().strip()  # not dropped as empty by synthesizers
