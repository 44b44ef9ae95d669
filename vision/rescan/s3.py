"""Footage in S3 (any S3 API: MinIO, SeaweedFS, AWS) through the ``minio`` client — the camera-source
seam for stored objects. Listing and signing happen where the job is started; workers fetch each
object over HTTP with a presigned URL, so they need no S3 credentials (a Dask worker on another
machine reads the object straight from S3, not through the client).

Credentials come from the environment, never from the command line or the site file:
``COMPOUNDEYE_S3_ENDPOINT`` (``host:port``), ``COMPOUNDEYE_S3_ACCESS_KEY``,
``COMPOUNDEYE_S3_SECRET_KEY``, ``COMPOUNDEYE_S3_SECURE`` (``1`` for https) — the same variables the
service reads.
"""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import httpx

from vision.errors import SourceError
from vision.rescan.discover import SIDECAR_EXTENSION, VIDEO_EXTENSIONS, Discovery, FootageFile, _sidecar_names
from vision.rescan.naming import NamingError, read_sidecar

PRESIGN_TTL = dt.timedelta(hours=12)


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)`` (prefix without a leading slash)."""
    rest = url.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SourceError(url, "an S3 source is s3://bucket/prefix")
    return bucket, prefix


class S3Footage:
    """List, sign and fetch footage objects."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, secure: bool = False):
        from minio import Minio  # imported here: only S3 sources need it
        self.endpoint = endpoint
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)

    @classmethod
    def from_env(cls) -> "S3Footage":
        env = os.environ
        return cls(env.get("COMPOUNDEYE_S3_ENDPOINT", "127.0.0.1:9000"), env.get("COMPOUNDEYE_S3_ACCESS_KEY", ""),
                   env.get("COMPOUNDEYE_S3_SECRET_KEY", ""), env.get("COMPOUNDEYE_S3_SECURE", "0") in ("1", "true"))

    def discover(self, source: str) -> Discovery:
        from minio.error import MinioException
        bucket, prefix = split_s3_url(source)
        root_prefix = prefix if (not prefix or prefix.endswith("/")) else prefix + "/"
        found = Discovery(source)
        try:
            objects = sorted((o for o in self.client.list_objects(bucket, prefix=root_prefix, recursive=True)
                              if not o.is_dir), key=lambda o: o.object_name)
        except (MinioException, OSError, ValueError) as exc:
            raise SourceError(source, f"cannot list the S3 prefix: {exc}") from exc
        names = {o.object_name[len(root_prefix):]: o for o in objects}
        for name, obj in names.items():
            suffix = os.path.splitext(name)[1].lower()
            if suffix not in VIDEO_EXTENSIONS:
                if suffix != SIDECAR_EXTENSION:
                    found.ignored.append(name)
                continue
            sidecar, sidecar_error = None, None
            for candidate in _sidecar_names(name):
                if candidate in names:
                    try:
                        sidecar = read_sidecar(self._get(bucket, root_prefix + candidate), candidate)
                    except (NamingError, SourceError) as exc:
                        sidecar_error = str(exc)
                    break
            found.files.append(FootageFile(name, f"s3://{bucket}/{obj.object_name}", int(obj.size or 0),
                                           str(obj.etag or ""), sidecar, sidecar_error))
        return found

    def _get(self, bucket: str, key: str) -> bytes:
        from minio.error import MinioException
        try:
            response = self.client.get_object(bucket, key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()
        except (MinioException, OSError) as exc:
            raise SourceError(f"s3://{bucket}/{key}", f"cannot read: {exc}") from exc

    def presign(self, location: str) -> str:
        """A presigned GET URL for ``s3://bucket/key`` (valid :data:`PRESIGN_TTL`)."""
        bucket, key = split_s3_url(location)
        return self.client.presigned_get_object(bucket, key, expires=PRESIGN_TTL)


def fetch_to_temp(url: str, location: str, suffix: str, timeout_s: float = 60.0) -> Path:
    """Download a presigned URL into a temporary file (the caller deletes it). Raises SourceError."""
    fd, tmp = tempfile.mkstemp(prefix="compoundeye-rescan-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, httpx.stream("GET", url, timeout=timeout_s) as response:
            if response.status_code != 200:
                raise SourceError(location, f"S3 GET answered HTTP {response.status_code}")
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
        return Path(tmp)
    except (httpx.HTTPError, OSError) as exc:
        Path(tmp).unlink(missing_ok=True)
        raise SourceError(location, f"cannot fetch from S3: {exc}") from exc
    except SourceError:
        Path(tmp).unlink(missing_ok=True)
        raise
