"""The object-store seam: where evidence bytes live.

``ObjectStore`` is the protocol; ``LocalStore`` (a folder, the embedded default) and ``S3Store``
(any S3 API through the ``minio`` client) implement it. Every key is checked against a strict
pattern before it touches a path or a request, so a key can never escape its root or prefix.
Library and OS errors leave this module as :class:`StorageError` with the cause kept.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import io
import os
import re
import secrets
import sys
from pathlib import Path
from typing import BinaryIO, Iterator, Protocol

import urllib.parse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from service.errors import IntegrityFailed, InvalidObjectKey, ObjectNotFound, StorageError
from service.settings import Settings

CHUNK = 64 * 1024
MAX_KEY_LENGTH = 512
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_IDENTIFIER = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # the site configuration's id pattern
_VIOLATION_ID = re.compile(r"[0-9a-f]{32}")
EVIDENCE_EXTENSIONS = {"snapshot": ("jpg",), "clip": ("mp4",), "sidecar": ("json",), "crop": ("jpg",)}


def check_key(key: str) -> str:
    """Return ``key`` if every ``/``-separated segment matches ``[A-Za-z0-9][A-Za-z0-9._-]*``
    (so no ``..``, no empty or absolute part, no backslash or NUL); raise :class:`InvalidObjectKey`."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidObjectKey(repr(key)[:80], f"key must be 1..{MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment.endswith("."):
            raise InvalidObjectKey(repr(key)[:80], f"invalid key segment {segment!r}")
    return key


def evidence_key(compound_id: str, camera_id: str, start_time: dt.datetime, violation_id: str,
                 kind: str, ext: str) -> str:
    """The key of one evidence object: ``compound/camera/YYYY/MM/DD/violation_id/kind.ext``, the date
    being the violation's start in UTC. Every part is validated; a bad part raises :class:`InvalidObjectKey`.

    >>> evidence_key("c1", "cam1", dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.timezone.utc), "0" * 32, "clip", "mp4")
    'c1/cam1/2026/03/01/00000000000000000000000000000000/clip.mp4'
    """
    for what, value, pattern in (("compound_id", compound_id, _IDENTIFIER), ("camera_id", camera_id, _IDENTIFIER),
                                 ("violation_id", violation_id, _VIOLATION_ID)):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise InvalidObjectKey(repr(value)[:80], f"invalid {what}")
    if ext not in EVIDENCE_EXTENSIONS.get(kind, ()):
        raise InvalidObjectKey(f"{kind}.{ext}", "unknown evidence kind or extension")
    if not isinstance(start_time, dt.datetime) or start_time.tzinfo is None:
        raise InvalidObjectKey(repr(start_time), "start_time must be a timezone-aware datetime")
    day = start_time.astimezone(dt.timezone.utc).strftime("%Y/%m/%d")
    return check_key(f"{compound_id}/{camera_id}/{day}/{violation_id}/{kind}.{ext}")


def _load_syncfs():
    """libc's ``syncfs(fd)`` (Linux): flush one file system's dirty data and wait for it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


_syncfs = _load_syncfs()


class ObjectStore(Protocol):
    """Where evidence bytes live. Keys are checked with :func:`check_key`; errors are :class:`StorageError`."""

    def put(self, key: str, data: bytes | BinaryIO, content_type: str) -> tuple[str, int]:
        """Store ``data`` (bytes or a binary file read from its current position) under ``key``,
        replacing any object there; return ``(sha256 hex, size in bytes)`` of what was stored."""

    def stage(self, key: str, data: bytes | BinaryIO, content_type: str) -> StagedObject:
        """Prepare ``data`` to become the object ``key`` without making it visible: the slow, durable
        part of a put (a local store writes and fsyncs a hidden file), done before the caller takes a
        lock. :meth:`StagedObject.publish` then puts it under ``key``; :meth:`StagedObject.discard`
        drops it. Nothing is visible under ``key`` until it is published."""

    def stage_many(self, items: list[tuple[str, bytes | BinaryIO, str]]) -> list[StagedObject]:
        """:meth:`stage` for several ``(key, data, content_type)`` at once, made durable together where
        the store can do that more cheaply; all or nothing (on a failure none stays staged)."""

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Chunks of bytes ``start..end`` (both inclusive; ``end=None`` means to the last byte).
        The object is opened before this returns, so a missing one raises :class:`ObjectNotFound` here."""

    def size(self, key: str) -> int:
        """The object's size in bytes; :class:`ObjectNotFound` when missing."""

    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""

    def presigned_url(self, key: str, expires: dt.timedelta) -> str | None:
        """A time-limited URL a browser can fetch directly, or None when the store has none (local)."""


class StagedObject(Protocol):
    """An object written by :meth:`ObjectStore.stage` and not yet visible under its ``key``."""

    key: str

    def publish(self) -> tuple[str, int]:
        """Make the object visible under ``key`` (replacing any object there); return ``(sha256 hex,
        size)`` of what is stored. Raises :class:`StorageError`."""

    def discard(self) -> None:
        """Drop the staged bytes (after a failure, or when another post won); never raises."""


class _HashingReader(io.RawIOBase):
    """Reads through to ``source`` and keeps the sha256 and size of everything read."""

    def __init__(self, source: BinaryIO):
        self.source, self.sha256, self.size = source, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.sha256.update(data)
        self.size += len(data)
        return data


def _as_stream(data: bytes | BinaryIO) -> BinaryIO:
    return io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data


class LocalStore:
    """Evidence in a folder: ``root/<key>``. Writes go to a temporary file that is renamed into place,
    so a reader never sees half an object."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # a symlink inside the root must not lead out of it
            raise InvalidObjectKey(key, "key resolves outside the store root")
        return path

    def put(self, key: str, data: bytes | BinaryIO, content_type: str) -> tuple[str, int]:
        return self.stage(key, data, content_type).publish()

    def stage(self, key: str, data: bytes | BinaryIO, content_type: str) -> _LocalStaged:
        """Write ``data`` to a hidden temporary file beside the object's path and fsync it; publishing
        is then a rename, so the fsync (about 10 ms on a disk) is paid before any lock the caller takes."""
        return self._write(key, data, sync=True)

    def stage_many(self, items: list[tuple[str, bytes | BinaryIO, str]]) -> list[_LocalStaged]:
        """Stage several objects (``(key, data, content_type)`` each) and make them durable together:
        the files are written, then flushed to the disk by one ``syncfs`` of the store's file system
        (Linux) instead of an fsync each, which is one journal commit instead of one per file. Without
        ``syncfs`` each file is fsynced. (``syncfs`` reports a failed write-back since Linux 5.8; older
        kernels return success regardless, as ``sync`` does.) All or nothing: on a failure the staged
        files are removed and :class:`StorageError` is raised."""
        staged: list[_LocalStaged] = []
        folders: dict[str, Path] = {}
        try:
            for key, data, _ in items:
                staged.append(self._write(key, data, sync=False, folders=folders))
            self._sync(staged)
        except BaseException:
            for obj in staged:
                obj.discard()
            raise
        return staged

    def _path_in(self, key: str, folders: dict[str, Path]) -> Path:
        """``_path`` for one of a group of writes: each folder of the group is resolved and checked once
        (an event's objects share theirs; ``realpath`` walks every part of the key, about 75 µs a file).
        The last part need not be resolved: the object is written to a new file beside it and renamed
        over it, and a rename replaces a symlink there instead of following it."""
        folder, _, name = check_key(key).rpartition("/")
        parent = folders.get(folder)
        if parent is None:
            parent = folders[folder] = self._path(folder) if folder else self.root
        return parent / name

    def _write(self, key: str, data: bytes | BinaryIO, sync: bool,
               folders: dict[str, Path] | None = None) -> _LocalStaged:
        path = self._path(key) if folders is None else self._path_in(key, folders)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        reader = _HashingReader(_as_stream(data))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as out:
                while chunk := reader.read(CHUNK):
                    out.write(chunk)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
        except OSError as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:   # e.g. ENOTDIR: a file where a folder of the key must be; nothing was written
                pass
            raise StorageError(key, f"cannot write {path}: {exc.strerror or exc}") from exc
        return _LocalStaged(key, tmp, path, reader.sha256.hexdigest(), reader.size)

    def _sync(self, staged: list[_LocalStaged]) -> None:
        """Flush ``staged`` hidden files to the disk: one ``syncfs`` when there are several and the
        platform has it, else an fsync each. (``syncfs`` also waits for whatever else is dirty on that
        file system; measured against an fsync each beside a busy writer, it still waits less:
        RELIABILITY.md, *One flush per batch beside a busy writer*.)"""
        if len(staged) > 1 and _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _syncfs(fd) != 0:
                    err = ctypes.get_errno()
                    raise StorageError(staged[0].key, f"cannot flush {self.root}: {os.strerror(err)}")
            finally:
                os.close(fd)
            return
        self._fsync_each(staged)

    @staticmethod
    def _fsync_each(staged: list[_LocalStaged]) -> None:
        for obj in staged:
            try:
                fd = os.open(obj.tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StorageError(obj.key, f"cannot write {obj.path}: {exc.strerror or exc}") from exc

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(key, f"cannot read {path}: {exc.strerror or exc}") from exc
        return self._chunks(key, handle, start, end)

    @staticmethod
    def _chunks(key: str, handle: BinaryIO, start: int, end: int | None) -> Iterator[bytes]:
        with handle:
            try:
                handle.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    chunk = handle.read(CHUNK if remaining is None else min(CHUNK, remaining))
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk
            except OSError as exc:
                raise StorageError(key, f"read failed: {exc.strerror or exc}") from exc

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(key, f"cannot stat: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(key, f"cannot delete: {exc.strerror or exc}") from exc

    def presigned_url(self, key: str, expires: dt.timedelta) -> str | None:
        check_key(key)
        return None


class _LocalStaged:
    """A fsynced hidden file waiting to be renamed to its object's path."""

    def __init__(self, key: str, tmp: Path, path: Path, sha256: str, size: int):
        self.key, self.tmp, self.path, self.sha256, self.size = key, tmp, path, sha256, size

    def publish(self) -> tuple[str, int]:
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise StorageError(self.key, f"cannot write {self.path}: {exc.strerror or exc}") from exc
        return self.sha256, self.size

    def discard(self) -> None:
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass


class _S3Staged:
    """S3 has no cheap rename: the object is uploaded when published (as a plain put)."""

    def __init__(self, store: S3Store, key: str, data: bytes | BinaryIO, content_type: str):
        store._name(key)  # a bad key is refused when staged, as on a local store
        self.store, self.key, self.data, self.content_type = store, key, data, content_type

    def publish(self) -> tuple[str, int]:
        return self.store.put(self.key, self.data, self.content_type)

    def discard(self) -> None:
        self.data = b""


def verify_object(store: ObjectStore, key: str, sha256: str, size: int | None = None) -> None:
    """Read the whole object ``key`` and raise :class:`IntegrityFailed` (naming the key, the recorded
    and the actual digest) unless its size and sha256 are the ones recorded; :class:`ObjectNotFound`
    when it is missing, :class:`StorageError` when the store fails."""
    if size is not None:
        stored_size = store.size(key)
        if stored_size != size:
            raise IntegrityFailed(key, f"stored size is {stored_size} bytes, recorded {size}")
    digest = hashlib.sha256()
    for chunk in store.open_range(key):
        digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise IntegrityFailed(key, f"sha256 is {digest.hexdigest()}, recorded {sha256} at upload")


class S3Store:
    """Evidence in an S3 bucket under ``prefix`` (any S3 API: MinIO, SeaweedFS, AWS) through a
    ``minio.Minio`` client. The bucket is created if it does not exist. Objects larger than
    ``part_size`` (or of unknown length) go up as multipart uploads of ``part_size`` parts
    (S3's minimum part is 5 MiB)."""

    PART_SIZE = 10 * 1024 * 1024

    def __init__(self, client: Minio, bucket: str, prefix: str = "", part_size: int = PART_SIZE,
                 signer: Minio | None = None):
        if part_size < 5 * 1024 * 1024:
            raise ValueError(f"part_size must be at least 5 MiB, got {part_size}")
        self.client, self.bucket, self.part_size = client, bucket, int(part_size)
        # Presigned URLs are signed by ``signer`` (a client for the endpoint browsers reach, with its
        # region set so that signing needs no request); by default the same client.
        self.signer = signer or client
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        try:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error(f"s3://{bucket}", exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(f"s3://{bucket}", exc) from exc

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _error(key: str, exc: Exception) -> StorageError:
        if isinstance(exc, StorageError):  # a bad key (InvalidObjectKey is a ValueError) stays what it is
            return exc
        if isinstance(exc, S3Error) and exc.code in ("NoSuchKey", "NoSuchObject"):
            return ObjectNotFound(key)
        reason = f"S3 {exc.code}: {exc.message}" if isinstance(exc, S3Error) else f"{type(exc).__name__}: {exc}"
        return StorageError(key, reason)

    _ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError, ValueError)

    def put(self, key: str, data: bytes | BinaryIO, content_type: str) -> tuple[str, int]:
        name, stream = self._name(key), _as_stream(data)
        length = -1
        if stream.seekable():
            here = stream.tell()
            length = stream.seek(0, io.SEEK_END) - here
            stream.seek(here)
        reader = _HashingReader(stream)
        try:
            self.client.put_object(self.bucket, name, reader, length=length, content_type=content_type,
                                   part_size=self.part_size if length < 0 or length > self.part_size else 0)
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc
        return reader.sha256.hexdigest(), reader.size

    def stage(self, key: str, data: bytes | BinaryIO, content_type: str) -> _S3Staged:
        return _S3Staged(self, key, data, content_type)

    def stage_many(self, items: list[tuple[str, bytes | BinaryIO, str]]) -> list[_S3Staged]:
        return [self.stage(key, data, content_type) for key, data, content_type in items]

    def open_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        length = 0 if end is None else end - start + 1  # 0 means "to the end" for minio
        try:
            response = self.client.get_object(self.bucket, self._name(key), offset=start, length=length)
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc
        return self._chunks(key, response)

    def _chunks(self, key: str, response) -> Iterator[bytes]:
        try:
            yield from response.stream(CHUNK)
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc
        finally:
            response.close()
            response.release_conn()

    def size(self, key: str) -> int:
        try:
            return int(self.client.stat_object(self.bucket, self._name(key)).size)
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.remove_object(self.bucket, self._name(key))
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc

    def presigned_url(self, key: str, expires: dt.timedelta) -> str | None:
        """A presigned GET URL for ``key`` valid for ``expires`` (signed locally: no request is made,
        so it is returned even when the server is down)."""
        try:
            return self.signer.presigned_get_object(self.bucket, self._name(key), expires=expires)
        except self._ERRORS as exc:
            raise self._error(key, exc) from exc


def store_from_url(settings: Settings) -> ObjectStore:
    """The store ``settings.storage_url`` names: ``file://dir`` (relative) or ``file:///dir``
    (absolute) gives a :class:`LocalStore`; ``s3://bucket/prefix`` an :class:`S3Store` on
    ``settings.s3_endpoint`` with the ``s3_*`` credentials."""
    url = settings.storage_url
    if url.startswith("file://"):
        root = url[len("file://"):]
        if not root:
            raise StorageError(url, "file:// URL needs a folder, e.g. file://var/evidence")
        return LocalStore(root)
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60),
                                   retries=urllib3.Retry(total=3, backoff_factor=0.2,
                                                         status_forcelist=(500, 502, 503, 504)))
        try:
            client = Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                           secret_key=settings.s3_secret_key.get_secret_value(),
                           secure=settings.s3_secure, http_client=http, region=settings.s3_region or None)
            signer = None
            if settings.s3_public_endpoint:
                public = urllib.parse.urlsplit(settings.s3_public_endpoint if "://" in settings.s3_public_endpoint
                                               else f"{'https' if settings.s3_secure else 'http'}://"
                                                    f"{settings.s3_public_endpoint}")
                signer = Minio(public.netloc, access_key=settings.s3_access_key,
                               secret_key=settings.s3_secret_key.get_secret_value(),
                               secure=public.scheme == "https", region=settings.s3_region or "us-east-1")
        except ValueError as exc:
            raise StorageError(url, f"bad S3 endpoint {settings.s3_endpoint!r} / public endpoint "
                                    f"{settings.s3_public_endpoint!r}: {exc}") from exc
        return S3Store(client, bucket, prefix, signer=signer)
    raise StorageError(url, "unsupported storage_url; expected file://folder or s3://bucket/prefix")
