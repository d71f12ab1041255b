"""A dataset on S3, through the real S3 protocol against a local moto server."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image as PILImage

import multimodal_store as mms
from multimodal_store import types

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    mp = pytest.MonkeyPatch()
    for k, v in {"AWS_ENDPOINT_URL_S3": url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(k, v)
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket="bucket")
    yield url
    mp.undo()
    server.stop()


def test_put_if_absent_is_exclusive(s3_endpoint: str) -> None:
    from multimodal_store.storage.s3 import S3Storage

    s = S3Storage("s3://bucket/raw")
    assert s.put_if_absent("_versions/a.json", b"1")
    assert not s.put_if_absent("_versions/a.json", b"2")
    assert s.read("_versions/a.json") == b"1"
    assert s.list("_versions") == ["_versions/a.json"]
    assert s.read_range("_versions/a.json", 0, 1) == b"1"
    with pytest.raises(FileNotFoundError):
        s.read("nope")


def test_dataset_round_trip_on_s3(s3_endpoint: str) -> None:
    url = "s3://bucket/datasets/kb"
    ds = mms.open(url)
    ds.add_column("text", types.Text())
    ds.add_column("image", types.Image())
    ds.add_column("emb", types.Embedding(3))
    buf = io.BytesIO()
    PILImage.new("RGB", (5, 4), (1, 2, 3)).save(buf, format="PNG")
    ds.append([{"text": "a", "image": buf.getvalue(), "emb": [1, 2, 3]}, {"text": "b", "emb": [0, 0, 1]}])
    assert ds.commit("first") == 1
    ds.delete([0])
    ds.commit()
    again = mms.open(url)
    assert again.version == 2 and len(again) == 1 and again[0]["text"] == "b"
    old = mms.open(url, version=1)
    assert old[0]["image"].size == (5, 4)
    np.testing.assert_array_equal(old["emb"].numpy(), [[1, 2, 3], [0, 0, 1]])


def test_concurrent_handles_rebase_on_s3(s3_endpoint: str) -> None:
    url = "s3://bucket/datasets/race"
    a = mms.open(url)
    a.add_column("id", types.Int64())
    a.commit()
    b = mms.open(url)
    a.append([{"id": 1}])
    b.append([{"id": 2}])
    assert a.commit() == 2
    assert b.commit() == 3  # lost the race on version 2, rebased the append
    assert sorted(r["id"] for r in mms.open(url)) == [1, 2]
