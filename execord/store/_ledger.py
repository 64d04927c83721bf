"""The ledger tables: one leaf per sealed execution, the perfect subtrees of the Merkle log,
signed checkpoints and blob erasures (DESIGN §1, §4).

A leaf is appended in the transaction that writes the seal, at the next index: indices are
contiguous because they are counted under the write lock (SQLite's ``BEGIN IMMEDIATE``,
PostgreSQL's ledger advisory lock), never drawn from a sequence. Appending leaf ``i`` also
stores the hash of every perfect subtree it completes (one per trailing 1 bit of ``i``), so
any proof is a single read of at most 2·log2(n) stored hashes (`execord.ledger`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..errors import InvalidInput, NotFound, StoreError
from ..record import leaf_hash, ledger_entry, node_hash, now_ts

LEDGER_LOCK = 0x6C656467  # "ledg": the advisory lock a PostgreSQL seal takes to count the next index
_SEAL_COLUMNS = "execution_id, status, event_count, events_root, last_hash, governance_version, sealed_at"


def entry_of(row: Sequence[Any]) -> bytes:
    """The ledger entry of a seals row (in `_SEAL_COLUMNS` order)."""
    eid, status, count, root, last, gv, at = row
    return ledger_entry(execution_id=eid, status=status, event_count=count, events_root=bytes(root),
                        last_hash=bytes(last), governance_version=gv, sealed_at=at)


def append_leaves(c: Any, execution_ids: Sequence[str]) -> None:
    """Append the leaves of these just-sealed executions, in order, with their subtrees."""
    row = c.execute("SELECT max(idx) FROM ledger").fetchone()
    index = 0 if row is None or row[0] is None else row[0] + 1
    written: dict[tuple[int, int], bytes] = {}
    for eid in execution_ids:
        seal = c.execute(f"SELECT {_SEAL_COLUMNS} FROM seals WHERE execution_id = ?", (eid,)).fetchone()
        entry = entry_of(seal)
        c.execute("INSERT INTO ledger (idx, execution_id, entry) VALUES (?,?,?)", (index, eid, entry))
        h = leaf_hash(entry)
        nodes = [(0, index, h)]
        level, i = 0, index
        while i & 1:  # this leaf completes the subtree whose right child it (or its ancestor) is
            left = written.get((level, i - 1))
            if left is None:
                left = bytes(c.execute("SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?",
                                       (level, i - 1)).fetchone()[0])
            h = node_hash(left, h)
            level, i = level + 1, i >> 1
            nodes.append((level, i, h))
        for lv, ix, hv in nodes:
            written[(lv, ix)] = hv
        c.executemany("INSERT INTO ledger_nodes (level, idx, hash) VALUES (?,?,?)", nodes)
        index += 1


def backfill(c: Any) -> None:
    """Give every execution sealed before the ledger existed its leaf, oldest seal first."""
    ids = [r[0] for r in c.execute(
        "SELECT execution_id FROM seals s WHERE NOT EXISTS (SELECT 1 FROM ledger l WHERE l.execution_id ="
        " s.execution_id) ORDER BY sealed_at, execution_id").fetchall()]
    for k in range(0, len(ids), 1000):
        append_leaves(c, ids[k:k + 1000])


class LedgerTables:
    """The ledger methods of `SQLStore` (mixed in)."""

    def _read(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _write(self, fn: Any) -> Any:
        raise NotImplementedError

    def ledger_size(self) -> int:
        """How many leaves the ledger holds (one per sealed execution)."""
        row = self._read("SELECT max(idx) FROM ledger")
        return 0 if not row or row[0][0] is None else int(row[0][0]) + 1

    def ledger_leaf(self, execution_id: str) -> tuple[int, bytes] | None:
        """(index, entry bytes) of a sealed execution's leaf, or None."""
        rows = self._read("SELECT idx, entry FROM ledger WHERE execution_id = ?", (execution_id,))
        return (int(rows[0][0]), bytes(rows[0][1])) if rows else None

    def ledger_entries(self, lo: int = 0, hi: int | None = None) -> list[tuple[int, str, bytes]]:
        """(index, execution id, entry) of the leaves in [lo, hi), in index order."""
        if hi is None:
            rows = self._read("SELECT idx, execution_id, entry FROM ledger WHERE idx >= ? ORDER BY idx", (lo,))
        else:
            rows = self._read("SELECT idx, execution_id, entry FROM ledger WHERE idx >= ? AND idx < ?"
                              " ORDER BY idx", (lo, hi))
        return [(int(i), e, bytes(b)) for i, e, b in rows]

    def ledger_audit_rows(self) -> tuple[list[tuple[int, str, bytes, bytes | None]], list[str]]:
        """For verification: [(index, execution id, entry, entry rebuilt from its seal or None)]
        in index order, and the sealed executions that have no leaf."""
        rows = self._read(
            f"SELECT l.idx, l.execution_id, l.entry, {', '.join('s.' + c.strip() for c in _SEAL_COLUMNS.split(','))}"
            " FROM ledger l LEFT JOIN seals s ON s.execution_id = l.execution_id ORDER BY l.idx")
        out = [(int(r[0]), r[1], bytes(r[2]), None if r[3] is None else entry_of(r[3:])) for r in rows]
        orphans = [r[0] for r in self._read(
            "SELECT execution_id FROM seals s WHERE NOT EXISTS (SELECT 1 FROM ledger l"
            " WHERE l.execution_id = s.execution_id) ORDER BY execution_id")]
        return out, orphans

    def ledger_level(self, level: int) -> list[tuple[int, bytes]]:
        """(index, hash) of every stored perfect subtree of one level, in index order."""
        rows = self._read("SELECT idx, hash FROM ledger_nodes WHERE level = ? ORDER BY idx", (level,))
        return [(int(i), bytes(h)) for i, h in rows]

    def ledger_nodes(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """The stored hashes of these perfect subtrees ((level, index) → hash), in one read."""
        keys = list(keys)
        out: dict[tuple[int, int], bytes] = {}
        for k in range(0, len(keys), 400):
            part = keys[k:k + 400]
            values = ",".join("(?,?)" for _ in part)
            params = [x for key in part for x in key]
            # A join against the primary key: SQLite plans "(level, idx) IN (VALUES …)" as a scan
            # of the whole table (docs/benchmarks.md, ledger proofs).
            rows = self._read(f"WITH k(level, idx) AS (VALUES {values}) SELECT n.level, n.idx, n.hash FROM k"
                              " JOIN ledger_nodes n ON n.level = k.level AND n.idx = k.idx", params)
            out.update(((int(lv), int(ix)), bytes(h)) for lv, ix, h in rows)
        return out

    def ledger_inclusion_nodes(self, execution_id: str, size: int | None,
                               keys: Callable[[int, int], set[tuple[int, int]]]) -> tuple[int, bytes, int, dict[tuple[int, int], bytes]] | None:
        """What an inclusion proof reads: (leaf index, entry, ledger size, the subtrees
        ``keys(index, size)`` names), or None when the execution has no leaf.
        ``size`` None is the ledger's size. (PostgreSQL reads it all in one statement.)"""
        leaf = self.ledger_leaf(execution_id)
        if leaf is None:
            return None
        current = self.ledger_size()
        wanted = current if size is None else size
        nodes = self.ledger_nodes(keys(leaf[0], wanted)) if 0 <= leaf[0] < wanted <= current else {}
        return leaf[0], leaf[1], current, nodes

    def ledger_size_and_nodes(self, keys: Iterable[tuple[int, int]]) -> tuple[int, dict[tuple[int, int], bytes]]:
        """The ledger's size and these subtrees, read together (one statement on PostgreSQL)."""
        return self.ledger_size(), self.ledger_nodes(keys)

    # -- checkpoints ---------------------------------------------------------------------------

    def add_checkpoint(self, *, tree_size: int, root: bytes, origin: str, key_id: str, verifier_key: str,
                       note: str) -> dict[str, Any]:
        """Keep a signed checkpoint (the same size signed by the same key is kept once)."""
        if tree_size > self.ledger_size():
            raise InvalidInput(f"a checkpoint of size {tree_size} is larger than the ledger")

        def tx(c: Any) -> None:
            c.execute(
                "INSERT INTO checkpoints (tree_size, key_id, root, origin, verifier_key, note, created_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT (tree_size, key_id) DO NOTHING",
                (tree_size, key_id, root, origin, verifier_key, note, now_ts()),
            )

        self._write(tx)
        found = self.get_checkpoint(tree_size, key_id=key_id)
        assert found is not None
        return found

    def _checkpoints(self, where: str, params: Sequence[Any], limit: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT tree_size, key_id, root, origin, verifier_key, note, created_at FROM checkpoints"
               f"{where} ORDER BY tree_size DESC, created_at DESC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        keys = ("tree_size", "key_id", "root", "origin", "verifier_key", "note", "created_at")
        out = []
        for row in self._read(sql, params):
            d = dict(zip(keys, row, strict=True))
            d["root"] = bytes(d["root"]).hex()
            out.append(d)
        return out

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint of the largest tree, or None before the first one."""
        found = self._checkpoints("", (), 1)
        return found[0] if found else None

    def get_checkpoint(self, tree_size: int, *, key_id: str | None = None) -> dict[str, Any] | None:
        """The checkpoint kept for a tree size (by one key, when given), or None."""
        if key_id is None:
            found = self._checkpoints(" WHERE tree_size = ?", (tree_size,), 1)
        else:
            found = self._checkpoints(" WHERE tree_size = ? AND key_id = ?", (tree_size, key_id), 1)
        return found[0] if found else None

    def checkpoints(self, *, limit: int = 1000) -> list[dict[str, Any]]:
        """The kept checkpoints, largest tree first."""
        return self._checkpoints("", (), limit)

    # -- erasure -------------------------------------------------------------------------------

    def erase_blob(self, digest: str, *, reason: str, by: str | None,
                   sign: Callable[[dict[str, Any]], dict[str, str]]) -> dict[str, Any]:
        """Delete a blob's bytes and append a signed erasure entry (right to erasure, DESIGN §3).

        The events keep the blob's digest, so every record still verifies; a bundle lists
        the erasure instead of the bytes. ``sign(entry)`` is called in the transaction with
        the entry (``tree_size`` included: the ledger's size then) and returns its
        ``key_id``, ``verifier_key`` and signed ``note`` (`execord.ledger._log.erase`).

        Raises:
            NotFound: no blob has this digest.
            InvalidInput: no reason was given, or the blob is already erased.
        """
        if not reason or not reason.strip():
            raise InvalidInput("say why the blob is erased (--reason); the reason is kept with the erasure")
        if len(reason) > 2000:
            raise InvalidInput("the reason is longer than 2,000 characters")
        rows = self._read("SELECT size, type, data IS NULL FROM blobs WHERE digest = ?", (digest,))
        if not rows:
            raise NotFound(f"no blob with digest {digest} (digests look like sha256:<64 hex>)")
        done = self.erasures([digest])
        if digest in done:
            raise InvalidInput(f"blob {digest} was already erased at {done[digest]['erased_at']}")
        size, type_, _ = rows[0]
        entry = {"digest": digest, "size": size, "type": type_, "reason": reason.strip(), "erased_by": by,
                 "erased_at": now_ts()}

        def tx(c: Any) -> None:
            c.execute("UPDATE blobs SET data = NULL WHERE digest = ?", (digest,))
            c.execute("INSERT INTO erasures (digest, size, type, reason, erased_by, erased_at) VALUES (?,?,?,?,?,?)",
                      tuple(entry.values()))
            _insert_note(c, entry, sign)

        try:
            self._write(tx)
        except StoreError:
            done = self.erasures([digest])
            if digest in done:  # another writer erased it first
                raise InvalidInput(f"blob {digest} was already erased at {done[digest]['erased_at']}") from None
            raise
        return self.erasures([digest])[digest]

    def unsigned_erasures(self, key_id: str) -> list[dict[str, Any]]:
        """The erasures that key ``key_id`` has not signed: those kept before erasures were
        signed (schema version 7), and, after a new ledger key, those the old key signed."""
        return [e for e in self.erasures(key_id=key_id).values() if e["key_id"] != key_id]

    def sign_erasures(self, sign: Callable[[dict[str, Any]], dict[str, str]], key_id: str,
                      digests: Iterable[str]) -> list[dict[str, Any]]:
        """Sign these erasures with the key ``sign`` holds (``key_id``); return them as signed.
        An erasure the key has signed meanwhile is left as it is."""
        wanted = set(digests)
        entries = [e for e in self.unsigned_erasures(key_id) if e["digest"] in wanted]
        if not entries:
            return []

        def tx(c: Any) -> None:
            for e in entries:
                if not c.execute("SELECT 1 FROM erasure_notes WHERE digest = ? AND key_id = ?",
                                 (e["digest"], key_id)).fetchall():
                    _insert_note(c, {k: e[k] for k in _ERASURE_KEYS}, sign)

        self._write(tx)
        return list(self.erasures([e["digest"] for e in entries], key_id=key_id).values())

    def erasures(self, digests: Iterable[str] | None = None, *, key_id: str | None = None) -> dict[str, dict[str, Any]]:
        """digest → the erasure entry: {digest, size, type, reason, erased_by, erased_at,
        tree_size, key_id, verifier_key, note}, all, or of these digests. The signature is
        key ``key_id``'s when it signed the entry, else the one made at the largest ledger
        size; the last four are None while no key has signed it."""
        sql = "SELECT digest, size, type, reason, erased_by, erased_at FROM erasures"
        notes_sql = "SELECT digest, key_id, tree_size, verifier_key, note FROM erasure_notes"
        if digests is None:
            rows = self._read(sql + " ORDER BY erased_at, digest")
            notes = self._read(notes_sql)
        else:
            wanted = list(digests)
            rows, notes = [], []
            for k in range(0, len(wanted), 500):
                part = wanted[k:k + 500]
                where = f" WHERE digest IN ({','.join('?' * len(part))})"
                rows += self._read(sql + where, part)
                notes += self._read(notes_sql + where, part)
        best: dict[str, tuple[Any, ...]] = {}
        for n in notes:
            held = best.get(n[0])
            if held is None or (held[1] != key_id and (n[1] == key_id or n[2] > held[2])):
                best[n[0]] = n
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            n = best.get(r[0])
            out[r[0]] = {**dict(zip(_ERASURE_KEYS, r, strict=True)),
                         **dict(zip(_NOTE_KEYS, (n[2], n[1], n[3], n[4]) if n else (None,) * 4, strict=True))}
        return out


_ERASURE_KEYS = ("digest", "size", "type", "reason", "erased_by", "erased_at")
_NOTE_KEYS = ("tree_size", "key_id", "verifier_key", "note")


def _insert_note(c: Any, entry: dict[str, Any], sign: Callable[[dict[str, Any]], dict[str, str]]) -> None:
    """Sign ``entry`` at the ledger's current size and keep the note, in transaction ``c``."""
    size = c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger").fetchall()[0][0]
    signed = sign({**entry, "tree_size": int(size)})
    c.execute("INSERT INTO erasure_notes (digest, tree_size, key_id, verifier_key, note) VALUES (?,?,?,?,?)",
              (entry["digest"], int(size), signed["key_id"], signed["verifier_key"], signed["note"]))
