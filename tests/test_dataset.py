"""The Dataset API: schema changes, writes, versions, errors, on-disk guarantees."""

from __future__ import annotations

import gc
import io
import json
import os
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from PIL import Image as PILImage

import multimodal_store as mms
from multimodal_store import types


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (4, 3), color).save(buf, format="PNG")
    return buf.getvalue()


def _make(path, dim: int = 4) -> mms.Dataset:
    ds = mms.open(path)
    ds.add_column("id", types.Int64())
    ds.add_column("text", types.Text())
    ds.add_column("emb", types.Embedding(dim))
    ds.add_column("meta", types.Json())
    return ds


def test_open_creates_and_reopens(tmp_path) -> None:
    url = tmp_path / "kb"
    ds = _make(url)
    ds.append([{"id": 1, "text": "a", "emb": [1, 0, 0, 0], "meta": {"k": "v"}}])
    assert ds.commit("first") == 1
    again = mms.open(str(url))
    assert again.version == 1 and len(again) == 1
    assert again[0] == {"id": 1, "text": "a", "emb": pytest.approx(np.array([1, 0, 0, 0], np.float32)),
                        "meta": {"k": "v"}}
    assert list(again.schema) == ["id", "text", "emb", "meta"]
    assert again.schema["emb"] == types.Embedding(4)
    assert mms.open(f"file://{url}").version == 1


def test_create_fails_if_exists_and_open_read_only_needs_dataset(tmp_path) -> None:
    mms.create(tmp_path / "a")
    with pytest.raises(mms.DatasetExistsError):
        mms.create(tmp_path / "a")
    with pytest.raises(mms.DatasetNotFoundError, match="not a dataset"):
        mms.open_read_only(tmp_path / "missing")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("x")
    with pytest.raises(mms.DatasetNotFoundError, match="is not a dataset"):
        mms.open(tmp_path / "foreign")
    assert isinstance(mms.DatasetNotFoundError("x"), FileNotFoundError)


def test_append_forms_are_equivalent(tmp_path) -> None:
    rows = [{"id": i, "text": f"t{i}", "emb": [i, 1, 2, 3], "meta": {"i": i}} for i in range(3)]
    emb = np.array([r["emb"] for r in rows], dtype=np.float32)
    forms = [
        rows,
        {"id": [0, 1, 2], "text": ["t0", "t1", "t2"], "emb": emb, "meta": [{"i": 0}, {"i": 1}, {"i": 2}]},
        {"id": np.arange(3), "text": ["t0", "t1", "t2"], "emb": torch.from_numpy(emb), "meta": [{"i": i} for i in range(3)]},
        pa.table({"id": [0, 1, 2], "text": ["t0", "t1", "t2"], "emb": pa.FixedSizeListArray.from_arrays(
            pa.array(emb.reshape(-1)), 4), "meta": [json.dumps({"i": i}) for i in range(3)]}),
        pd.DataFrame({"id": [0, 1, 2], "text": ["t0", "t1", "t2"], "emb": list(emb), "meta": [{"i": i} for i in range(3)]}),
    ]
    expected = None
    for n, form in enumerate(forms):
        ds = _make(tmp_path / f"d{n}")
        if n == 3:  # JSON given as text in an Arrow table is taken as JSON strings, not documents
            ds.remove_column("meta")
            ds.add_column("meta", types.Json())
            form = form.drop(["meta"])
        ds.append(form)
        got = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in ds[i].items()} for i in range(3)]
        if n == 3:
            got = [{**g, "meta": {"i": g["id"]}} for g in got]
        expected = expected or got
        assert got == expected, f"form {n}"
        ds.rollback()


def test_failed_append_stages_nothing(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": 1, "emb": [0, 0, 0, 1]}])
    ds.commit()
    with pytest.raises(mms.DataError, match="size 4, got size 3"):
        ds.append([{"id": 2, "emb": [0, 0, 0, 1]}, {"id": 3, "emb": [0, 0, 1]}])
    with pytest.raises(mms.ColumnNotFoundError, match="unknown column 'nope'; available columns: id, text, emb, meta"):
        ds.append([{"id": 2, "nope": 1}])
    assert len(ds) == 1 and not ds.has_uncommitted_changes
    assert mms.open(tmp_path / "kb")[0]["id"] == 1


def test_schema_changes(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": 1, "text": "a"}, {"id": 2, "text": "b"}])
    ds.commit()
    files_before = sorted(os.listdir(tmp_path / "kb" / "data"))
    ds.add_column("score", types.Float32(), default=0.5)
    ds.add_column("image", types.Image())
    assert files_before == sorted(os.listdir(tmp_path / "kb" / "data"))  # add_column rewrites nothing
    assert ds[1]["score"] == 0.5 and ds[1]["image"] is None
    ds.rename_column("text", "caption")
    assert ds[0]["caption"] == "a"
    ds.remove_column("meta")
    assert "meta" not in ds.schema
    with pytest.raises(mms.SchemaError, match="already exists"):
        ds.add_column("id", types.Int64())
    with pytest.raises(mms.ColumnNotFoundError, match="unknown column 'zzz'"):
        ds.remove_column("zzz")
    with pytest.raises(mms.SchemaError, match="already exists"):
        ds.rename_column("id", "caption")
    ds.commit()
    again = mms.open(tmp_path / "kb")
    assert again.schema.columns == ["id", "caption", "emb", "score", "image"]
    assert again[0] == {"id": 1, "caption": "a", "emb": None, "score": 0.5, "image": None}


def test_update_delete_upsert(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": i, "text": f"t{i}", "emb": [i, 0, 0, 0]} for i in range(6)])
    ds.commit()
    assert ds.update([1, 3], {"text": "changed"}) == 2
    assert [r["text"] for r in ds] == ["t0", "changed", "t2", "changed", "t4", "t5"]
    assert ds.update([0, 2], {"emb": np.array([[9, 9, 9, 9], [8, 8, 8, 8]], np.float32)}) == 2
    assert ds[2]["emb"].tolist() == [8, 8, 8, 8]
    assert ds.delete([0, 5]) == 2
    assert [r["id"] for r in ds] == [1, 2, 3, 4]
    inserted, replaced = ds.upsert([{"id": 2, "text": "new2"}, {"id": 10, "text": "ten"}], on="id")
    assert (inserted, replaced) == (1, 1)
    assert sorted((r["id"], r["text"]) for r in ds) == [(1, "changed"), (2, "new2"), (3, "changed"), (4, "t4"), (10, "ten")]
    v = ds.commit("edits")
    again = mms.open(tmp_path / "kb")
    assert again.version == v
    assert sorted((r["id"], r["text"]) for r in again) == [(1, "changed"), (2, "new2"), (3, "changed"), (4, "t4"), (10, "ten")]
    with pytest.raises(mms.DataError, match="got 3 values for 2 matched rows"):
        again.update([0, 1], {"text": ["a", "b", "c"]})
    with pytest.raises(mms.DataError, match="size 4, got size 2"):
        again.update([0], {"emb": [1, 2]})
    assert not again.has_uncommitted_changes


def test_versions_tags_history(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": 1}])
    v1 = ds.commit("one")
    ds.tag("first")
    ds.append([{"id": 2}])
    v2 = ds.commit("two")
    assert [h.message for h in ds.history] == ["created", "one", "two"]
    assert [h.num_rows for h in ds.history] == [0, 1, 2]
    old = mms.open(tmp_path / "kb", version=v1)
    assert len(old) == 1 and old.read_only
    with pytest.raises(mms.ReadOnlyError, match="read-only"):
        old.append([{"id": 3}])
    assert len(mms.open(tmp_path / "kb", version="first")) == 1
    assert len(mms.open_read_only(tmp_path / "kb")) == 2 and v2 == 2
    with pytest.raises(mms.VersionNotFoundError, match="no version or tag 'nope'"):
        mms.open(tmp_path / "kb", version="nope")
    with pytest.raises(mms.VersionNotFoundError):
        mms.open(tmp_path / "kb", version=99)
    assert ds.tags == {"first": 1}


def test_context_manager_commits_and_rolls_back(tmp_path) -> None:
    with _make(tmp_path / "kb") as ds:
        ds.append([{"id": 1}])
    assert mms.open(tmp_path / "kb").version == 1
    with pytest.raises(RuntimeError), mms.open(tmp_path / "kb") as ds:
        ds.append([{"id": 2}])
        raise RuntimeError("boom")
    assert len(mms.open(tmp_path / "kb")) == 1


def test_dropping_uncommitted_handle_warns(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": 1}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del ds
        gc.collect()
    assert any(issubclass(w.category, mms.UncommittedChangesWarning) for w in caught)


def test_uncommitted_changes_visible_to_handle_only(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.commit()
    ds.append([{"id": 1}])
    assert len(ds) == 1
    assert len(mms.open(tmp_path / "kb")) == 0
    ds.rollback()
    assert len(ds) == 0


def test_images_round_trip_bytes_exactly(tmp_path) -> None:
    ds = mms.open(tmp_path / "kb")
    ds.add_column("image", types.Image())
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    ds.append({"image": [red, blue]})
    ds.commit()
    again = mms.open(tmp_path / "kb")
    img = again[1]["image"]
    assert isinstance(img, PILImage.Image) and img.getpixel((0, 0)) == (0, 0, 255)
    stored = again.to_arrow(["image"]).column(0).combine_chunks().storage
    assert stored.field("data")[0].as_py() == red


def test_embeddings_are_memory_mapped(tmp_path) -> None:
    ds = _make(tmp_path / "kb", dim=8)
    x = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    ds.append({"id": np.arange(100), "emb": x})
    ds.commit()
    again = mms.open(tmp_path / "kb")
    fv = again.fragments()[0]
    arr = again.column_in(fv, "emb")
    values = arr.storage.values
    # zero-copy: the numpy view points into the memory-mapped file's buffer
    view = values.to_numpy(zero_copy_only=True)
    assert view.ctypes.data == values.buffers()[1].address
    np.testing.assert_array_equal(view.reshape(100, 8), x)
    np.testing.assert_array_equal(again["emb"].numpy(), x)


def test_mem_url(tmp_path) -> None:
    ds = mms.open("mem://test-mem-url")
    ds.add_column("t", types.Text())
    ds.append([{"t": "x"}])
    ds.commit()
    assert mms.open("mem://test-mem-url")[0]["t"] == "x"


def test_manifest_with_escaping_path_is_rejected(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": 1}])
    ds.commit()
    mpath = tmp_path / "kb" / "_versions" / f"{1:020d}.json"
    doc = json.loads(mpath.read_text())
    doc["fragments"][0]["groups"][0]["path"] = "../../etc/passwd"
    mpath.write_text(json.dumps(doc))
    with pytest.raises(mms.CorruptDatasetError, match="stay inside the dataset"):
        mms.open(tmp_path / "kb")


def test_compact_and_cleanup(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    for i in range(4):
        ds.append([{"id": i, "text": f"t{i}"}])
        ds.commit()
    ds.delete([0])
    ds.update([0], {"text": "x"})
    ds.commit()
    before = [r for r in ds]
    v = ds.compact()
    assert len(ds.fragments()) == 1 and len(ds.fragments()[0].groups) == 1
    assert [r for r in mms.open(tmp_path / "kb")] == before
    ds.tag("before-cleanup", 2)
    ds.append([{"id": 99}])
    ds.rollback()  # leaves an unreferenced data file behind
    data_files = set(os.listdir(tmp_path / "kb" / "data"))
    assert ds.cleanup(older_than=3600) == 0  # everything is younger than the grace period
    removed = ds.cleanup(older_than=0)
    assert removed > 0
    assert len(set(os.listdir(tmp_path / "kb" / "data"))) < len(data_files)
    # the latest and the tagged versions stay readable; untagged old versions are gone
    assert [r for r in mms.open(tmp_path / "kb")] == before and mms.open(tmp_path / "kb").version == v
    assert [r["id"] for r in mms.open(tmp_path / "kb", version="before-cleanup")] == [0, 1]
    assert [h.version for h in ds.history] == [2, v]


def test_column_view(tmp_path) -> None:
    ds = _make(tmp_path / "kb")
    ds.append([{"id": i, "text": f"t{i}"} for i in range(3)])
    assert ds["text"][1] == "t1" and ds["text"][0:2] == ["t0", "t1"]
    ds["text"][2] = "two"
    assert ds[2]["text"] == "two"
    assert ds["id"].numpy().tolist() == [0, 1, 2]
    ds.rollback()


def test_conflicting_updates_raise_and_disjoint_changes_rebase(tmp_path) -> None:
    url = tmp_path / "kb"
    ds = _make(url)
    ds.append([{"id": i, "text": f"t{i}"} for i in range(4)])
    ds.commit()
    a, b = mms.open(url), mms.open(url)
    a.update([0], {"text": "from a"})
    b.update([0], {"text": "from b"})
    a.commit()
    with pytest.raises(mms.CommitConflictError, match="same rows"):
        b.commit()
    assert mms.open(url)[0]["text"] == "from a"  # the loser wrote nothing
    b.rollback()
    # disjoint deletes and updates of different columns of the same fragment merge
    a, b, c = mms.open(url), mms.open(url), mms.open(url)
    a.delete([3])
    b.update([1], {"id": 100})
    c.append([{"id": 7, "text": "c"}])
    a.commit(), b.commit(), c.commit()
    rows = [(r["id"], r["text"]) for r in mms.open(url)]
    assert rows == [(0, "from a"), (100, "t1"), (2, "t2"), (7, "c")]
    # the same column of the same fragment rewritten concurrently (different rows) is refused
    a, b = mms.open(url), mms.open(url)
    a.update([0], {"text": "x"})
    b.update([1], {"text": "y"})
    a.commit()
    with pytest.raises(mms.CommitConflictError, match="rewrote columns"):
        b.commit()
    b.rollback()
