"""Export bundles: sealed executions packed with everything needed to verify them offline.

A bundle is a zip file::

    manifest.json                  format, algorithms in words, the SHA-256 of every file
    checkpoint.txt                 the signed C2SP checkpoint the proofs lead to
    ledger.pub                     the log's public key (verifier key format)
    consistency.json               proofs from each earlier kept checkpoint to this one
    erasures.json                  the erasure entry of each referenced blob whose bytes were erased
    blobs.jsonl                    each content blob an execution references, one per line:
                                   {"data": its UTF-8 text, "digest", "size", "type"}
    executions/<id>/events.jsonl   the canonical bytes of each event, one per line, exactly as hashed
    executions/<id>/record.json    summary, seal, the blobs and versions it names, and "ledger":
                                   its leaf (the entry bytes), index and inclusion proof
    governance/<gv>.json           each governance version document an execution names

Blobs and governance documents are content-addressed, so executions that share one share
it. Blobs are lines of one file rather than a file each: a bundle of 10,000 executions then
has some 20,000 members instead of 100,000, and member overhead is most of reading a zip.

`execord verify BUNDLE` (`_verify.verify_bundle`) checks it with nothing else.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from collections.abc import Sequence
from typing import IO, Any

import orjson

from ..errors import LedgerError
from ..record import canonical_json, now_ts
from . import _log
from ._note import Signer

BUNDLE_FORMAT = "execord-bundle"
BUNDLE_VERSION = 1
MAX_EXECUTIONS = 100_000
_BLOB = re.compile(rb'"\$blob":"(sha256:[0-9a-f]{64})"')
_GV = re.compile(rb'"governance_version":"(gv_[0-9a-f]{16})"')
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed member times: the same record exports to the same bytes

ALGORITHMS = {
    "canonical_json": "RFC 8785 (JCS). events.jsonl holds each event's canonical bytes, one per line, in seq order.",
    "event_hash": "hash = SHA-256(prev_hash ‖ canonical bytes of the event); the prev_hash of seq 0 is "
                  "SHA-256 of the execution id; each event names its prev_hash in hex.",
    "events_root": "RFC 6962 Merkle root over the event hashes in seq order: leaf = SHA-256(0x00 ‖ hash), "
                   "node = SHA-256(0x01 ‖ left ‖ right).",
    "ledger_leaf": "the canonical JSON of {execution_id, status, event_count, events_root, last_hash, "
                   "governance_version, sealed_at}, hashes in lowercase hex; leaf hash = SHA-256(0x00 ‖ entry).",
    "ledger": "one RFC 6962 / RFC 9162 Merkle log over every sealed execution's leaf; inclusion and "
              "consistency proofs as in RFC 9162 §2.1.3 and §2.1.4.",
    "checkpoint": "C2SP tlog-checkpoint (origin, tree size, base64 root) in a C2SP signed-note signed with "
                  "Ed25519; key id = first 4 bytes of SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key).",
    "blobs": "content blobs are named by SHA-256 of their bytes; an erased blob has an erasure entry instead, signed by the ledger key.",
    "governance": "a governance version id is gv_ + the first 16 hex of SHA-256 of its canonical document.",
    "manifest": "files lists the SHA-256 of every other file in the bundle; it detects damage, and proves "
                "nothing by itself: the proof is the chain, the ledger and the signed checkpoint.",
}


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def _pick_checkpoint(store: Any, min_size: int, signer: Signer | None) -> dict[str, Any]:
    found = _log.latest_covering(store, min_size)
    if found is not None:
        return found
    if signer is not None:
        return _log.make_checkpoint(store, signer)
    latest = store.latest_checkpoint()
    have = "no checkpoint has been signed yet" if latest is None else (
        f"the latest signed checkpoint covers {latest['tree_size']} leaves")
    raise LedgerError(f"{have}, and the bundle needs one covering {min_size}: run `execord ledger checkpoint "
                      "--key ledger.key` (or pass --key / set EXECORD_LEDGER_KEY) and export again")


def bundle_files(store: Any, execution_ids: Sequence[str], *, signer: Signer | None = None) -> dict[str, bytes]:
    """Every file of a bundle of these (sealed) executions: path → bytes.

    Raises:
        NotFound: an execution does not exist.
        LedgerError: an execution is not sealed, or no signed checkpoint covers it and no
            ``signer`` was given to make one.
    """
    ids = list(dict.fromkeys(execution_ids))
    if not ids:
        raise LedgerError("name at least one execution to put in the bundle")
    if len(ids) > MAX_EXECUTIONS:
        raise LedgerError(f"a bundle holds at most {MAX_EXECUTIONS:,} executions; split the export")
    leaves: dict[str, tuple[int, bytes]] = {}
    for eid in ids:
        leaf = store.ledger_leaf(eid)
        if leaf is None:
            summary = store.get_execution(eid)  # NotFound when there is no such execution
            raise LedgerError(f"execution {eid} is {summary['status']}, not sealed: a bundle holds sealed "
                              "executions only (their ledger leaf is written with the seal)")
        leaves[eid] = leaf
    checkpoint = _pick_checkpoint(store, max(i for i, _ in leaves.values()) + 1, signer)
    size = checkpoint["tree_size"]
    files: dict[str, bytes] = {
        "checkpoint.txt": checkpoint["note"].encode(),
        "ledger.pub": (checkpoint["verifier_key"] + "\n").encode(),
    }
    proofs = {}
    for row in store.checkpoints():
        if row["key_id"] == checkpoint["key_id"] and row["tree_size"] < size and str(row["tree_size"]) not in proofs:
            c = _log.consistency(store, row["tree_size"], size)
            proofs[str(row["tree_size"])] = {"root": c["from_root"], "proof": c["proof"]}
    files["consistency.json"] = _dumps({"to": size, "from": proofs})
    digests: set[str] = set()
    versions: set[str] = set()
    for eid in ids:
        files.update(_execution_files(store, eid, leaves[eid], size, digests, versions))
    erased = store.erasures(sorted(digests), key_id=checkpoint["key_id"])  # signed by the checkpoint's key
    lines = []
    for digest in sorted(digests):
        blob = store.get_blob(digest)
        if blob is not None and blob.data is not None:
            lines.append(blob_line(digest, blob.type, blob.data))
    files["blobs.jsonl"] = b"".join(lines)
    files["erasures.json"] = _dumps([erased[d] for d in sorted(digests) if d in erased])
    for vid in sorted(versions):
        try:
            doc = store.get_governance_version(vid)
        except Exception:  # noqa: BLE001 - a version the store no longer has is reported by verify
            continue
        files[f"governance/{vid}.json"] = canonical_json(doc["document"])
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created_at": now_ts(),
        "description": "Sealed Execord executions with the proofs that tie them to a signed ledger checkpoint. "
                       "Verify with `execord verify BUNDLE --key LEDGER.pub` (docs/evidence.md).",
        "algorithms": ALGORITHMS,
        "checkpoint": {"file": "checkpoint.txt", "tree_size": size, "root": checkpoint["root"],
                       "origin": checkpoint["origin"], "key_id": checkpoint["key_id"]},
        "executions": ids,
        "files": {path: "sha256:" + hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
    }
    files["manifest.json"] = _dumps(manifest)
    return files


def _execution_files(store: Any, eid: str, leaf: tuple[int, bytes], size: int, all_digests: set[str],
                     all_versions: set[str]) -> dict[str, bytes]:
    base = f"executions/{eid}/"
    bodies = [body for _, _, _, body in store.event_rows(eid)]
    digests = sorted({m.decode() for body in bodies for m in _BLOB.findall(body)})
    versions = sorted({m.decode() for body in bodies for m in _GV.findall(body)})
    all_digests.update(digests)
    all_versions.update(versions)
    index, entry = leaf
    proof = _log.inclusion(store, eid, size)
    return {
        base + "events.jsonl": b"\n".join(bodies) + b"\n",
        base + "record.json": _dumps({
            "execution": store.get_execution(eid),
            "seal": store.get_seal(eid),
            "ledger": {"index": index, "tree_size": size, "entry": entry.decode(), "leaf_hash": proof["leaf_hash"],
                       "proof": proof["proof"]},
            "blobs": digests,
            "governance_versions": versions,
        }),
    }


def blob_line(digest: str, type_: str, data: bytes) -> bytes:
    """One line of blobs.jsonl: the blob's text as a JSON string (base64 if it is not UTF-8)."""
    try:
        body: dict[str, Any] = {"data": data.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        body = {"data_base64": base64.b64encode(data).decode()}
    return canonical_json({**body, "digest": digest, "size": len(data), "type": type_}) + b"\n"


def write_bundle(store: Any, execution_ids: Sequence[str], out: str | os.PathLike[str] | IO[bytes], *,
                 signer: Signer | None = None) -> dict[str, Any]:
    """Write a bundle zip to a path or binary file; return its manifest."""
    files = bundle_files(store, execution_ids, signer=signer)
    if isinstance(out, str | os.PathLike):
        tmp = f"{os.fspath(out)}.tmp"
        with open(tmp, "wb") as fh:
            _zip(files, fh)
        os.replace(tmp, out)
    else:
        _zip(files, out)
    return orjson.loads(files["manifest.json"])


def bundle_bytes(store: Any, execution_ids: Sequence[str], *, signer: Signer | None = None) -> bytes:
    """A bundle as bytes (what the API sends)."""
    buf = io.BytesIO()
    _zip(bundle_files(store, execution_ids, signer=signer), buf)
    return buf.getvalue()


# Each execution's events.jsonl and record.json are stored, not deflated: verifying a bundle
# then reads them straight from the file instead of inflating most of its bytes (inflating
# was a third of the work), for a bundle some 2.8 times the size (docs/benchmarks.md). The
# shared files (blobs.jsonl, the manifest, governance documents) are deflated. Readers take
# either method for any member, so bundles written before still verify.
_STORED = ("/events.jsonl", "/record.json")


def _zip(files: dict[str, bytes], fh: IO[bytes]) -> None:
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for path in ["manifest.json", *sorted(p for p in files if p != "manifest.json")]:
            info = zipfile.ZipInfo(path, date_time=_ZIP_TIME)
            stored = path.startswith("executions/") and path.endswith(_STORED)
            info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, files[path])
