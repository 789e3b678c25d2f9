"""Content-addressed artifacts: large task outputs stored once, passed between tasks by reference.

# Design
# An artifact is addressed by the sha256 of its canonical bytes: a str as UTF-8, bytes as
# they are, anything else as JSON with sorted keys and compact separators. The same content
# put twice is stored once; the second put only adds a link (run, task -> digest), which
# is what lets a run list the artifacts its tasks produced.
#
# The kind (text / json / bytes) is part of the *reference*, not of the address: the text
# "123" and the JSON number 123 have the same bytes and share one row. The row keeps the
# kind of its first put (used by ``get(hex)``); an ``ArtifactRef`` carries the kind its
# caller put, and ``get(ref)`` decodes by it, so a reference always reads back what was put.
#
# The tables live in the run database (one file to copy, back up or delete). Every write is
# its own committed transaction: once ``put`` returns, the reference can be handed to a
# downstream task, even one in another process. Reads verify the digest, so a damaged row
# is reported instead of being passed on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ArtifactNotFound, StoreError
from ._db import apply_schema, connect, transaction
from ._sqlite import DEFAULT_DB

__all__ = ["ArtifactKind", "ArtifactRef", "ArtifactStatistics", "ArtifactStore"]

ArtifactKind = Literal["text", "json", "bytes"]

_KINDS: tuple[ArtifactKind, ...] = ("text", "json", "bytes")
_URI_PREFIX = "artifact://sha256/"
_MIN_PREFIX = 6
_COMPRESS_OVER = 1024  # bytes; below this zlib's header and the CPU are not worth it
_HEX = frozenset("0123456789abcdef")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS artifacts (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        encoding TEXT NOT NULL,
        data BLOB NOT NULL,
        created REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS artifact_links (
        run_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES artifacts(digest),
        kind TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (run_id, task_id, digest)
    )""",
    "CREATE INDEX IF NOT EXISTS artifact_links_digest ON artifact_links(digest)",
)


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """A reference to stored content: what a task passes downstream instead of the content."""

    digest: str
    size: int
    kind: ArtifactKind

    @property
    def short(self) -> str:
        """The first 12 hex characters: enough to name it in logs and on the command line."""
        return self.digest[:12]

    @property
    def uri(self) -> str:
        """``artifact://sha256/<digest>``."""
        return f"{_URI_PREFIX}{self.digest}"


@dataclass(frozen=True, slots=True)
class ArtifactStatistics:
    """Totals of the stored artifacts, and what this store object has done since it was opened."""

    count: int
    bytes_original: int
    bytes_stored: int
    puts: int
    dedup_hits: int
    gets: int


class ArtifactStore:
    """Content-addressed storage in the run database. ``":memory:"`` works for tests.

    ``path`` may also be an open ``sqlite3.Connection`` (for example the one a RunStore
    uses); the store then neither configures nor closes it. ``create=False`` refuses to
    create a database that does not exist yet (a StoreError with exit code 2).
    """

    def __init__(self, path: str | os.PathLike[str] | sqlite3.Connection = DEFAULT_DB, *,
                 create: bool = True, clock: Callable[[], float] = time.time) -> None:
        self._db, self.path, self._owned = connect(path, create=create, what="artifact")
        apply_schema(self._db, _SCHEMA, self.path)
        self._clock = clock
        self._lock = threading.RLock()
        self._puts = 0
        self._dedup_hits = 0
        self._gets = 0

    def close(self) -> None:
        """Close the connection if this store opened it."""
        if self._owned:
            self._db.close()

    def __enter__(self) -> ArtifactStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def put(self, content: Any, *, run_id: str | None = None, task_id: str | None = None) -> ArtifactRef:
        """Store ``content`` (str, bytes or anything JSON-serialisable) once and return its reference.

        With ``run_id`` and ``task_id`` the artifact is also linked to that task. The write is
        committed before this returns.
        """
        if (run_id is None) != (task_id is None):
            raise ValueError("artifact links need both run_id and task_id (or neither)")
        kind, raw = _canonical(content)
        digest = hashlib.sha256(raw).hexdigest()
        encoding, data = "raw", raw
        if len(raw) > _COMPRESS_OVER:
            packed = zlib.compress(raw, 6)
            if len(packed) < len(raw):
                encoding, data = "zlib", packed
        now = self._clock()
        with self._lock:
            try:
                with transaction(self._db):
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO artifacts (digest, size, kind, encoding, data, created)"
                        " VALUES (?, ?, ?, ?, ?, ?)", (digest, len(raw), kind, encoding, data, now))
                    inserted = cur.rowcount == 1
                    if run_id is not None:
                        self._db.execute("INSERT OR IGNORE INTO artifact_links (run_id, task_id, digest, kind, created)"
                                         " VALUES (?, ?, ?, ?, ?)", (run_id, task_id, digest, kind, now))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write an artifact: {exc}", path=self.path) from None
            self._puts += 1
            if not inserted:
                self._dedup_hits += 1
        return ArtifactRef(digest=digest, size=len(raw), kind=kind)

    # -- reading -----------------------------------------------------------------------

    def get(self, digest_or_prefix: str | ArtifactRef) -> Any:
        """The content, decoded: str for text, bytes for bytes, the parsed value for JSON.

        A string is a full digest, a unique prefix of at least 6 hex characters or an
        ``artifact://`` URI; an ArtifactRef decodes as the kind it was put with.
        """
        with self._lock:
            digest = self._resolve(digest_or_prefix)
            row = self._db.execute("SELECT kind, encoding, data FROM artifacts WHERE digest = ?",
                                   (digest,)).fetchone()
            self._gets += 1
        kind: str = digest_or_prefix.kind if isinstance(digest_or_prefix, ArtifactRef) else row[0]
        raw = bytes(row[2])
        if row[1] == "zlib":
            try:
                raw = zlib.decompress(raw)
            except zlib.error as exc:
                raise StoreError(f"artifact {digest[:12]} is damaged: {exc}", path=self.path) from None
        elif row[1] != "raw":
            raise StoreError(f"artifact {digest[:12]} has an unknown encoding {row[1]!r}", path=self.path)
        if hashlib.sha256(raw).hexdigest() != digest:
            raise StoreError(f"artifact {digest[:12]} is damaged: its content does not match its digest",
                             path=self.path)
        return _decode(kind, raw)

    def ref(self, digest_or_prefix: str) -> ArtifactRef:
        """The reference of a stored artifact (with the kind of its first put)."""
        with self._lock:
            digest = self._resolve(digest_or_prefix)
            row = self._db.execute("SELECT size, kind FROM artifacts WHERE digest = ?", (digest,)).fetchone()
        return ArtifactRef(digest=digest, size=int(row[0]), kind=_kind(row[1]))

    def exists(self, digest: str) -> bool:
        """Whether ``digest`` (or a prefix of it) names exactly one stored artifact."""
        try:
            with self._lock:
                self._resolve(digest)
        except ArtifactNotFound:
            return False
        return True

    def links(self, run_id: str) -> list[tuple[str, ArtifactRef]]:
        """(task id, reference) for every artifact linked to ``run_id``, in the order they were linked."""
        with self._lock:
            rows = self._db.execute(
                "SELECT l.task_id, l.digest, a.size, l.kind FROM artifact_links l"
                " JOIN artifacts a ON a.digest = l.digest WHERE l.run_id = ? ORDER BY l.rowid", (run_id,)
            ).fetchall()
        return [(str(r[0]), ArtifactRef(digest=str(r[1]), size=int(r[2]), kind=_kind(r[3]))) for r in rows]

    def statistics(self) -> ArtifactStatistics:
        """What is stored (count, original and stored bytes) and this object's puts, dedup hits and gets."""
        with self._lock:
            count, original, stored = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(LENGTH(data)), 0) FROM artifacts").fetchone()
            return ArtifactStatistics(count=int(count), bytes_original=int(original), bytes_stored=int(stored),
                                      puts=self._puts, dedup_hits=self._dedup_hits, gets=self._gets)

    def _resolve(self, asked: str | ArtifactRef) -> str:
        if isinstance(asked, ArtifactRef):
            asked = asked.digest
        prefix = asked.strip().lower()
        if prefix.startswith(_URI_PREFIX):
            prefix = prefix[len(_URI_PREFIX):]
        if len(prefix) < _MIN_PREFIX or not set(prefix) <= _HEX:
            raise ArtifactNotFound(f"artifact {asked!r} is not a digest: give at least {_MIN_PREFIX} hex characters",
                                   path=self.path)
        # A range scan on the primary key; 'g' sorts after every hex digit.
        rows = self._db.execute("SELECT digest FROM artifacts WHERE digest >= ? AND digest < ? LIMIT 2",
                                (prefix, prefix + "g")).fetchall()
        if not rows:
            raise ArtifactNotFound(f"no artifact {asked!r} in this database", path=self.path)
        if len(rows) > 1:
            raise ArtifactNotFound(f"artifact prefix {asked!r} is ambiguous: give more hex characters",
                                   path=self.path)
        return str(rows[0][0])


def _canonical(content: Any) -> tuple[ArtifactKind, bytes]:
    if isinstance(content, str):
        return "text", content.encode("utf-8")
    if isinstance(content, (bytes, bytearray, memoryview)):
        return "bytes", bytes(content)
    try:
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"artifact content must be str, bytes or JSON-serialisable: {exc}") from None
    return "json", text.encode("utf-8")


def _decode(kind: str, raw: bytes) -> Any:
    if kind == "text":
        return raw.decode("utf-8")
    if kind == "json":
        return json.loads(raw)
    return raw


def _kind(value: object) -> ArtifactKind:
    for kind in _KINDS:
        if value == kind:
            return kind
    raise StoreError(f"unknown artifact kind {value!r}")
