"""Column types: conversion to Arrow, validation errors, decoding, extension types on disk."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image as PILImage

from multimodal_store import DataError, SchemaError, types
from multimodal_store.types import type_from_json


def _png(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 6)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size: tuple[int, int] = (10, 7)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (0, 128, 255)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("ctype", [
    types.Text(), types.Int64(), types.Int32(), types.Float32(), types.Float64(), types.Bool(), types.Timestamp(),
    types.Json(), types.Embedding(3), types.Embedding(5, "float16"), types.Embedding(2, "bfloat16"),
    types.Image(), types.Audio(), types.Video(), types.Link(),
])
def test_type_json_round_trip(ctype: types.ColumnType) -> None:
    assert type_from_json(ctype.to_json()) == ctype


def test_media_types_are_namespaced_extension_types() -> None:
    for ctype in (types.Image(), types.Audio(), types.Video(), types.Link(), types.Json(), types.Embedding(4)):
        t = ctype.arrow_type
        assert isinstance(t, pa.ExtensionType)
        assert t.extension_name.startswith("multimodal_store.")


def test_extension_types_survive_ipc() -> None:
    arr = types.Image().to_arrow([_png()], "img")
    emb = types.Embedding(3, "float16").to_arrow([[1, 2, 3]], "e")
    table = pa.table({"img": arr, "e": emb})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    back = pa.ipc.open_file(pa.BufferReader(sink.getvalue())).read_all()
    assert back.schema.field("img").type == types.Image().arrow_type
    assert back.schema.field("e").type == types.Embedding(3, "float16").arrow_type


def test_embedding_validation_messages() -> None:
    e = types.Embedding(4)
    with pytest.raises(DataError, match=r"expects embeddings of size 4, got size 3 \(row 1\)"):
        e.to_arrow([[1, 2, 3, 4], [1, 2, 3]], "clip")
    with pytest.raises(DataError, match="NaN or inf.*row 0"):
        e.to_arrow([[np.nan, 0, 0, 0]], "clip")
    with pytest.raises(DataError, match="NaN or inf.*row 1"):
        e.to_arrow(np.array([[0, 0, 0, 0], [np.inf, 0, 0, 0]], dtype=np.float32), "clip")
    with pytest.raises(DataError, match="size 4, got size 5"):
        e.to_arrow(np.zeros((2, 5), dtype=np.float32), "clip")
    with pytest.raises(SchemaError):
        types.Embedding(0)
    with pytest.raises(SchemaError, match="dtype"):
        types.Embedding(4, "int4")


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 1e-3), ("bfloat16", 8e-3)])
def test_embedding_dtypes_round_trip(dtype: str, tol: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 7)).astype(np.float32)
    e = types.Embedding(7, dtype)
    arr = e.to_arrow(x, "v")
    back = np.stack([e.from_arrow(arr[i].as_py()) for i in range(5)])
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x, rtol=tol, atol=tol)


def test_embedding_accepts_torch_and_nulls() -> None:
    import torch

    e = types.Embedding(3)
    arr = e.to_arrow(torch.arange(6, dtype=torch.float32).reshape(2, 3), "v")
    assert arr[1].as_py() == [3.0, 4.0, 5.0]
    arr = e.to_arrow([None, [1, 2, 3]], "v")
    assert arr.null_count == 1 and e.from_arrow(arr[0].as_py()) is None


def test_image_keeps_bytes_and_records_size() -> None:
    jpeg = _jpeg((10, 7))
    arr = types.Image().to_arrow([jpeg], "img")
    stored = arr[0].as_py()
    assert stored["data"] == jpeg
    assert (stored["mime"], stored["width"], stored["height"]) == ("image/jpeg", 10, 7)
    img = types.Image().from_arrow(stored)
    assert isinstance(img, PILImage.Image) and img.size == (10, 7)


def test_image_from_array_and_pil() -> None:
    a = np.zeros((4, 6, 3), dtype=np.uint8)
    a[..., 1] = 200
    arr = types.Image().to_arrow([a, PILImage.fromarray(a)], "img")
    for i in range(2):
        v = arr[i].as_py()
        assert (v["width"], v["height"]) == (6, 4)
        np.testing.assert_array_equal(np.asarray(types.Image().from_arrow(v)), a)


def test_corrupt_image_names_column_and_row() -> None:
    with pytest.raises(DataError, match=r"column 'img', row 1"):
        types.Image().to_arrow([_png(), b"not an image at all"], "img")


def test_json_values_and_errors() -> None:
    j = types.Json()
    arr = j.to_arrow([{"a": [1, 2]}, [1, "x"], "s", 3, None, True], "m")
    assert [j.from_arrow(v.as_py()) for v in arr.storage] == [{"a": [1, 2]}, [1, "x"], "s", 3, None, True]
    with pytest.raises(DataError, match="not JSON-serialisable"):
        j.to_arrow([{"a": object()}], "m")
    with pytest.raises(DataError, match="not JSON-serialisable"):
        j.to_arrow([{"a": float("nan")}], "m")


def test_text_rejects_non_strings() -> None:
    with pytest.raises(DataError, match="expected str or None, got int at row 1"):
        types.Text().to_arrow(["a", 5], "t")


def test_link_resolves_lazily(tmp_path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(b"hello")
    arr = types.Link().to_arrow([str(p), f"file://{p}"], "l")
    for i in range(2):
        v = types.Link().from_arrow(arr[i].as_py())
        assert v.read() == b"hello"


def test_video_needs_blob_writer_and_links(tmp_path) -> None:
    stored: dict[str, bytes] = {}

    def blobs(data: bytes, suffix: str) -> str:
        stored[f"blobs/x{suffix}"] = data
        return f"blobs/x{suffix}"

    vid = tmp_path / "clip.mp4"
    vid.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    arr = types.Video().to_arrow([str(vid), "https://example.com/v.mp4"], "v", blobs=blobs)
    assert arr[0].as_py()["blob"] == "blobs/x.mp4" and stored["blobs/x.mp4"] == vid.read_bytes()
    assert arr[1].as_py()["uri"] == "https://example.com/v.mp4"
    with pytest.raises(DataError, match="needs a dataset"):
        types.Video().to_arrow([b"abc"], "v")
