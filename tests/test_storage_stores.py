"""The object-store seam against both stores: a local folder and a real S3 server (``weed mini``)."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import urllib.error
import urllib.request

import pytest
from minio import Minio

from service.errors import InvalidObjectKey, ObjectNotFound, StorageError
from service.settings import Settings
from service.storage import LocalStore, S3Store, store_from_url, verify_object
from service.errors import IntegrityFailed

from conftest import s3_settings
from test_storage import ESCAPES


def _read(store, key, start=0, end=None) -> bytes:
    return b"".join(store.open_range(key, start, end))


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return store_from_url(Settings(**s3_settings(request.getfixturevalue("weed"))))


def test_upload_read_size_delete(store):
    data = b"evidence bytes " * 1000
    assert store.put("c1/cam1/a.jpg", data, "image/jpeg") == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.exists("c1/cam1/a.jpg") and store.size("c1/cam1/a.jpg") == len(data)
    assert _read(store, "c1/cam1/a.jpg") == data
    verify_object(store, "c1/cam1/a.jpg", hashlib.sha256(data).hexdigest(), len(data))
    with pytest.raises(IntegrityFailed, match="c1/cam1/a.jpg"):
        verify_object(store, "c1/cam1/a.jpg", "0" * 64, len(data))
    store.delete("c1/cam1/a.jpg")
    assert not store.exists("c1/cam1/a.jpg")
    store.delete("c1/cam1/a.jpg")  # deleting what is gone is fine (retention re-runs)


def test_range_reads(store):
    """Both ends inclusive; an end past the object's last byte is clamped to it."""
    data = bytes(range(256)) * 1000  # larger than one read chunk
    store.put("r.bin", data, "application/octet-stream")
    assert _read(store, "r.bin", 0, 0) == data[:1]
    assert _read(store, "r.bin", 10, 19) == data[10:20]
    assert _read(store, "r.bin", 70000, None) == data[70000:]
    assert _read(store, "r.bin", 65530, 65600) == data[65530:65601]
    assert _read(store, "r.bin", 255_990, 10**9) == data[255_990:]


def test_missing_object(store):
    with pytest.raises(ObjectNotFound):
        store.open_range("nope.bin")
    with pytest.raises(ObjectNotFound):
        store.size("nope.bin")
    assert not store.exists("nope.bin")
    store.delete("nope.bin")  # deleting a missing object is fine


def test_stream_upload_from_current_position(store):
    stream = io.BytesIO(b"HEADERpayload")
    stream.seek(6)
    assert store.put("k.bin", stream, "application/octet-stream") == (hashlib.sha256(b"payload").hexdigest(), 7)
    assert _read(store, "k.bin") == b"payload"


def test_stage_many_is_invisible_until_published_and_all_or_nothing(store):
    items = [(f"c1/cam1/ev{i}/snapshot.jpg", io.BytesIO(b"jpeg %d" % i), "image/jpeg") for i in range(3)]
    staged = store.stage_many(items)
    assert [obj.key for obj in staged] == [key for key, _, _ in items]
    assert not any(store.exists(key) for key, _, _ in items)
    for i, obj in enumerate(staged):
        assert obj.publish() == (hashlib.sha256(b"jpeg %d" % i).hexdigest(), len(b"jpeg %d" % i))
        assert _read(store, obj.key) == b"jpeg %d" % i
    bad = [("c1/cam1/ev9/snapshot.jpg", b"fine", "image/jpeg"), ("c1/../etc/passwd", b"no", "image/jpeg")]
    with pytest.raises(InvalidObjectKey):
        for obj in store.stage_many(bad):   # S3 checks a key when the object is published
            obj.publish()
    assert not store.exists("c1/cam1/ev9/snapshot.jpg") or isinstance(store, S3Store)


@pytest.mark.parametrize("syncfs", ["libc", "none"])
def test_local_stage_many_flushes_with_syncfs_or_an_fsync_each(tmp_path, monkeypatch, syncfs):
    """One ``syncfs`` for the batch where libc has it; an ``fsync`` of each file where it does not."""
    import os

    import service.storage as storage
    calls = []
    if syncfs == "none":
        monkeypatch.setattr(storage, "_syncfs", None)
    else:
        assert storage._syncfs is not None   # Linux
        real = storage._syncfs
        monkeypatch.setattr(storage, "_syncfs", lambda fd: (calls.append("syncfs"), real(fd))[1])
    real_fsync = os.fsync
    monkeypatch.setattr(storage.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    store = LocalStore(tmp_path / "store")
    staged = store.stage_many([(f"c1/cam1/ev1/{name}", name.encode(), "application/octet-stream")
                               for name in ("snapshot.jpg", "clip.mp4", "sidecar.json")])
    assert calls == (["syncfs"] if syncfs == "libc" else ["fsync"] * 3)
    for obj in staged:
        obj.publish()
    assert _read(store, "c1/cam1/ev1/clip.mp4") == b"clip.mp4"


def test_local_stage_many_leaves_no_hidden_file_when_a_write_fails(tmp_path):
    store = LocalStore(tmp_path / "store")
    (tmp_path / "store" / "c1").mkdir()
    (tmp_path / "store" / "c1" / "cam2").write_bytes(b"a file where a folder must go")
    items = [("c1/cam1/ev1/snapshot.jpg", b"one", "image/jpeg"),
             ("c1/cam1/ev1/clip.mp4", b"two", "video/mp4"),
             ("c1/cam2/ev2/snapshot.jpg", b"three", "image/jpeg")]
    with pytest.raises(StorageError, match="c1/cam2/ev2/snapshot.jpg"):
        store.stage_many(items)
    assert [p.name for p in (tmp_path / "store").rglob("*") if p.is_file()] == ["cam2"]


@pytest.mark.parametrize("key", ESCAPES)
def test_key_escapes_are_refused(store, key):
    for call in (lambda: store.put(key, b"x", "text/plain"), lambda: store.open_range(key),
                 lambda: store.size(key), lambda: store.exists(key), lambda: store.delete(key),
                 lambda: store.presigned_url(key, dt.timedelta(minutes=1))):
        with pytest.raises(InvalidObjectKey):
            call()


# --- S3 only ---------------------------------------------------------------------------------

@pytest.fixture
def s3(weed) -> S3Store:
    return store_from_url(Settings(**s3_settings(weed)))


def test_s3_missing_bucket_is_created(weed):
    settings = Settings(**s3_settings(weed, bucket="ce-fresh-bucket-x"))
    client = Minio(weed.endpoint, access_key=weed.access_key, secret_key=weed.secret_key, secure=False)
    assert not client.bucket_exists("ce-fresh-bucket-x")
    store = store_from_url(settings)
    assert client.bucket_exists("ce-fresh-bucket-x")
    store_from_url(settings)  # a second start finds it
    assert store.prefix == "evidence"


def test_s3_objects_live_under_the_prefix_with_content_type(s3):
    s3.put("c1/cam1/2026/03/01/x/clip.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")
    stat = s3.client.stat_object(s3.bucket, "evidence/c1/cam1/2026/03/01/x/clip.mp4")
    assert stat.content_type == "video/mp4"
    names = [o.object_name for o in s3.client.list_objects(s3.bucket, recursive=True)]
    assert names == ["evidence/c1/cam1/2026/03/01/x/clip.mp4"]


def test_s3_large_object_is_a_multipart_upload(weed):
    store = S3Store(store_from_url(Settings(**s3_settings(weed))).client, f"ce-multi-{weed.ports['s3.port']}",
                    "big", part_size=5 * 1024 * 1024)
    data = (hashlib.sha256(b"seed").digest() * (12 * 1024 * 1024 // 32))
    sha, size = store.put("clip.mp4", io.BytesIO(data), "video/mp4")
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))
    stat = store.client.stat_object(store.bucket, "big/clip.mp4")
    assert stat.etag.endswith("-3")           # three parts of 5 MiB, 5 MiB, 2 MiB
    assert _read(store, "clip.mp4", 5 * 1024 * 1024 - 3, 5 * 1024 * 1024 + 2) == data[5 * 1024 * 1024 - 3:5 * 1024 * 1024 + 3]
    with pytest.raises(ValueError):
        S3Store(store.client, store.bucket, part_size=1024)


def test_s3_presigned_get_works_and_expires(s3):
    s3.put("a/small.jpg", b"hello world", "image/jpeg")
    url = s3.presigned_url("a/small.jpg", dt.timedelta(seconds=60))
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"hello world"
        assert response.headers["Content-Type"] == "image/jpeg"
    ranged = urllib.request.Request(url, headers={"Range": "bytes=6-10"})
    with urllib.request.urlopen(ranged) as response:
        assert response.status == 206 and response.read() == b"world"
    with pytest.raises(urllib.error.HTTPError) as info:       # anonymous, unsigned: refused
        urllib.request.urlopen(url.split("?")[0])
    assert info.value.code == 403
    expired = s3.client.presigned_get_object(s3.bucket, "evidence/a/small.jpg", expires=dt.timedelta(seconds=1),
                                             request_date=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(expired)
    assert info.value.code == 403


def test_s3_wrong_credentials_are_refused(weed, s3):
    bad = Settings(**{**s3_settings(weed, bucket=s3.bucket), "s3_secret_key": "wrong-secret"})
    with pytest.raises(StorageError, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId") as info:
        store_from_url(bad)
    assert info.value.__cause__ is not None
    wrong_user = Settings(**{**s3_settings(weed, bucket=s3.bucket), "s3_access_key": "nobody"})
    with pytest.raises(StorageError):
        store_from_url(wrong_user)
    # a store whose credentials were revoked after start fails per call, as a StorageError
    s3.put("x.bin", b"1", "application/octet-stream")
    broken = S3Store(Minio(weed.endpoint, access_key=weed.access_key, secret_key=weed.secret_key, secure=False),
                     s3.bucket, "evidence")
    broken.client = Minio(weed.endpoint, access_key=weed.access_key, secret_key="nope", secure=False)
    for call in (lambda: broken.put("y.bin", b"1", "text/plain"), lambda: _read(broken, "x.bin"),
                 lambda: broken.size("x.bin")):
        with pytest.raises(StorageError) as info:
            call()
        assert not isinstance(info.value, ObjectNotFound)


def test_s3_presigned_urls_are_signed_for_the_public_endpoint(weed):
    """Browsers may reach S3 under another name than the API does: the URL carries that host, is signed
    for it, and works there."""
    port = weed.endpoint.rsplit(":", 1)[1]
    store = store_from_url(Settings(**s3_settings(weed), s3_public_endpoint=f"http://localhost:{port}"))
    store.put("p/x.jpg", b"public bytes", "image/jpeg")
    url = store.presigned_url("p/x.jpg", dt.timedelta(seconds=60))
    assert url.startswith(f"http://localhost:{port}/")
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"public bytes"
    assert store_from_url(Settings(**s3_settings(weed))).presigned_url("p/x.jpg", dt.timedelta(seconds=60)) \
        .startswith(f"http://{weed.endpoint}/")
