"""Find the stored footage of a re-scan: a folder (recursively), a glob, or ``s3://bucket/prefix``.

Each video file becomes a :class:`FootageFile` with its name relative to the root (what the naming
pattern is matched against), its size and a version (mtime or ETag: a re-run only skips a file
whose version is unchanged), and the JSON sidecar next to it, if any. Files that are not video
by their extension are listed as ignored; sidecars are not footage.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vision.errors import SourceError
from vision.rescan.naming import NamingError, read_sidecar

if TYPE_CHECKING:   # imported where it is used (minio only when the source is on S3)
    from vision.rescan.s3 import S3Footage

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".webm",
                              ".mpg", ".mpeg", ".h264", ".264", ".h265", ".265", ".hevc", ".3gp", ".wmv", ".asf"})
SIDECAR_EXTENSION = ".json"


@dataclass(frozen=True)
class FootageFile:
    """One stored video file.

    Attributes:
        name: path relative to the root, ``/``-separated (matched against the naming pattern).
        location: a local path, or ``s3://bucket/key``.
        size: bytes.
        version: ``mtime_ns`` of a local file or the ETag of an object; part of the checkpoint key.
        sidecar: the parsed sidecar, if there is one.
        sidecar_error: why a sidecar that exists could not be read.
    """

    name: str
    location: str
    size: int
    version: str
    sidecar: dict | None = None
    sidecar_error: str | None = None

    @property
    def key(self) -> str:
        """What the checkpoint knows this file by."""
        return f"{self.location}|{self.size}|{self.version}"


@dataclass
class Discovery:
    root: str
    files: list[FootageFile] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _sidecar_names(name: str) -> tuple[str, str]:
    stem, _ = os.path.splitext(name)
    return stem + SIDECAR_EXTENSION, name + SIDECAR_EXTENSION


def discover(source: str, s3: "S3Footage | None" = None) -> Discovery:
    """The footage under ``source`` (folder, glob or ``s3://bucket/prefix``), sorted by name.

    Raises :class:`SourceError` when the source does not exist or cannot be listed."""
    if source.startswith("s3://"):
        if s3 is None:
            from vision.rescan.s3 import S3Footage
            s3 = S3Footage.from_env()
        return s3.discover(source)
    if _is_glob(source):
        parts = Path(source).parts
        fixed = next((i for i, p in enumerate(parts) if _is_glob(p)), len(parts))
        root = Path(*parts[:fixed]) if fixed else Path(".")
        paths = sorted(Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file())
    else:
        root = Path(source)
        if root.is_file():
            paths, root = [root], root.parent
        elif root.is_dir():
            paths = sorted(p for p in root.rglob("*") if p.is_file())
        else:
            raise SourceError(source, "no such file or folder")
    found = Discovery(str(root))
    all_names = {p.relative_to(root).as_posix() for p in paths}
    for path in paths:
        name = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            if suffix != SIDECAR_EXTENSION:
                found.ignored.append(name)
            continue
        try:
            stat = path.stat()
        except OSError as exc:
            found.files.append(FootageFile(name, str(path), 0, "unstat", sidecar_error=f"cannot stat: {exc}"))
            continue
        sidecar, sidecar_error = None, None
        for candidate in _sidecar_names(name):
            if candidate in all_names:
                try:
                    sidecar = read_sidecar((root / candidate).read_bytes(), candidate)
                except (OSError, NamingError) as exc:
                    sidecar_error = str(exc)
                break
        found.files.append(FootageFile(name, str(path), stat.st_size, str(stat.st_mtime_ns), sidecar, sidecar_error))
    return found
