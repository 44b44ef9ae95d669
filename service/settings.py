"""Service settings from the environment (prefix ``COMPOUNDEYE_``), read once by ``create_app``."""
from __future__ import annotations

from pathlib import Path

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """What the service needs to start.

    Attributes:
        database_url: SQLAlchemy URL; ``sqlite:///path.db`` (default) or ``postgresql+psycopg://…``
            (a plain ``postgresql://`` URL is read as psycopg 3).
        storage_url: where evidence lives: ``file://relative/dir``, ``file:///absolute/dir`` or
            ``s3://bucket/prefix`` (endpoint and keys from the ``s3_*`` settings).
        s3_endpoint / s3_access_key / s3_secret_key / s3_secure: the S3 server, from
            ``COMPOUNDEYE_S3_ENDPOINT`` etc. (``host:port``; secure means https).
        max_upload_mb: the largest event upload accepted, all evidence files together (HTTP 413 above).
        site_config: optional site YAML; when set it is validated at start-up and its compounds and
            cameras are registered with their names.
        migrate_on_startup: run Alembic migrations to head when the app is created.
        token_ttl_minutes: lifetime of a user's login token (``POST /api/v1/auth/token``).
        scoring_config: the scoring table YAML (default ``configs/scoring.yaml``).
        cors_origins: origins other sites' pages may call the API from (``COMPOUNDEYE_CORS_ORIGINS``,
            comma-separated ``https://host[:port]``); empty (the default) sends no CORS headers at all.
        max_request_kb: the largest request body that is not a multipart upload (JSON, login form).
    """

    model_config = SettingsConfigDict(env_prefix="COMPOUNDEYE_", extra="ignore")

    database_url: str = "sqlite:///var/compoundeye.db"
    storage_url: str = "file://var/evidence"
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_secure: bool = False
    # The S3 endpoint as browsers reach it (e.g. a public host name in front of a private endpoint);
    # presigned URLs are signed for it. Empty: the same as s3_endpoint.
    s3_public_endpoint: str = ""
    s3_region: str = "us-east-1"
    max_upload_mb: float = Field(100.0, gt=0)
    site_config: Path | None = None
    migrate_on_startup: bool = True
    # Evidence links for browsers (issue 6): presigned S3 URLs, or API URLs signed with HMAC-SHA256 under
    # evidence_url_secret (generated per process when unset: then links die with a restart).
    evidence_url_ttl_s: int = Field(300, ge=10, le=24 * 3600)
    evidence_url_secret: SecretStr | None = None
    # Evidence retention in days per review state; evidence of a violation with a case not closed is kept.
    retention_unreviewed_days: int = Field(30, ge=1)
    retention_rejected_days: int = Field(7, ge=1)
    retention_confirmed_days: int = Field(365, ge=1)
    # Failed logins allowed per user name and per client address in a moving window ("limits" notation),
    # and where the counts live (memory://, or redis://host:6379 for several API processes).
    login_limit_per_user: str = "5/5minute"
    login_limit_per_address: str = "30/5minute"
    rate_limit_storage: str = "memory://"
    token_ttl_minutes: int = Field(480, gt=0, le=60 * 24 * 30)  # how long a login token lives (one shift)
    scoring_config: Path | None = None  # the scoring table; default configs/scoring.yaml of the repository
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    max_request_kb: int = Field(1024, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value):
        """``"https://a, https://b"`` from the environment; each must be a bare http(s) origin."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        origins = tuple(value)
        for origin in origins:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest or "*" in rest:
                raise ValueError(f"CORS origin {origin!r} must be scheme://host[:port] (http or https, "
                                 "no path, no wildcard)")
        return origins
    # Re-scans started through the API (issue 10; site and model from site_config): their checkpoint and
    # evidence folders, the executor ("local" process pool or "dask", with rescan_scheduler or a
    # LocalCluster), its processes, and after how long a running job nobody updates is taken over and
    # resumed from its checkpoint (its API process died).
    rescan_state_dir: Path = Path("var/rescan")
    rescan_executor: str = Field("local", pattern="^(local|dask)$")
    rescan_processes: int = Field(1, ge=1, le=64)
    rescan_scheduler: str | None = None
    rescan_stale_after_s: float = Field(30.0, gt=0)
    # Ledger documents (issue 12): the API process makes the previous month's reports on the 1st, after
    # report_schedule_hour o'clock in the scoring table's zone, and catches up a missed 1st at start-up.
    report_schedule: bool = True
    report_schedule_hour: int = Field(1, ge=0, le=23)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
