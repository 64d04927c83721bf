"""The ledger of a store: its root at any size, proofs, and signed checkpoints.

The store keeps the leaves and every perfect subtree (`execord.store._ledger`); this module
plans each proof (`_tree`) and resolves it with one read, so it costs O(log n) however large
the log is. Works with any store that has ``ledger_size``, ``ledger_leaf`` and
``ledger_nodes`` (SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LedgerError
from . import _tree
from ._erasure import check_erasure, erasure_body
from ._note import Checkpoint, NoteError, Signer, Verifier, open_checkpoint

EMPTY_ROOT = hashlib.sha256(b"").digest()


def _size(store: Any, size: int | None) -> int:
    return _check_size(store.ledger_size(), size)


def _check_size(current: int, size: int | None) -> int:
    if size is None:
        return current
    if not 0 <= size <= current:
        raise LedgerError(f"the ledger has {current} leaves; there is no tree of size {size}")
    return size


def root_at(store: Any, size: int | None = None) -> tuple[int, bytes]:
    """(size, root) of the ledger's first ``size`` leaves (default: all of them)."""
    size = _size(store, size)
    if size == 0:
        return 0, EMPTY_ROOT
    keys = _tree.root_plan(size)
    nodes = store.ledger_nodes(keys)
    return size, _tree.fold([nodes[k] for k in keys])


def inclusion(store: Any, execution_id: str, size: int | None = None) -> dict[str, Any]:
    """The inclusion proof of a sealed execution's leaf in the tree of ``size`` leaves.

    Raises:
        NotFound: no such execution.
        LedgerError: it is not sealed yet, or its leaf is past ``size``.
    """
    def wanted(index: int, size: int) -> set[_tree.Key]:
        return {k for ks in _tree.inclusion_plan(index, size) for k in ks} | set(_tree.root_plan(size))

    read = store.ledger_inclusion_nodes(execution_id, size, wanted)
    if read is None:
        store.get_execution(execution_id)  # NotFound when there is no such execution
        raise LedgerError(f"execution {execution_id} is not sealed yet: only sealed executions have a ledger leaf")
    index, entry, current, nodes = read
    size = _check_size(current, size)
    if index >= size:
        raise LedgerError(f"execution {execution_id} is leaf {index}, after the tree of size {size}")
    plan = _tree.inclusion_plan(index, size)
    root_keys = _tree.root_plan(size)
    return {
        "execution_id": execution_id,
        "index": index,
        "tree_size": size,
        "entry": entry.decode(),
        "leaf_hash": hashlib.sha256(b"\x00" + entry).hexdigest(),
        "proof": [_tree.fold([nodes[k] for k in ks]).hex() for ks in plan],
        "root": _tree.fold([nodes[k] for k in root_keys]).hex(),
    }


def consistency(store: Any, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """The consistency proof from the tree of ``old_size`` leaves to ``new_size``."""
    if new_size is None:
        new_size = store.ledger_size()
    if not 0 <= old_size <= new_size:
        raise LedgerError(f"a consistency proof goes from a smaller tree to a larger one: {old_size} → {new_size}")
    if new_size >= 1 << 63:  # past what the database holds, so past any ledger: say so before asking it
        _check_size(store.ledger_size(), new_size)
    plan = _tree.consistency_plan(old_size, new_size)
    old_keys = _tree.root_plan(old_size)
    new_keys = _tree.root_plan(new_size)
    current, nodes = store.ledger_size_and_nodes({k for ks in plan for k in ks} | set(old_keys) | set(new_keys))
    _check_size(current, new_size)
    return {
        "from": old_size,
        "to": new_size,
        "proof": [_tree.fold([nodes[k] for k in ks]).hex() for ks in plan],
        "from_root": (_tree.fold([nodes[k] for k in old_keys]) if old_size else EMPTY_ROOT).hex(),
        "to_root": (_tree.fold([nodes[k] for k in new_keys]) if new_size else EMPTY_ROOT).hex(),
    }


def make_checkpoint(store: Any, signer: Signer) -> dict[str, Any]:
    """Sign the ledger as it is now and keep the checkpoint; return it."""
    size, root = root_at(store)
    cp = Checkpoint(signer.name, size, root)
    note = signer.sign(cp.body())
    return store.add_checkpoint(tree_size=size, root=root, origin=signer.name, key_id=signer.verifier.key_id.hex(),
                                verifier_key=signer.verifier.text(), note=note)


def checkpoint_view(row: dict[str, Any]) -> dict[str, Any]:
    """A kept checkpoint as the API and CLI show it."""
    return {
        "origin": row["origin"],
        "tree_size": row["tree_size"],
        "root": row["root"],
        "root_base64": base64.b64encode(bytes.fromhex(row["root"])).decode(),
        "key_id": row["key_id"],
        "verifier_key": row["verifier_key"],
        "note": row["note"],
        "created_at": row["created_at"],
    }


def check_checkpoint(store: Any, row: dict[str, Any], verifier: Verifier | None = None) -> list[str]:
    """What is wrong with a kept checkpoint: its signature, or its root against the stored tree."""
    problems = []
    try:
        cp = open_checkpoint(row["note"], verifier or Verifier.parse(row["verifier_key"]))
    except NoteError as exc:
        return [f"checkpoint of size {row['tree_size']}: {exc}"]
    if cp.size != row["tree_size"] or cp.root.hex() != row["root"]:
        problems.append(f"checkpoint of size {row['tree_size']}: its signed body says another size or root")
    if cp.size > store.ledger_size():
        return [*problems, f"checkpoint of size {cp.size} is larger than the ledger ({store.ledger_size()} leaves)"]
    _, root = root_at(store, cp.size)
    if root != cp.root:
        problems.append(f"checkpoint of size {cp.size}: the stored tree's root {root.hex()[:16]}… is not the "
                        f"signed root {cp.root.hex()[:16]}… (the ledger was rewritten)")
    return problems


def verify_ledger(store: Any, verifier: Verifier | None = None) -> dict[str, Any]:
    """Check a store's ledger: one leaf per seal, each leaf equal to its seal, indices
    contiguous, the stored tree equal to the tree of the leaves, the latest checkpoint's
    signature and root, and every erasure's signature. Returns {leaves, checkpoint, problems: [(execution id | None, message)]}."""
    from ..record import root_from_leaf_hashes

    rows, orphans = store.ledger_audit_rows()
    problems: list[tuple[str | None, str]] = [(eid, "sealed, but the ledger has no leaf for it") for eid in orphans]
    hashes = []
    for n, (index, eid, entry, rebuilt) in enumerate(rows):
        if index != n:
            problems.append((eid, f"ledger index {index} where {n} was expected (a gap in the ledger)"))
            break
        if rebuilt is None:
            problems.append((eid, f"ledger leaf {index} names an execution that has no seal"))
        elif rebuilt != entry:
            problems.append((eid, f"ledger leaf {index} does not match the execution's seal"))
        hashes.append(hashlib.sha256(b"\x00" + entry).digest())
    size = len(hashes)
    if size and not problems:
        problems.extend((None, m) for m in _check_nodes(store, hashes))
    row = store.latest_checkpoint()
    if row is not None:
        for message in check_checkpoint(store, row, verifier):
            problems.append((None, message))
        if row["tree_size"] <= size and root_from_leaf_hashes(hashes[: row["tree_size"]]).hex() != row["root"]:
            problems.append((None, f"the leaves of the ledger do not hash to the signed checkpoint of "
                                   f"{row['tree_size']} (the ledger was rewritten)"))
    for entry in store.erasures(key_id=None if verifier is None else verifier.key_id.hex()).values():
        problem = check_erasure(entry, verifier)
        if problem:
            problems.append((None, problem))
    return {"leaves": size, "checkpoint": None if row is None else row["tree_size"], "problems": problems}


def _check_nodes(store: Any, leaf_hashes: list[bytes]) -> list[str]:
    """Every stored perfect subtree against the one recomputed from the leaves, level by level
    (a proof is built from any of them, not only from those the root is folded from)."""
    level, row = 0, leaf_hashes
    while row:
        stored = store.ledger_level(level)
        if [h for _, h in stored] != row or [i for i, _ in stored] != list(range(len(row))):
            bad = next((i for i, (k, h) in enumerate(stored) if k != i or i >= len(row) or h != row[i]),
                       min(len(stored), len(row)))
            return [f"the stored ledger tree is not the tree of its leaves: subtree ({level}, {bad}) was changed "
                    "(proofs built from it would not verify)"]
        if len(row) == 1:
            break
        row = [_tree.node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
    return []


# -- erasures ---------------------------------------------------------------------------------------

def _signing(signer: Signer) -> Callable[[dict[str, Any]], dict[str, str]]:
    def sign(entry: dict[str, Any]) -> dict[str, str]:
        return {"key_id": signer.verifier.key_id.hex(), "verifier_key": signer.verifier.text(),
                "note": signer.sign(erasure_body(signer.name, entry))}
    return sign


def erase(store: Any, digest: str, *, reason: str, by: str | None, signer: Signer) -> dict[str, Any]:
    """Delete a blob's bytes and keep an erasure entry signed by the ledger key; return it."""
    return store.erase_blob(digest, reason=reason, by=by, sign=_signing(signer))


def unsigned_erasures(store: Any, signer: Signer) -> list[dict[str, Any]]:
    """The erasures this key has not signed (kept before erasures were signed, or signed by
    an earlier ledger key)."""
    return store.unsigned_erasures(signer.verifier.key_id.hex())


def sign_erasures(store: Any, signer: Signer, digests: list[str]) -> list[dict[str, Any]]:
    """Sign these erasures with this key; return them as signed."""
    return store.sign_erasures(_signing(signer), signer.verifier.key_id.hex(), digests)


# -- keys -------------------------------------------------------------------------------------------

_KEY_FILE_LIMIT = 64 * 1024  # a key file is one line; anything larger is not one


def _key_text(path: str | os.PathLike[str], made_by: str) -> str:
    """The text of a key file, or `ConfigError` naming the file and what is wrong with it
    (`OSError` when it cannot be read at all, for the caller to word)."""
    with open(path, "rb") as fh:
        data = fh.read(_KEY_FILE_LIMIT + 1)
    if len(data) > _KEY_FILE_LIMIT:
        raise ConfigError(f"{path} is not a ledger key file: it is larger than {_KEY_FILE_LIMIT // 1024} KB, and a "
                          f"key is one line (give {made_by})")
    if data.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(f"{path} is not a ledger key file: it starts with a UTF-8 byte-order mark, which an "
                          f"editor added; save it as UTF-8 without a BOM, or use {made_by} as it was written")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a ledger key file: it is not UTF-8 text (byte {exc.start} is "
                          f"0x{data[exc.start]:02x}); give {made_by}") from None


def read_signer(path: str | os.PathLike[str]) -> Signer:
    """The signer key in a ``.key`` file; `ConfigError` when unreadable or malformed."""
    try:
        text = _key_text(path, "the .key file `execord ledger keygen` wrote")
    except OSError as exc:
        raise ConfigError(f"cannot read the ledger key {path}: {exc.strerror}; make one with "
                          "`execord ledger keygen`") from None
    try:
        return Signer.parse(text)
    except NoteError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_verifier(value: str | os.PathLike[str]) -> Verifier:
    """A verifier key given as a ``.pub`` file or as the key text itself."""
    text = str(value)
    if not text.strip():
        raise ConfigError("the public key is empty: give the ledger's .pub file or its one-line text "
                          "(is the variable you passed it in unset?)")
    if "+" not in text or os.path.exists(text):
        try:
            text = _key_text(value, "the .pub file `execord ledger keygen` wrote")
        except OSError as exc:
            raise ConfigError(f"cannot read the public key {value}: {exc.strerror}") from None
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        raise ConfigError(f"{value}: {exc}") from None


def signer_from_env() -> Signer | None:
    """The signer named by ``EXECORD_LEDGER_KEY``, or None when it is unset."""
    path = os.environ.get("EXECORD_LEDGER_KEY")
    return read_signer(path) if path else None


def write_keys(signer: Signer, out_dir: str | os.PathLike[str], stem: str = "ledger", *,
               force: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (mode 0600) and ``<stem>.pub``; refuse to overwrite unless ``force``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder: --out names the folder to write {stem}.key and "
                          f"{stem}.pub in")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the folder {out}: {exc.strerror} (a part of the path is a file, or not "
                          "writable); --out names the folder to write the key files in") from None
    key, pub = out / f"{stem}.key", out / f"{stem}.pub"
    for p in (key, pub):
        if p.exists() and not force:
            raise ConfigError(f"{p} exists: a new key would orphan every checkpoint signed with the old one "
                              "(pass --force to replace it anyway)")
        if p.is_dir():
            raise ConfigError(f"{p} is a folder: remove it or choose another --out")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(key, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (signer.text() + "\n").encode())
        finally:
            os.close(fd)
        pub.write_text(signer.verifier.text() + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the key files in {out}: {exc.strerror}") from None
    return key, pub


def latest_covering(store: Any, min_size: int) -> dict[str, Any] | None:
    """The newest kept checkpoint whose tree holds at least ``min_size`` leaves."""
    row = store.latest_checkpoint()
    return row if row is not None and row["tree_size"] >= min_size else None


