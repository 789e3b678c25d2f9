"""Content-addressed artifacts: dedupe, compression, prefixes, links, durability."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from agentfleet.errors import ArtifactNotFound, StoreError
from agentfleet.store import ArtifactRef, ArtifactStore, RunStore


@pytest.fixture
def store() -> ArtifactStore:
    return ArtifactStore(":memory:", clock=lambda: 1000.0)


def _stored(store: ArtifactStore, digest: str) -> tuple[str, bytes]:
    row = store._db.execute("SELECT encoding, data FROM artifacts WHERE digest = ?", (digest,)).fetchone()
    return str(row[0]), bytes(row[1])


class TestPut:
    def test_digest_is_sha256_of_the_content(self, store: ArtifactStore) -> None:
        """A text's digest is the sha256 of its UTF-8 bytes; the ref has size, short and uri."""
        ref = store.put("héllo")
        digest = hashlib.sha256("héllo".encode()).hexdigest()
        assert ref == ArtifactRef(digest=digest, size=6, kind="text")
        assert ref.short == digest[:12]
        assert ref.uri == f"artifact://sha256/{digest}"

    def test_json_is_canonical(self, store: ArtifactStore) -> None:
        """Dicts with the same items in another order are the same artifact."""
        a = store.put({"b": 1, "a": [1, 2]})
        b = store.put({"a": [1, 2], "b": 1})
        assert a == b
        assert a.kind == "json"
        assert a.digest == hashlib.sha256(b'{"a":[1,2],"b":1}').hexdigest()

    def test_dedupe_writes_once(self, store: ArtifactStore) -> None:
        """A second put of the same content stores nothing new and counts a dedup hit."""
        store.put("same")
        store.put("same")
        stats = store.statistics()
        assert (stats.count, stats.puts, stats.dedup_hits) == (1, 2, 1)

    def test_types_round_trip(self, store: ArtifactStore) -> None:
        """Text reads back as str, bytes as bytes, JSON as the parsed value."""
        for content in ("text", b"\x00\xffbin", {"k": [1, 2.5, None, "x"]}, [1, 2], 42, None):
            assert store.get(store.put(content)) == content

    def test_same_bytes_other_kind_keeps_its_kind(self, store: ArtifactStore) -> None:
        """The text '123' and the number 123 share a row, and each ref reads back its own kind."""
        number = store.put(123)
        text = store.put("123")
        assert number.digest == text.digest
        assert store.get(number) == 123
        assert store.get(text) == "123"
        assert store.get(text.digest) == 123  # a bare digest decodes by the first put's kind

    def test_not_serialisable_is_a_type_error(self, store: ArtifactStore) -> None:
        """Content that is neither str, bytes nor JSON raises TypeError saying so."""
        with pytest.raises(TypeError, match="JSON-serialisable"):
            store.put({"x": object()})

    def test_links_need_run_and_task(self, store: ArtifactStore) -> None:
        """Giving run_id without task_id is an error, not a silent half link."""
        with pytest.raises(ValueError, match="both run_id and task_id"):
            store.put("x", run_id="r1")


class TestCompression:
    def test_large_compressible_content_is_compressed(self, store: ArtifactStore) -> None:
        """Content over 1 KiB that zlib shrinks is stored compressed and reads back exactly."""
        text = "the same line again\n" * 500
        ref = store.put(text)
        encoding, data = _stored(store, ref.digest)
        assert encoding == "zlib"
        assert len(data) < len(text) // 10
        assert store.get(ref.digest) == text
        stats = store.statistics()
        assert stats.bytes_original == len(text)
        assert stats.bytes_stored == len(data)

    def test_small_content_is_raw(self, store: ArtifactStore) -> None:
        """Content of 1 KiB or less is stored as it is."""
        ref = store.put("a" * 1024)
        assert _stored(store, ref.digest)[0] == "raw"

    def test_incompressible_content_is_raw(self, store: ArtifactStore) -> None:
        """Random bytes, which zlib would grow, are stored raw."""
        blob = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(200))
        ref = store.put(blob)
        assert _stored(store, ref.digest) == ("raw", blob)
        assert store.get(ref) == blob

    def test_damaged_row_is_reported(self, store: ArtifactStore) -> None:
        """A row whose content no longer matches its digest raises StoreError instead of returning it."""
        ref = store.put("original")
        store._db.execute("UPDATE artifacts SET data = ? WHERE digest = ?", (b"tampered", ref.digest))
        with pytest.raises(StoreError, match="damaged"):
            store.get(ref)


class TestResolve:
    def test_unique_prefix_resolves(self, store: ArtifactStore) -> None:
        """Six or more hex characters of a digest name it, as does its uri and upper case."""
        ref = store.put("findable")
        assert store.get(ref.digest[:6]) == "findable"
        assert store.ref(ref.short.upper()) == ref
        assert store.ref(ref.uri) == ref
        assert store.exists(ref.digest)

    def test_short_prefix_is_refused(self, store: ArtifactStore) -> None:
        """Fewer than six hex characters, or non-hex text, raise ArtifactNotFound naming the input."""
        ref = store.put("x")
        with pytest.raises(ArtifactNotFound, match=repr(ref.digest[:5])):
            store.get(ref.digest[:5])
        with pytest.raises(ArtifactNotFound, match="'not-hex!'"):
            store.ref("not-hex!")

    def test_unknown_digest(self, store: ArtifactStore) -> None:
        """An unknown digest raises ArtifactNotFound (exit code 2) naming what was asked."""
        with pytest.raises(ArtifactNotFound, match="'abcdef12'") as info:
            store.get("abcdef12")
        assert info.value.exit_code == 2
        assert not store.exists("abcdef12")

    def test_ambiguous_prefix(self, store: ArtifactStore) -> None:
        """A prefix shared by two digests is ambiguous (named in the error); a longer one resolves."""
        for digest in ("abcdef" + "0" * 58, "abcdef" + "1" * 58):
            store._db.execute("INSERT INTO artifacts VALUES (?, 1, 'text', 'raw', X'00', 0)", (digest,))
        with pytest.raises(ArtifactNotFound, match="'abcdef' is ambiguous"):
            store.ref("abcdef")
        assert store.ref("abcdef1").digest == "abcdef" + "1" * 58
        assert not store.exists("abcdef")


class TestLinks:
    def test_links_per_run_in_order(self, store: ArtifactStore) -> None:
        """Each run lists (task, ref) in the order linked; deduped content still gets its link."""
        a = store.put("shared", run_id="r1", task_id="t1")
        b = store.put({"x": 1}, run_id="r1", task_id="t2")
        c = store.put("shared", run_id="r2", task_id="t9")
        store.put("shared", run_id="r1", task_id="t1")  # the same link again: no duplicate
        assert store.links("r1") == [("t1", a), ("t2", b)]
        assert store.links("r2") == [("t9", c)]
        assert store.links("nope") == []
        assert store.statistics().count == 2


class TestDurability:
    def test_shares_the_run_database(self, tmp_path: Path) -> None:
        """Artifacts live in the run database file and are readable by a fresh connection."""
        path = tmp_path / "deep" / "agentfleet.db"
        with RunStore(path) as runs:
            run_id = runs.create_run(name="w", spec_path=None, spec_text=None)
        with ArtifactStore(path) as artifacts:
            ref = artifacts.put({"big": "x" * 5000}, run_id=run_id, task_id="t")
        with ArtifactStore(path, create=False) as again:
            assert again.get(ref.short) == {"big": "x" * 5000}
            assert again.links(run_id) == [("t", ref)]

    def test_put_is_committed_on_a_shared_connection(self, tmp_path: Path) -> None:
        """On a caller's connection (legacy transaction mode) a put is committed before it returns."""
        path = tmp_path / "a.db"
        conn = sqlite3.connect(path)
        store = ArtifactStore(conn)
        ref = store.put("durable")
        store.close()  # not ours: stays open
        other = sqlite3.connect(path)
        assert other.execute("SELECT COUNT(*) FROM artifacts WHERE digest = ?", (ref.digest,)).fetchone()[0] == 1
        assert conn.execute("SELECT 1").fetchone() == (1,)
        other.close()
        conn.close()
        assert store.path == str(path)

    def test_missing_database_without_create(self, tmp_path: Path) -> None:
        """create=False refuses a missing file with a StoreError (exit code 2) naming the path."""
        with pytest.raises(StoreError, match="nothere") as info:
            ArtifactStore(tmp_path / "nothere.db", create=False)
        assert info.value.exit_code == 2
        assert not (tmp_path / "nothere.db").exists()

    def test_corrupt_database(self, tmp_path: Path) -> None:
        """A file that is not a database is a StoreError naming it."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not sqlite" * 200)
        with pytest.raises(StoreError, match=r"bad\.db"):
            ArtifactStore(bad)

    def test_statistics_count_gets(self, store: ArtifactStore) -> None:
        """gets counts successful reads."""
        ref = store.put("x")
        store.get(ref)
        store.get(ref.digest)
        assert store.statistics().gets == 2
