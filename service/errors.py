"""The service's errors, in the project's exception tree (:class:`vision.errors.CompoundEyeError`).

Library errors (minio, urllib3, OS errors) are translated at the storage seam into
:class:`StorageError` with the cause kept; the app turns each class into one HTTP status.
"""
from __future__ import annotations

from vision.errors import CompoundEyeError


class StorageError(CompoundEyeError):
    """The evidence store failed (unreachable, denied, I/O error). ``key`` names the object."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"evidence store: {key}: {reason}")


class ObjectNotFound(StorageError):
    """The object does not exist in the store."""

    def __init__(self, key: str):
        super().__init__(key, "object not found")


class InvalidObjectKey(StorageError, ValueError):
    """A key or one of its parts does not match the strict key pattern (it could escape its prefix)."""


class IntegrityFailed(StorageError):
    """A stored object no longer matches the sha256 or size recorded when it was uploaded."""


class InvalidEvent(CompoundEyeError):
    """A posted event or its evidence is invalid (HTTP 422). ``detail`` is shown to the client."""

    def __init__(self, detail: str | list):
        self.detail = detail
        super().__init__(str(detail))


class UploadTooLarge(CompoundEyeError):
    """A posted event's evidence is larger than ``max_upload_mb`` (HTTP 413)."""

    def __init__(self, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(f"evidence is {size} bytes, the limit is {limit} bytes (max_upload_mb)")


class AlreadyReviewed(CompoundEyeError):
    """A violation already has a decision; the first decision wins (HTTP 409)."""

    def __init__(self, violation_id: str, verdict: str):
        self.violation_id = violation_id
        self.verdict = verdict
        super().__init__(f"violation {violation_id} was already reviewed ({verdict}); the first decision stands")


class Conflict(CompoundEyeError):
    """The request is not allowed in the current state (HTTP 409): an illegal case transition, a
    violation claimed by someone else, a case not yet due for re-inspection. Nothing was changed."""


def http_answer(exc: BaseException) -> tuple[int, str | list] | None:
    """The HTTP status and ``detail`` the API answers for one of the errors above (None for any other):
    422 invalid event, 413 too large, 409 already reviewed or conflict, 500 integrity failed or evidence
    missing, 503 evidence store unavailable. The app's handlers and the batch post's per-event results
    both use it, so one error gets one answer wherever it happens."""
    if isinstance(exc, InvalidEvent):
        return 422, exc.detail
    if isinstance(exc, UploadTooLarge):
        return 413, str(exc)
    if isinstance(exc, (AlreadyReviewed, Conflict)):
        return 409, str(exc)
    if isinstance(exc, IntegrityFailed):
        return 500, f"evidence integrity check failed for {exc.key}: {exc.reason}"
    if isinstance(exc, ObjectNotFound):
        return 500, f"evidence object missing from the store: {exc.key}"
    if isinstance(exc, StorageError):
        return 503, f"evidence store unavailable: {exc}"
    return None
