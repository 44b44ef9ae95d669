"""The project's exception tree. Library errors are translated at the seam, keeping the cause."""
from __future__ import annotations


class CompoundEyeError(Exception):
    """Base of every error CompoundEye raises on purpose."""


class ConfigError(CompoundEyeError):
    """A site configuration file is invalid.

    ``problems`` holds one ``(key_path, reason)`` pair per problem; ``str()`` names the file, each key
    path and each reason, one per line.
    """

    def __init__(self, path: str, problems: list[tuple[str, str]]):
        self.path = path
        self.problems = problems
        lines = [f"{path}: {key}: {reason}" for key, reason in problems]
        super().__init__("\n".join(lines))


class SourceError(CompoundEyeError):
    """A video source cannot be opened or decoded (missing, truncated, corrupt, unreachable)."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class ModelError(CompoundEyeError):
    """A model file or its model card is missing, unreadable or inconsistent."""

    def __init__(self, model: str, reason: str):
        self.model = model
        self.reason = reason
        super().__init__(f"{model}: {reason}")


class EvidenceError(CompoundEyeError):
    """A snapshot or clip could not be written."""


class DeliveryError(CompoundEyeError):
    """An event could not be delivered to the review API (it stays in the outbox)."""
