"""Content-addressed blob store for raw payloads and attachments.

A blob is named by the sha256 of its bytes, so storing the same bytes twice is free and a
reference can be checked. Writes go to a temporary file, are fsynced, then renamed into place:
a crash never leaves a half-written blob under a valid name. Production points the directory at a
shared filesystem; an S3-compatible store can implement the same ``BlobStore`` protocol.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
from pathlib import Path
from typing import Protocol

from intake.errors import BlobNotFound

__all__ = ["BlobStore", "FileBlobStore", "sha256_hex"]


_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    def put(self, data: bytes) -> str:
        """Store ``data``; return its sha256 (hex). Durable when this returns."""
        ...

    def get(self, sha256: str) -> bytes:
        """The bytes stored under ``sha256``; ``BlobNotFound`` when absent."""
        ...

    def exists(self, sha256: str) -> bool: ...


class FileBlobStore:
    """Blobs as files ``<root>/ab/cd/abcd...`` under one directory."""

    def __init__(self, root: Path | str, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        # Fan-out directories known to exist: a mkdir per blob is a system call per message.
        self._made: set[Path] = set()
        self._counter = itertools.count()

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.exists():
            return digest
        if target.parent not in self._made:
            target.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(target.parent)
        # A name unique to this process and thread: cheaper than tempfile's random retries.
        tmp = target.parent / f".tmp-{os.getpid()}-{threading.get_ident()}-{next(self._counter)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.fsync:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return digest

    def get(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(sha256) from None

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()
