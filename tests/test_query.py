"""The query engine end to end: the seed's SQL verbatim, the builder, execution against references."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

import multimodal_store as mms
from multimodal_store import col, types

DIM = 16
KINDS = ["image", "video", "text"]
DEPTS = ["engineering", "marketing", "sales", None]


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8 + i % 5, 6), (i * 7 % 256, 40, 90)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory):
    """A dataset shaped like the seed's, in three fragments with a deletion and an update."""
    path = tmp_path_factory.mktemp("q") / "multimodal_knowledge"
    rng = np.random.default_rng(7)
    ds = mms.open(str(path))
    ds.add_column("content_type", types.Text())
    ds.add_column("text", types.Text())
    ds.add_column("image", types.Image())
    ds.add_column("video_frame", types.Image())
    ds.add_column("clip_embedding", types.Embedding(DIM))
    ds.add_column("metadata", types.Json())
    ds.add_column("n", types.Int64())
    n_total = 0
    for part in range(3):
        rows = []
        for i in range(40):
            k = n_total + i
            kind = KINDS[k % 3]
            dept = DEPTS[k % 4]
            rows.append({
                "content_type": kind,
                "text": f"row {k}",
                "image": _jpeg(k) if kind == "image" else None,
                "video_frame": _jpeg(k) if kind == "video" else None,
                "clip_embedding": rng.standard_normal(DIM).astype(np.float32),
                "metadata": ({"department": dept, "year": 2000 + k % 7, "tags": ["a", "b"][: k % 3]}
                             if dept else {"year": 2000 + k % 7}),
                "n": k,
            })
        n_total += 40
        ds.append(rows)
        ds.commit(f"part {part}")
    ds.delete([5, 50])
    ds.update([7], {"text": "updated"})
    ds.commit("edits")
    return ds


def _frame(ds: mms.Dataset) -> pd.DataFrame:
    rows = []
    for r in ds:
        rows.append({"content_type": r["content_type"], "text": r["text"], "n": r["n"],
                     "dept": (r["metadata"] or {}).get("department"), "year": r["metadata"]["year"],
                     "emb": r["clip_embedding"]})
    return pd.DataFrame(rows)


def _cos_rank(df: pd.DataFrame, q: np.ndarray, k: int) -> list[int]:
    m = np.stack(df["emb"].to_list()).astype(np.float64)
    sims = m @ q.astype(np.float64) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    order = np.lexsort((np.arange(len(sims)), -sims))  # best first, ties by row order
    return df["n"].to_numpy()[order[:k]].tolist()


def test_seed_query_1_verbatim(kb: mms.Dataset) -> None:
    import multimodal_store as deeplake

    kb2 = deeplake.open(kb.url)
    q = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
    res = kb2.query("""
        SELECT text, image, video_frame, content_type, metadata
        FROM multimodal_knowledge
        ORDER BY cosine_similarity(clip_embedding, :q)
        LIMIT :k
    """, {"q": q, "k": 5})
    df = _frame(kb2)
    expected = _cos_rank(df, q, 5)
    assert [int(r["text"].split()[1]) if r["text"] != "updated" else 7 for r in res] == expected
    assert res.columns == ["text", "image", "video_frame", "content_type", "metadata"]
    assert np.all(np.diff(res.scores) <= 1e-6)  # best first
    for r in res:
        if r["content_type"] == "image":
            assert isinstance(r["image"], PILImage.Image)


def test_seed_query_2_image_search(kb: mms.Dataset) -> None:
    q = kb[3]["clip_embedding"]  # row 3 is an image row: it must rank first among images
    res = kb.query("""
        SELECT text, image, metadata
        FROM multimodal_knowledge
        WHERE content_type = 'image'
        ORDER BY cosine_similarity(clip_embedding, :q)
        LIMIT :k
    """, {"q": q, "k": 4})
    df = _frame(kb)
    expected = _cos_rank(df[df.content_type == "image"], q, 4)
    assert [r["metadata"]["year"] for r in res] == [2000 + n % 7 for n in expected]
    assert res["text"][0] == kb[3]["text"]
    assert res.scores[0] == pytest.approx(1.0, abs=1e-5)


def test_seed_query_3_json_and_in(kb: mms.Dataset) -> None:
    q = np.random.default_rng(3).standard_normal(DIM).astype(np.float32)
    sql = """
        SELECT image, text, video_frame
        FROM multimodal_knowledge
        WHERE metadata->>'department' = 'engineering'
        AND content_type IN ('image', 'video')
        ORDER BY cosine_similarity(clip_embedding, :q)
        LIMIT 10
    """
    res = kb.query(sql, {"q": q})
    df = _frame(kb)
    sub = df[(df.dept == "engineering") & df.content_type.isin(["image", "video"])]
    expected = _cos_rank(sub, q, 10)
    got = [r["text"] for r in res]
    assert got == [("updated" if n == 7 else f"row {n}") for n in expected]
    assert len(res) == min(10, len(sub))


def test_ranking_default_and_explicit_direction(kb: mms.Dataset) -> None:
    q = np.random.default_rng(4).standard_normal(DIM).astype(np.float32)
    best = kb.query("SELECT n FROM t ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 3", {"q": q})
    desc = kb.query("SELECT n FROM t ORDER BY cosine_similarity(clip_embedding, :q) DESC LIMIT 3", {"q": q})
    worst = kb.query("SELECT n FROM t ORDER BY cosine_similarity(clip_embedding, :q) ASC LIMIT 3", {"q": q})
    df = _frame(kb)
    assert best["n"] == desc["n"] == _cos_rank(df, q, 3)
    assert worst["n"] == _cos_rank(df, -q, 3)  # least similar to q = most similar to -q
    assert np.all(np.diff(worst.scores) >= -1e-6)
    near = kb.query("SELECT n FROM t ORDER BY l2_distance(clip_embedding, :q) LIMIT 3", {"q": q})
    m = np.stack(df["emb"].to_list())
    d = np.linalg.norm(m - q, axis=1)
    assert near["n"] == df["n"].to_numpy()[np.argsort(d, kind="stable")[:3]].tolist()
    np.testing.assert_allclose(near.scores, np.sort(d)[:3], rtol=1e-4)
    far = kb.query("SELECT n FROM t ORDER BY l2_distance(clip_embedding, :q) DESC LIMIT 2", {"q": q})
    assert far["n"] == df["n"].to_numpy()[np.argsort(-d, kind="stable")[:2]].tolist()
    np.testing.assert_allclose(far.scores, np.sort(d)[::-1][:2], rtol=1e-4)


def test_score_alias_offset_and_positional_params(kb: mms.Dataset) -> None:
    q = np.random.default_rng(5).standard_normal(DIM).astype(np.float32)
    res = kb.query("SELECT n, cosine_similarity(clip_embedding, ?) AS score FROM t "
                   "WHERE n < ? ORDER BY score LIMIT 4 OFFSET 2", [q, 60])
    df = _frame(kb)
    expected = _cos_rank(df[df.n < 60], q, 6)[2:]
    assert res["n"] == expected
    np.testing.assert_allclose(res["score"], res.scores, rtol=1e-6)


def test_builder_equals_sql(kb: mms.Dataset) -> None:
    q = np.random.default_rng(6).standard_normal(DIM).astype(np.float32)
    built = (kb.search(q, column="clip_embedding")
             .where((col("metadata")["department"] == "engineering") & col("content_type").isin(["image", "video"]))
             .select(["text", "n"]).limit(5).to_results())
    sql = kb.query("SELECT text, n FROM t WHERE metadata->>'department' = 'engineering' "
                   "AND content_type IN ('image', 'video') ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 5",
                   {"q": q})
    assert built["n"] == sql["n"] and len(built) == 5
    np.testing.assert_allclose(built.scores, sql.scores)
    tbl = kb.search(q).where("n >= 100").limit(3).to_arrow()
    assert tbl.num_rows == 3 and "score" in tbl.column_names
    assert kb.search(q).where(col("text").contains("row 1")).limit(50).to_pandas()["text"].str.contains("row 1").all()


def test_plain_order_limit_and_aggregates(kb: mms.Dataset) -> None:
    df = _frame(kb)
    res = kb.query("SELECT n, text FROM t WHERE content_type = 'text' ORDER BY n DESC LIMIT 3 OFFSET 1")
    assert res["n"] == sorted(df[df.content_type == "text"].n, reverse=True)[1:4]
    assert res.scores is None
    counts = kb.query("SELECT content_type, COUNT(*) AS c, MIN(n) AS lo, MAX(n) AS hi, AVG(n) AS mean "
                      "FROM t GROUP BY content_type ORDER BY content_type")
    exp = df.groupby("content_type").n.agg(["count", "min", "max", "mean"]).sort_index()
    assert counts["content_type"] == exp.index.tolist()
    assert counts["c"] == exp["count"].tolist()
    assert counts["lo"] == exp["min"].tolist() and counts["hi"] == exp["max"].tolist()
    np.testing.assert_allclose(counts["mean"], exp["mean"].to_numpy())
    total = kb.query("SELECT COUNT(*) AS c, SUM(n) AS s FROM t WHERE metadata->>'year' > 2003")
    sel = df[df.year > 2003]
    assert total[0] == {"c": len(sel), "s": int(sel.n.sum())}


def test_json_access_forms(kb: mms.Dataset) -> None:
    df = _frame(kb)
    a = kb.query("SELECT n FROM t WHERE metadata['department'] = 'sales'")
    b = kb.query("SELECT n FROM t WHERE metadata->'department' = 'sales'")
    c = kb.query("SELECT n FROM t WHERE metadata->>'year' = '2003'")
    d = kb.query("SELECT n FROM t WHERE CONTAINS(metadata->'tags', 'b')")
    e = kb.query("SELECT n FROM t WHERE metadata->>'department' IS NULL")
    assert sorted(a["n"]) == sorted(b["n"]) == sorted(df[df.dept == "sales"].n)
    assert sorted(c["n"]) == sorted(df[df.year == 2003].n)
    assert sorted(d["n"]) == sorted(n for n in df.n if n % 4 != 3 and n % 3 == 2)
    assert sorted(e["n"]) == sorted(df[df.dept.isna()].n)
    sel = kb.query("SELECT n, metadata->>'department' AS dept, metadata->'tags' AS tags FROM t WHERE n = 2")
    assert sel[0] == {"n": 2, "dept": "sales", "tags": ["a", "b"]}


def test_late_materialisation_decodes_only_winners(kb: mms.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import multimodal_store.types as t

    decoded = []
    real = t.Image.from_arrow

    def spy(self, value, ctx=None):
        decoded.append(1)
        return real(self, value, ctx)

    monkeypatch.setattr(t.Image, "from_arrow", spy)
    q = np.random.default_rng(8).standard_normal(DIM).astype(np.float32)
    res = kb.query("SELECT image FROM t WHERE content_type = 'image' "
                   "ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 3", {"q": q})
    assert decoded == []  # nothing decoded until a row is read
    _ = [r["image"] for r in res]
    assert len(decoded) == 3
    assert "<Image" in repr(res) and "JPEG>" in repr(res)


def test_query_errors(kb: mms.Dataset) -> None:
    q = np.zeros(DIM, np.float32)
    with pytest.raises(mms.QuerySyntaxError, match="line 1, column") as exc:
        kb.query("SELECT * FROM t WHER n = 1")
    assert exc.value.token
    with pytest.raises(mms.ColumnNotFoundError, match="unknown column 'nope'.*content_type"):
        kb.query("SELECT nope FROM t")
    with pytest.raises(mms.ParameterError, match=":q"):
        kb.query("SELECT n FROM t ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 3")
    with pytest.raises(mms.QueryError, match="query vector size 3 does not match column 'clip_embedding' dim 16"):
        kb.query("SELECT n FROM t ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 3", {"q": [1, 2, 3]})
    with pytest.raises(mms.QueryError, match="needs an Embedding column.*'text' is Text"):
        kb.query("SELECT n FROM t ORDER BY cosine_similarity(text, :q) LIMIT 3", {"q": q})
    with pytest.raises(mms.QueryError, match="n"):
        kb.query("SELECT n FROM t WHERE n = 'abc'")
    with pytest.raises(mms.QueryError):
        kb.query("DELETE FROM t WHERE n = 1")
    assert len(kb) == 118  # a query never changes data


def test_module_level_query_from_url(kb: mms.Dataset) -> None:
    res = mms.query(f'SELECT COUNT(*) AS c FROM "{kb.url}" WHERE content_type = \'video\'')
    assert res[0]["c"] == sum(1 for r in kb if r["content_type"] == "video")


_preds = st.sampled_from([
    ("n < 30", lambda d: d.n < 30),
    ("content_type = 'video'", lambda d: d.content_type == "video"),
    ("content_type IN ('image', 'text') AND n >= 20", lambda d: d.content_type.isin(["image", "text"]) & (d.n >= 20)),
    ("metadata->>'department' = 'marketing' OR n BETWEEN 100 AND 110", lambda d: (d.dept == "marketing") | d.n.between(100, 110)),
    ("NOT (metadata->>'year' > 2004)", lambda d: ~(d.year > 2004)),
    ("text LIKE 'row 1%'", lambda d: d.text.str.startswith("row 1")),
])


@settings(max_examples=25, deadline=None)
@given(pred=_preds, k=st.integers(1, 30), seed=st.integers(0, 1000))
def test_filtered_search_matches_brute_force(kb: mms.Dataset, pred, k: int, seed: int) -> None:
    sql, fn = pred
    q = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    res = kb.query(f"SELECT n FROM t WHERE {sql} ORDER BY cosine_similarity(clip_embedding, :q) LIMIT :k",
                   {"q": q, "k": k})
    df = _frame(kb)
    sub = df[fn(df).fillna(False).astype(bool)]
    assert res["n"] == _cos_rank(sub, q, k)


@pytest.mark.parametrize("deleted", [False, True])
def test_null_embeddings_and_deleted_rows_never_compete(tmp_path, deleted: bool) -> None:
    """Rows without an embedding, deleted rows and filtered-out rows never rank; the rest rank as numpy does."""
    rng = np.random.default_rng(3)
    n = 300
    emb = rng.standard_normal((n, DIM)).astype(np.float32)
    has_emb = rng.random(n) > 0.3
    ds = mms.open(str(tmp_path / "nulls"))
    ds.add_column("n", types.Int64())
    ds.add_column("clip_embedding", types.Embedding(DIM))
    ds.append([{"n": i, "clip_embedding": emb[i] if has_emb[i] else None} for i in range(n)])
    ds.commit("rows")
    gone = set(range(0, n, 7)) if deleted else set()
    if gone:
        ds.delete(sorted(gone))
        ds.commit("deletes")
    q = rng.standard_normal(DIM).astype(np.float32)
    cos = emb @ q / (np.linalg.norm(emb, axis=1) * np.linalg.norm(q))
    picked = list(range(3, n, 10))  # a sparse filter: the kernel visits only these rows
    for where, keep in (("", lambda i: True), ("WHERE n IN :ids", lambda i: i in picked)):
        ok = [i for i in range(n) if has_emb[i] and i not in gone and keep(i)]
        want = sorted(ok, key=lambda i: (-cos[i], i))[:25]
        res = ds.query(f"SELECT n FROM t {where} ORDER BY cosine_similarity(clip_embedding, :q) LIMIT 25",
                       {"q": q, "ids": picked})
        assert res["n"] == want
        np.testing.assert_allclose(res.scores, cos[want], rtol=1e-5)
