"""The LlamaIndex vector store on real datasets: filter parity with LlamaIndex's own
``SimpleVectorStore``, nested / NOT filters, MMR, node round trips (also across processes),
deletes, upserts, async variants and ``VectorStoreIndex``."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import (
    BaseNode,
    Document,
    ImageNode,
    IndexNode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn
from PIL import Image

import multimodal_store as mms
from multimodal_store import types
from multimodal_store.integrations.llama_index import (
    MultimodalStoreVectorStore,
    filters_to_expr,
    mmr_select,
)

DIM = 8
OPS = FilterOperator


def _png(color: tuple[int, int, int], size: tuple[int, int] = (12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 8), color).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------- the corpus


def _metadata(i: int) -> dict[str, Any]:
    """Varied metadata: ints / floats / bools, strings, lists, nulls, missing keys, nested dicts."""
    m: dict[str, Any] = {}
    year = [1999, 2001.5, 2005, True, None, 2020, 2005.0, False, 1, 0, "MISSING"][i % 11]
    if year != "MISSING":
        m["year"] = year
    title = ["Alpha", "beta", "", "alphabet soup", None, "Gamma_1%", "MISSING", "BETA max"][i % 8]
    if title != "MISSING":
        m["title"] = title
    mixed = ["1", 1, "x", 2.5, None, "MISSING", "rock"][i % 7]
    if mixed != "MISSING":
        m["mixed"] = mixed
    tags = [["rock", "pop"], ["jazz"], [], "rock and roll", ["pop", "jazz", "rock"], "MISSING", ["ROCK"]][i % 7]
    if tags != "MISSING":
        m["tags"] = tags
    nums = [[1, 2], [True, 3.5], [0], [], "MISSING", [2.0, 7]][i % 6]
    if nums != "MISSING":
        m["nums"] = nums
    if i % 9 == 0:
        m["nested"] = {"k": i}
    if i % 5 == 1:
        m["doc_id"] = "user-value"  # overridden by the node's ref_doc_id, as in LlamaIndex
    return m


def _corpus(n: int = 32, seed: int = 0) -> list[TextNode]:
    rng = np.random.default_rng(seed)
    nodes: list[TextNode] = []
    for i in range(n):
        rel = {}
        if i % 3:
            rel[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc{i % 4}")
        emb = rng.normal(size=DIM).tolist()
        node_cls = ImageNode if i % 4 == 0 else TextNode
        kwargs: dict[str, Any] = {}
        if node_cls is ImageNode:
            kwargs["image"] = base64.b64encode(_png((i * 7 % 256, 10, 200))).decode()
        nodes.append(node_cls(id_=f"n{i:02d}", text=f"node {i}", metadata=_metadata(i), embedding=emb,
                              relationships=rel, **kwargs))
    return nodes


def _cases() -> list[tuple[str, FilterOperator, Any]]:
    out: list[tuple[str, FilterOperator, Any]] = []
    for key in ("year", "mixed", "title", "tags", "nums", "nested", "absent"):
        for value in (2005, 1, 0, 2001.5, "rock", "1", "Alpha", "beta", ""):
            out += [(key, op, value) for op in (OPS.EQ, OPS.NE)]
        for value in ([1, 2005], [2005.0, 1999], ["rock", "x", "beta"], [], ["1"]):
            out += [(key, op, value) for op in (OPS.IN, OPS.NIN)]
        out.append((key, OPS.IS_EMPTY, None))
    for key, values in (("year", [2005, 1, 0, 2001.5, 1999.5, -3]), ("title", ["Alpha", "alpha", "beta", ""]),
                        ("mixed", [1, "1"])):
        out += [(key, op, v) for v in values for op in (OPS.GT, OPS.GTE, OPS.LT, OPS.LTE)]
    for key in ("tags", "nums", "title"):
        for value in ("rock", "pop", 1, 0, 2.0, "a"):
            out.append((key, OPS.CONTAINS, value))
        for value in (["rock", "jazz"], ["pop"], [], ["nope"], [1, 7], [2.0]):
            out += [(key, OPS.ANY, value), (key, OPS.ALL, value)]
    for key in ("title", "mixed", "tags"):
        for value in ("alpha", "BETA", "a_1%", "", "%"):
            out += [(key, OPS.TEXT_MATCH, value), (key, OPS.TEXT_MATCH_INSENSITIVE, value)]
    for key in ("doc_id", "ref_doc_id", "document_id"):
        out += [(key, OPS.EQ, "doc1"), (key, OPS.NE, "doc2"), (key, OPS.EQ, "None"), (key, OPS.IN, ["doc0", "doc3"]),
                (key, OPS.NIN, ["doc1"]), (key, OPS.TEXT_MATCH, "oc"), (key, OPS.EQ, 1), (key, OPS.GT, "doc1")]
    out += [("tags", OPS.EQ, ["rock", "pop"]), ("tags", OPS.NE, ["rock", "pop"]), ("tags", OPS.EQ, ["jazz"])]
    return out


@pytest.fixture(scope="module")
def corpus() -> list[TextNode]:
    return _corpus()


@pytest.fixture(scope="module")
def stores(corpus: list[TextNode], tmp_path_factory: pytest.TempPathFactory) -> tuple[SimpleVectorStore, MultimodalStoreVectorStore]:
    simple = SimpleVectorStore()
    simple.add(corpus)
    ours = MultimodalStoreVectorStore(tmp_path_factory.mktemp("parity") / "kb")
    ours.add(corpus[:20])
    ours.add(corpus[20:])  # two fragments
    return simple, ours


def _query(filters: MetadataFilters | None, k: int = 100, q: list[float] | None = None) -> VectorStoreQuery:
    if q is None:
        q = np.random.default_rng(1).normal(size=DIM).tolist()
    return VectorStoreQuery(query_embedding=q, similarity_top_k=k, filters=filters)


def _simple_ids(simple: SimpleVectorStore, filters: MetadataFilters | None, k: int = 100) -> list[str] | None:
    try:
        return list(simple.query(_query(filters, k)).ids or [])
    except TypeError:  # Python refuses the comparison (e.g. 'str' > 'int'): no reference answer
        return None


# --------------------------------------------------------------------------------------------- filter parity


def test_every_operator_matches_simple_vector_store(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore]) -> None:
    simple, ours = stores
    compared = 0
    ops_seen: set[FilterOperator] = set()
    for key, op, value in _cases():
        filters = MetadataFilters(filters=[MetadataFilter(key=key, value=value, operator=op)])
        expected = _simple_ids(simple, filters)
        if expected is None:
            continue
        got = ours.query(_query(filters)).ids
        assert got == expected, f"{key} {op.name} {value!r}"
        compared += 1
        ops_seen.add(op)
    assert ops_seen == set(FilterOperator)
    assert compared > 250


def test_top_k_order_and_similarities_match(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore]) -> None:
    simple, ours = stores
    filters = MetadataFilters(filters=[MetadataFilter(key="year", value=2000, operator=OPS.GT)])
    for k in (1, 3, 5):
        ref = simple.query(_query(filters, k))
        got = ours.query(_query(filters, k))
        assert got.ids == ref.ids
        np.testing.assert_allclose(got.similarities, ref.similarities, rtol=1e-5, atol=1e-6)
        assert [n.node_id for n in got.nodes] == got.ids


@pytest.mark.parametrize("condition", [FilterCondition.AND, FilterCondition.OR, FilterCondition.NOT])
def test_conditions_match_simple_vector_store(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore],
                                              condition: FilterCondition) -> None:
    simple, ours = stores
    rng = random.Random(hash(condition.value) % 1000)
    pool = _cases()
    compared = 0
    for _ in range(60):
        picked = rng.sample(pool, rng.randint(1, 3))
        filters = MetadataFilters(filters=[MetadataFilter(key=k, value=v, operator=o) for k, o, v in picked],
                                  condition=condition)
        expected = _simple_ids(simple, filters)
        if expected is None:
            continue
        assert ours.query(_query(filters)).ids == expected, filters
        compared += 1
    assert compared > 30


def _reference(filters: MetadataFilters, metadata: dict[str, Any]) -> bool:
    """Nested filters evaluated in Python, each leaf by LlamaIndex's own filter function."""
    results = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            results.append(_reference(f, metadata))
        else:
            results.append(build_metadata_filter_fn(lambda _: metadata, MetadataFilters(filters=[f]))("x"))
    if not results:
        return True
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.AND:
        return all(results)
    if condition == FilterCondition.OR:
        return any(results)
    return not any(results)


def test_nested_and_not_filters_match_python(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore]) -> None:
    simple, ours = stores
    metadata = dict(simple.data.metadata_dict)
    # only leaves LlamaIndex can evaluate on every node (no TypeError)
    safe = [c for c in _cases()
            if _simple_ids(simple, MetadataFilters(filters=[MetadataFilter(key=c[0], value=c[2], operator=c[1])]))
            is not None]
    rng = random.Random(7)

    def tree(depth: int) -> MetadataFilters:
        items: list[MetadataFilter | MetadataFilters] = []
        for _ in range(rng.randint(1, 3)):
            if depth > 0 and rng.random() < 0.5:
                items.append(tree(depth - 1))
            else:
                k, o, v = rng.choice(safe)
                items.append(MetadataFilter(key=k, value=v, operator=o))
        return MetadataFilters(filters=items, condition=rng.choice(list(FilterCondition)))

    nonempty = 0
    for _ in range(50):
        filters = tree(3)
        expected = sorted(i for i, m in metadata.items() if _reference(filters, m))
        got = sorted(ours.query(VectorStoreQuery(similarity_top_k=1000, filters=filters)).ids or [])
        assert got == expected, filters
        nonempty += bool(expected) and len(expected) < len(metadata)
    assert nonempty > 10


def test_filters_to_expr_is_an_expression_tree() -> None:
    f = MetadataFilters(filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="b", value=["x"], operator=OPS.NIN)],
                        condition=FilterCondition.OR)
    expr = filters_to_expr(f)
    assert isinstance(expr, mms.expr.Expr)
    assert filters_to_expr(None) is None and filters_to_expr(MetadataFilters(filters=[])) is None
    with pytest.raises(ValueError, match="string"):
        filters_to_expr(MetadataFilters(filters=[MetadataFilter(key="a", value=1, operator=OPS.TEXT_MATCH)]))


def test_node_ids_doc_ids_and_filter_only(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore]) -> None:
    simple, ours = stores
    ids = ["n03", "n05", "n10", "n11"]
    ref = simple.query(VectorStoreQuery(query_embedding=_query(None).query_embedding, similarity_top_k=3, node_ids=ids))
    assert ours.query(VectorStoreQuery(query_embedding=_query(None).query_embedding, similarity_top_k=3,
                                       node_ids=ids)).ids == ref.ids
    by_doc = ours.query(VectorStoreQuery(similarity_top_k=100, doc_ids=["doc1", "doc2"]))
    assert by_doc.similarities is None
    assert sorted(by_doc.ids) == sorted(n for n, r in simple.data.text_id_to_ref_doc_id.items() if r in ("doc1", "doc2"))
    # filter only: dataset order, limited by similarity_top_k
    only = ours.query(VectorStoreQuery(similarity_top_k=4, filters=MetadataFilters(
        filters=[MetadataFilter(key="tags", value="rock", operator=OPS.CONTAINS)])))
    assert only.ids == ["n00", "n03", "n04", "n07"]
    # [] is no restriction (MultiModalVectorStoreIndex passes it when the store keeps the nodes)
    assert len(ours.query(VectorStoreQuery(similarity_top_k=100, node_ids=[])).ids or []) == 32


def test_mmr_matches_simple_vector_store(stores: tuple[SimpleVectorStore, MultimodalStoreVectorStore]) -> None:
    simple, ours = stores
    for threshold in (0.2, 0.5, 0.9):
        q = VectorStoreQuery(query_embedding=_query(None).query_embedding, similarity_top_k=6,
                             mode=VectorStoreQueryMode.MMR, mmr_threshold=threshold)
        ref = simple.query(q, mmr_threshold=threshold)
        got = ours.query(q, mmr_prefetch_k=100)  # every node is a candidate: same picks
        assert got.ids == ref.ids
        plain = ours.query(VectorStoreQuery(query_embedding=q.query_embedding, similarity_top_k=100))
        sims = dict(zip(plain.ids or [], plain.similarities or [], strict=True))
        np.testing.assert_allclose(got.similarities, [sims[i] for i in got.ids or []], rtol=1e-5)
    # threshold through kwargs (as VectorIndexRetriever's vector_store_kwargs pass it), default prefetch
    q = VectorStoreQuery(query_embedding=_query(None).query_embedding, similarity_top_k=3, mode=VectorStoreQueryMode.MMR)
    assert len(ours.query(q, mmr_threshold=0.3).ids or []) == 3


def test_mmr_select_prefers_novelty() -> None:
    cands = np.array([[1.0, 0.0], [0.99, 0.01], [0.6, 0.8]])
    assert mmr_select(np.array([1.0, 0.0]), cands, 2, threshold=1.0) == [0, 1]
    assert mmr_select(np.array([1.0, 0.0]), cands, 2, threshold=0.3) == [0, 2]
    assert mmr_select(np.array([1.0, 0.0]), cands[:0], 2) == []


# --------------------------------------------------------------------------------------------- round trips


def _image_nodes(tmp_path: Path) -> tuple[list[ImageNode], dict[str, bytes]]:
    png, jpg, jpg2 = _png((255, 0, 0)), _jpeg((0, 255, 0)), _jpeg((0, 0, 255))
    (tmp_path / "green.jpg").write_bytes(jpg)
    (tmp_path / "blue.jpg").write_bytes(jpg2)
    nodes = [
        ImageNode(id_="img-b64", text="a red square", image=base64.b64encode(png).decode(), image_mimetype="image/png",
                  metadata={"color": "red"}, embedding=[1.0, 0.0, 0.0]),
        ImageNode(id_="img-path", text="", image_path=str(tmp_path / "green.jpg"), metadata={"color": "green"},
                  embedding=[0.0, 1.0, 0.0],
                  relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="album")}),
        ImageNode(id_="img-url", text="blue", image_url=(tmp_path / "blue.jpg").as_uri(), embedding=[0.0, 0.0, 1.0],
                  relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="album")}),
    ]
    return nodes, {"img-b64": png, "img-path": jpg, "img-url": jpg2}


def _text_nodes() -> list[BaseNode]:
    doc = Document(text="whole document", id_="doc-A")
    a = TextNode(id_="t-a", text="first chunk", metadata={"page": 1, "tags": ["x"]}, embedding=[0.5, 0.5, 0.0],
                 excluded_llm_metadata_keys=["page"], start_char_idx=0, end_char_idx=11,
                 relationships={NodeRelationship.SOURCE: doc.as_related_node_info(),
                                NodeRelationship.NEXT: RelatedNodeInfo(node_id="t-b")})
    b = TextNode(id_="t-b", text="second chunk", metadata={"page": 2}, embedding=[0.4, 0.6, 0.1],
                 relationships={NodeRelationship.SOURCE: doc.as_related_node_info(),
                                NodeRelationship.PREVIOUS: RelatedNodeInfo(node_id="t-a")})
    idx = IndexNode(id_="idx", text="see other index", index_id="other", embedding=[0.1, 0.1, 0.1])
    return [a, b, idx]


def _check_nodes(nodes: list[BaseNode], originals: list[BaseNode], images: dict[str, bytes]) -> None:
    by_id = {n.node_id: n for n in nodes}
    assert set(by_id) == {n.node_id for n in originals}
    for orig in originals:
        got = by_id[orig.node_id]
        assert type(got) is type(orig)
        assert got.metadata == orig.metadata
        assert got.get_content() == orig.get_content()
        assert got.ref_doc_id == orig.ref_doc_id
        assert got.relationships == orig.relationships
        assert got.excluded_llm_metadata_keys == orig.excluded_llm_metadata_keys
        assert got.embedding is None
        if isinstance(orig, ImageNode):
            assert isinstance(got, ImageNode)
            assert base64.b64decode(got.image or "") == images[orig.node_id]
            assert got.image_mimetype == ("image/png" if orig.node_id == "img-b64" else "image/jpeg")
            assert got.image_path == orig.image_path and got.image_url == orig.image_url
        if isinstance(orig, IndexNode):
            assert isinstance(got, IndexNode) and got.index_id == orig.index_id
        if isinstance(orig, TextNode) and isinstance(got, TextNode):
            assert (got.start_char_idx, got.end_char_idx) == (orig.start_char_idx, orig.end_char_idx)


def test_round_trip_after_reopening_in_a_new_process(tmp_path: Path) -> None:
    images, raw = _image_nodes(tmp_path)
    originals = [*_text_nodes(), *images]
    store = MultimodalStoreVectorStore(tmp_path / "kb")
    assert store.add(originals) == [n.node_id for n in originals]
    assert not store.dataset.has_uncommitted_changes
    # images are stored as Image column bytes, not base64 inside JSON
    stored = store.dataset.to_arrow(["id", "image", "node"]).to_pylist()
    for row in stored:
        if row["id"] in raw:
            assert row["image"]["data"] == raw[row["id"]]
            assert "image" not in json.loads(row["node"]) and base64.b64encode(raw[row["id"]]).decode() not in row["node"]
    # same process, fresh handle
    _check_nodes(MultimodalStoreVectorStore(tmp_path / "kb").get_nodes(), originals, raw)
    # another process (the store only: no LlamaIndex, no torch) reads the committed rows
    script = textwrap.dedent(f"""
        import hashlib, json
        import multimodal_store as mms
        rows = mms.open({str(tmp_path / "kb")!r}).to_arrow(["id", "image", "node", "ref_doc_id"]).to_pylist()
        print(json.dumps({{r["id"]: [json.loads(r["node"])["class_name"], r["ref_doc_id"],
                                    r["image"] and hashlib.sha256(r["image"]["data"]).hexdigest()] for r in rows}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {n.node_id: [type(n).__name__, n.ref_doc_id,
                                hashlib.sha256(raw[n.node_id]).hexdigest() if n.node_id in raw else None]
                    for n in originals}
    # and a fresh store on the url answers queries
    assert MultimodalStoreVectorStore(tmp_path / "kb").query(
        VectorStoreQuery(query_embedding=[0.0, 1.0, 0.0], similarity_top_k=1)).ids == ["img-path"]


def test_delete_by_ref_doc_get_nodes_clear_and_upsert(tmp_path: Path) -> None:
    images, _ = _image_nodes(tmp_path)
    store = MultimodalStoreVectorStore(tmp_path / "kb")
    store.add([*_text_nodes(), *images])
    assert len(store.dataset) == 6
    # upsert by id: same id twice does not duplicate; the new version wins
    again = TextNode(id_="t-a", text="first chunk, edited", metadata={"page": 10}, embedding=[0.5, 0.5, 0.0])
    store.add([again, again.model_copy()])
    assert len(store.dataset) == 6
    (got,) = store.get_nodes(["t-a"])
    assert got.get_content() == "first chunk, edited" and got.metadata == {"page": 10}
    # get_nodes keeps the order of the ids asked for, skips unknown ones
    assert [n.node_id for n in store.get_nodes(["img-url", "nope", "t-b"])] == ["img-url", "t-b"]
    assert store.get_nodes([]) == []
    page2 = MetadataFilters(filters=[MetadataFilter(key="page", value=2)])
    assert [n.node_id for n in store.get_nodes(filters=page2)] == ["t-b"]
    assert [n.node_id for n in store.get_nodes(["t-a", "t-b"], filters=page2)] == ["t-b"]
    # delete(ref_doc_id): both images of the album
    store.delete("album")
    assert sorted(n.node_id for n in store.get_nodes()) == ["idx", "img-b64", "t-a", "t-b"]
    assert sorted(MultimodalStoreVectorStore(tmp_path / "kb").node_ids()) == ["idx", "img-b64", "t-a", "t-b"]
    store.delete("doc-A")
    assert sorted(store.node_ids()) == ["idx", "img-b64", "t-a"]  # t-a was re-added without a source
    store.delete_nodes(node_ids=["idx", "img-b64"], filters=MetadataFilters(
        filters=[MetadataFilter(key="color", value="red")]))
    assert sorted(store.node_ids()) == ["idx", "t-a"]
    store.delete_nodes(node_ids=[])
    assert len(store.node_ids()) == 2
    store.delete_nodes(["idx"])
    assert store.node_ids() == ["t-a"]
    store.clear()
    assert store.node_ids() == [] and MultimodalStoreVectorStore(tmp_path / "kb").get_nodes() == []
    assert "embedding" in store.dataset.schema  # columns stay
    # writes are committed one version each
    assert [v.message for v in store.dataset.history][-3:] == [
        "llama-index: delete nodes", "llama-index: delete nodes", "llama-index: clear"]


def test_schema_from_first_add_and_clear_errors(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb")
    assert store.get_nodes() == [] and store.query(_query(None, q=[1.0, 0.0])).ids == []
    store.add([TextNode(id_="a", text="a", embedding=[1.0, 0.0, 0.0, 0.0])])
    assert store.dataset.schema["embedding"] == types.Embedding(4)
    with pytest.raises(ValueError, match="size 4, got size 3"):
        store.add([TextNode(id_="b", text="b", embedding=[1.0, 0.0, 0.0])])
    with pytest.raises(ValueError, match="no embedding"):
        store.add([TextNode(id_="c", text="c")])
    with pytest.raises(ValueError, match="different sizes"):
        store.add([TextNode(id_="d", text="d", embedding=[1.0]), TextNode(id_="e", text="e", embedding=[1.0, 2.0])])
    bad = ImageNode(id_="bad", image=base64.b64encode(b"not an image").decode(), embedding=[1.0, 0.0, 0.0, 0.0])
    with pytest.raises(mms.MultimodalStoreError):
        store.add([bad])
    assert not store.dataset.has_uncommitted_changes
    fresh = MultimodalStoreVectorStore(tmp_path / "fresh")
    with pytest.raises(mms.MultimodalStoreError):
        fresh.add([bad])
    assert len(fresh.dataset.schema) == 0  # nothing staged
    with pytest.raises(ValueError, match="image_path"):
        fresh.add([ImageNode(id_="p", image_path=str(tmp_path / "missing.png"), embedding=[1.0])])
    with pytest.raises(ValueError, match="query modes"):
        store.query(VectorStoreQuery(query_embedding=[1.0] * 4, mode=VectorStoreQueryMode.HYBRID))
    assert store.node_ids() == ["a"]


async def test_async_variants(tmp_path: Path) -> None:
    images, raw = _image_nodes(tmp_path)
    store = MultimodalStoreVectorStore(tmp_path / "kb")
    assert await store.async_add([*_text_nodes(), *images]) == ["t-a", "t-b", "idx", "img-b64", "img-path", "img-url"]
    res = await store.aquery(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=2))
    assert res.ids == ["img-b64", "t-a"]
    (node,) = await store.aget_nodes(["img-path"])
    assert isinstance(node, ImageNode) and base64.b64decode(node.image or "") == raw["img-path"]
    await store.adelete("album")
    await store.adelete_nodes(["idx"])
    assert sorted(n.node_id for n in await store.aget_nodes()) == ["img-b64", "t-a", "t-b"]
    await store.aclear()
    assert await store.aget_nodes() == []


def test_commit_on_write_false_and_wrapping_a_dataset(tmp_path: Path) -> None:
    ds = mms.open(tmp_path / "kb")
    store = MultimodalStoreVectorStore(ds, commit_on_write=False)
    store.add(_text_nodes())
    assert ds.has_uncommitted_changes and len(mms.open(tmp_path / "kb")) == 0
    assert store.query(_query(None, k=1, q=[0.5, 0.5, 0.0])).ids == ["t-a"]  # visible to this handle
    store.persist()
    assert len(mms.open(tmp_path / "kb")) == 3
    # a second store on the same url sees later commits of the first
    other = MultimodalStoreVectorStore(tmp_path / "kb")
    first = MultimodalStoreVectorStore(tmp_path / "kb")
    first.add([TextNode(id_="late", text="late", embedding=[0.0, 0.0, 1.0])])
    assert "late" in other.node_ids()


# --------------------------------------------------------------------------------------------- VectorStoreIndex


def test_vector_store_index_from_vector_store(tmp_path: Path) -> None:
    embed = MockEmbedding(embed_dim=8)
    store = MultimodalStoreVectorStore(tmp_path / "kb")
    docs = [Document(text=f"document number {i}", id_=f"doc{i}", metadata={"n": i}) for i in range(4)]
    index = VectorStoreIndex.from_documents(docs, storage_context=StorageContext.from_defaults(vector_store=store),
                                            embed_model=embed)
    assert len(store.dataset) == 4
    index = VectorStoreIndex.from_vector_store(MultimodalStoreVectorStore(tmp_path / "kb"), embed_model=embed)
    filters = MetadataFilters(filters=[MetadataFilter(key="n", value=2, operator=OPS.GTE)])
    hits = index.as_retriever(similarity_top_k=10, filters=filters).retrieve("number")
    assert sorted(h.node.ref_doc_id or "" for h in hits) == ["doc2", "doc3"]
    assert all(h.node.get_content().startswith("document number") for h in hits)
    index.delete_ref_doc("doc2")
    assert len(MultimodalStoreVectorStore(tmp_path / "kb").node_ids()) == 3
    index.insert(Document(text="a new one", id_="doc9"))
    hits = index.as_retriever(similarity_top_k=10, doc_ids=["doc9"]).retrieve("new")
    assert [h.node.ref_doc_id for h in hits] == ["doc9"]


def test_serialisation_remote_images_and_bfloat16_mmr(tmp_path: Path) -> None:
    store = MultimodalStoreVectorStore(tmp_path / "kb", embedding_dtype="bfloat16", mmr_prefetch_factor=2)
    rng = np.random.default_rng(3)
    nodes: list[BaseNode] = [TextNode(id_=f"t{i}", text=f"t{i}", embedding=rng.normal(size=6).tolist()) for i in range(6)]
    nodes.append(ImageNode(id_="remote", image_url="https://example.com/cat.png", embedding=rng.normal(size=6).tolist()))
    store.add(nodes)
    q = rng.normal(size=6).tolist()
    # an image known only by its url is kept as an image node (its url, no bytes)
    (remote,) = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=5), modality="image").nodes or []
    assert isinstance(remote, ImageNode) and remote.image is None and remote.image_url == "https://example.com/cat.png"
    assert "remote" not in (store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=9), modality="text").ids or [])
    # MMR on bfloat16 vectors: threshold 1 is the plain ranking
    plain = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
    mmr = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3, mode=VectorStoreQueryMode.MMR,
                                       mmr_threshold=1.0))
    assert mmr.ids == plain.ids
    # the store serialises like any LlamaIndex component
    again = MultimodalStoreVectorStore.from_dict(store.to_dict())
    assert again.uri == store.uri and again.embedding_dtype == "bfloat16" and again.mmr_prefetch_factor == 2
    assert sorted(again.node_ids()) == sorted(n.node_id for n in nodes)
    assert MultimodalStoreVectorStore().uri != MultimodalStoreVectorStore().uri  # fresh in-memory datasets
