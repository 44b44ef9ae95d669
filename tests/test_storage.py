"""The object-store seam: LocalStore behaviour, evidence keys, and keys that try to escape."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from service.errors import InvalidObjectKey, ObjectNotFound, StorageError
from service.settings import Settings
from service.storage import LocalStore, S3Store, check_key, evidence_key, store_from_url

UTC = dt.timezone.utc
VID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def _read(store, key, start=0, end=None) -> bytes:
    return b"".join(store.open_range(key, start, end))


def test_put_replaces_atomically_and_leaves_no_temp_files(store):
    store.put("x/y.json", b"{}", "application/json")
    store.put("x/y.json", b'{"v": 2}', "application/json")
    assert _read(store, "x/y.json") == b'{"v": 2}'
    assert sorted(p.name for p in (store.root / "x").iterdir()) == ["y.json"]


def test_local_store_has_no_presigned_url(store):
    assert store.presigned_url("a/b.jpg", dt.timedelta(minutes=5)) is None


ESCAPES = ["../etc/passwd", "a/../../b", "/etc/passwd", "a//b", "a/./b", ".", "..", "a/..", "", "a\\..\\b",
           "a/b\0c", "a/.hidden", "a/b/", "C:/x", "a/b.", "a/" + "x" * 600, "a/b c"]


@pytest.mark.parametrize("key", ESCAPES)
def test_keys_that_could_escape_are_rejected_everywhere(store, tmp_path, key):
    with pytest.raises(InvalidObjectKey):
        check_key(key)
    for call in (lambda: store.put(key, b"x", "text/plain"), lambda: store.open_range(key),
                 lambda: store.size(key), lambda: store.exists(key), lambda: store.delete(key)):
        with pytest.raises(InvalidObjectKey):
            call()
    assert not (tmp_path / "etc").exists() and list(tmp_path.rglob("passwd")) == []


def test_symlink_out_of_the_root_is_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, store.root / "link")
    with pytest.raises(InvalidObjectKey):
        store.put("link/x.bin", b"x", "application/octet-stream")
    assert list(outside.iterdir()) == []


def test_stage_many_refuses_a_folder_symlink_out_of_the_root_and_replaces_a_file_symlink(store, tmp_path):
    """A group write resolves each folder once: a folder that leads out of the root is refused (nothing
    written outside); a symlink in place of the object itself is replaced by the object, not followed."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"keep")
    os.symlink(outside, store.root / "link")
    with pytest.raises(InvalidObjectKey):
        store.stage_many([("ok/a.bin", b"a", "application/octet-stream"),
                          ("link/x.bin", b"x", "application/octet-stream")])
    assert sorted(p.name for p in outside.iterdir()) == ["target"]
    assert list((store.root / "ok").iterdir()) == []   # the group's first file was removed with it
    (store.root / "ok" / "b.bin").symlink_to(outside / "target")
    staged = store.stage_many([("ok/b.bin", b"new", "application/octet-stream"),
                               ("top.bin", b"top", "application/octet-stream")])
    for obj in staged:
        obj.publish()
    assert (outside / "target").read_bytes() == b"keep"
    assert not (store.root / "ok" / "b.bin").is_symlink() and (store.root / "ok" / "b.bin").read_bytes() == b"new"
    assert (store.root / "top.bin").read_bytes() == b"top"


def test_evidence_key_layout():
    start = dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-8)))  # 2 March in UTC
    assert evidence_key("c1", "cam-2", start, VID, "snapshot", "jpg") == f"c1/cam-2/2026/03/02/{VID}/snapshot.jpg"
    assert evidence_key("c1", "cam_2", start, VID, "clip", "mp4").endswith("/clip.mp4")


@pytest.mark.parametrize("compound_id,camera_id,violation_id,kind,ext", [
    ("..", "cam1", VID, "clip", "mp4"), ("c1", "../cam1", VID, "clip", "mp4"), ("c1", "cam/1", VID, "clip", "mp4"),
    ("/abs", "cam1", VID, "clip", "mp4"), ("c1", "cam1\0", VID, "clip", "mp4"), ("C1", "cam1", VID, "clip", "mp4"),
    ("c1", "cam1", "../" + VID[3:], "clip", "mp4"), ("c1", "cam1", VID.upper(), "clip", "mp4"),
    ("c1", "cam1", VID, "clip/..", "mp4"), ("c1", "cam1", VID, "clip", "mp4/../x"), ("c1", "cam1", VID, "clip", "jpg"),
    ("c1", "cam1", VID, "passwd", "txt"), ("", "cam1", VID, "clip", "mp4"),
])
def test_evidence_key_rejects_bad_parts(compound_id, camera_id, violation_id, kind, ext):
    with pytest.raises(InvalidObjectKey):
        evidence_key(compound_id, camera_id, dt.datetime(2026, 3, 1, tzinfo=UTC), violation_id, kind, ext)


def test_evidence_key_rejects_naive_time():
    with pytest.raises(InvalidObjectKey):
        evidence_key("c1", "cam1", dt.datetime(2026, 3, 1), VID, "clip", "mp4")


def test_store_from_url_local(tmp_path):
    store = store_from_url(Settings(storage_url=f"file://{tmp_path}/ev"))
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "ev").resolve()


def test_store_from_url_relative_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = store_from_url(Settings(storage_url="file://var/evidence"))
    assert store.root == (tmp_path / "var" / "evidence").resolve()


@pytest.mark.parametrize("url", ["ftp://x/y", "file://", "/just/a/path"])
def test_store_from_url_rejects_unknown(url):
    with pytest.raises(StorageError):
        store_from_url(Settings(storage_url=url))


def test_s3_store_unreachable_endpoint_is_a_storage_error():
    """S3Store translates connection failures into StorageError naming the bucket (the real-server
    tests come with the S3 issue)."""
    settings = Settings(storage_url="s3://evidence/site1", s3_endpoint="127.0.0.1:1", s3_access_key="k",
                        s3_secret_key="s")
    with pytest.raises(StorageError, match="s3://evidence") as info:
        store_from_url(settings)
    assert info.value.__cause__ is not None
    assert S3Store  # the class is importable alongside LocalStore
