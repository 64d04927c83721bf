"""`execord verify BUNDLE`: check an export bundle offline, with nothing but the bundle and a key.

What is checked, in order: the bundle is a safe zip with a manifest; every file is listed in
the manifest with its digest and nothing is missing or added; the checkpoint's Ed25519
signature; for each execution, every event's hash and the chain, that nothing follows the
seal, the ``events_root``, the ledger leaf rebuilt from the events and its inclusion proof
against the checkpoint root; every referenced blob (or its erasure entry); every named
governance document's digest; and, with a pinned older checkpoint, that the bundle's
checkpoint extends it (a consistency proof).
"""

from __future__ import annotations

import hashlib
import re
import stat
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..record import chain_from_bodies, ledger_entry, root_from_leaf_hashes
from . import merkle
from ._bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from ._note import Checkpoint, NoteError, Verifier, open_checkpoint, split_note

MAX_MEMBERS = 2_000_000
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 200  # uncompressed : compressed, past 8 MiB: beyond it a member is taken for a decompression bomb
_BLOB = re.compile(rb'"\$blob":"(sha256:[0-9a-f]{64})"')
_GV = re.compile(rb'"governance_version":"(gv_[0-9a-f]{16})"')
_TYPE = b'"type":"'
_ENDED = b'"type":"execution.ended"'
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/-]+")
_sha256 = hashlib.sha256


_TOP = ("manifest.json", "checkpoint.txt", "ledger.pub", "consistency.json", "erasures.json")
_PER_EXECUTION = ("events.jsonl", "proof.json", "record.json")


class BundleUnusable(Exception):
    """The input cannot be checked at all (not a bundle, unsafe, or over a limit): exit 2."""


@dataclass(frozen=True)
class Failure:
    """One thing that does not verify: where (file, execution, seq) and what."""

    file: str
    message: str
    execution_id: str | None = None
    seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "execution_id": self.execution_id, "seq": self.seq, "message": self.message}


@dataclass
class BundleReport:
    """What `verify_bundle` found."""

    executions: int = 0
    events: int = 0
    checkpoint: Checkpoint | None = None
    key: str | None = None
    key_from_bundle: bool = False
    pinned: Checkpoint | None = None
    erasures: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def proven(self) -> list[str]:
        """What a passing verification proves, and what it does not, in words."""
        if self.checkpoint is None:
            return []
        cp = self.checkpoint
        out = [
            f"Existence: each of the {self.executions} executions was sealed into the ledger '{cp.origin}' "
            f"at or before the signed checkpoint of {cp.size} leaves (root {cp.root.hex()[:16]}…).",
            f"Order and integrity: their {self.events} events are exactly those hashed, in seq order, "
            "nothing follows a seal, and nothing has changed since that checkpoint was signed.",
        ]
        if self.pinned is not None:
            out.append(f"Append-only: the checkpoint extends the pinned checkpoint of {self.pinned.size} leaves, "
                       "so the ledger was not rewritten between them.")
        if self.key_from_bundle:
            out.append("Caution: the signature was checked with the public key inside the bundle; pass "
                       "--key with the operator's published key to know who signed it.")
        out.append("Not proven: that what the events say is true (a recording process can record a lie), "
                   "or that the ledger holds no other executions.")
        return out

    def to_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "ok": self.ok,
            "executions": self.executions,
            "events": self.events,
            "checkpoint": None if cp is None else {"origin": cp.origin, "tree_size": cp.size, "root": cp.root.hex()},
            "key": self.key,
            "key_from_bundle": self.key_from_bundle,
            "pinned": None if self.pinned is None else {"tree_size": self.pinned.size, "root": self.pinned.root.hex()},
            "proven": self.proven() if self.ok else [],
            "erasures": self.erasures,
            "failures": [f.to_dict() for f in self.failures],
            "seconds": round(self.seconds, 3),
        }


def _check_name(name: str) -> None:
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or ".." in parts or not _SAFE_NAME.fullmatch(name)
            or any(p in ("", ".") for p in parts) or re.match(r"[A-Za-z]:", name)):
        raise BundleUnusable(f"the bundle holds a member with an unsafe path {name[:120]!r} "
                             "(absolute, '..', or odd characters): refused, nothing was extracted")


def read_members(path: str) -> dict[str, bytes]:
    """Every member of a bundle zip, read into memory with limits (never extracted)."""
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleUnusable(f"no file at {path}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleUnusable(f"{path} is not a bundle (not a readable zip file: {exc})") from None
    with z:
        infos = z.infolist()
        if len(infos) > MAX_MEMBERS:
            raise BundleUnusable(f"the bundle has {len(infos):,} members, over the limit of {MAX_MEMBERS:,}")
        out: dict[str, bytes] = {}
        total = 0
        for info in infos:
            name = info.filename
            if name.endswith("/"):
                continue  # a directory entry holds nothing
            _check_name(name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleUnusable(f"the bundle member {name} is a symbolic link: refused")
            if name in out:
                raise BundleUnusable(f"the bundle holds {name} twice: refused (which copy is the record?)")
            data = _read_capped(z, info, MAX_TOTAL_BYTES - total)
            total += len(data)
            out[name] = data
        return out


def _read_capped(z: zipfile.ZipFile, info: zipfile.ZipInfo, room: int) -> bytes:
    cap = min(MAX_MEMBER_BYTES, room)
    chunks, n = [], 0
    try:
        with z.open(info) as fh:
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                if n > cap or (n > 8 << 20 and n > MAX_RATIO * max(info.compress_size, 1)):
                    raise BundleUnusable(
                        f"the bundle member {info.filename} expands past {min(n, cap):,} bytes from "
                        f"{info.compress_size:,} compressed (a decompression bomb?): refused")
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise BundleUnusable(f"the bundle member {info.filename} cannot be read: {exc}") from None
    return b"".join(chunks)


def _json(data: bytes, name: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BundleUnusable(f"{name} is not JSON") from None


def _checkpoint(members: dict[str, bytes], key: Verifier | None, report: BundleReport) -> Checkpoint | None:
    note = members.get("checkpoint.txt")
    if note is None:
        report.failures.append(Failure("checkpoint.txt", "the bundle has no signed checkpoint"))
        return None
    if key is None:
        try:
            key = Verifier.parse(members.get("ledger.pub", b"").decode("utf-8", "replace"))
            report.key_from_bundle = True
        except NoteError as exc:
            report.failures.append(Failure("ledger.pub", f"the bundle's public key is unusable: {exc}"))
            return _unverified(note, report)
    report.key = key.text()
    try:
        return open_checkpoint(note, key)
    except NoteError as exc:
        report.failures.append(Failure("checkpoint.txt", f"the checkpoint does not verify: {exc}"))
        return _unverified(note, report)


def _unverified(note: bytes, report: BundleReport) -> Checkpoint | None:
    """The checkpoint body read without trusting it, so the rest can still be checked."""
    try:
        return Checkpoint.parse(split_note(note)[0])
    except NoteError as exc:
        report.failures.append(Failure("checkpoint.txt", f"the checkpoint is malformed: {exc}"))
        return None


def verify_bundle(path: str, *, key: Verifier | None = None, pinned: bytes | None = None) -> BundleReport:
    """Check a bundle offline; see the module docstring for what is checked.

    Args:
        path: the bundle zip.
        key: the log's public key as the auditor knows it; None uses the bundle's own
            ``ledger.pub`` (which proves integrity, not who signed).
        pinned: an older signed checkpoint the auditor kept; the bundle's checkpoint must
            extend it.

    Raises:
        BundleUnusable: the input is not a bundle that can be checked (exit 2).
    """
    t0 = time.perf_counter()
    members = read_members(path)
    if "manifest.json" not in members:
        raise BundleUnusable(f"{path} has no manifest.json: it is not an Execord bundle")
    manifest = _json(members["manifest.json"], "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleUnusable("manifest.json does not describe an Execord bundle (format is not "
                             f"{BUNDLE_FORMAT!r})")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleUnusable(f"bundle format version {manifest.get('version')!r} is not one this Execord reads "
                             f"({BUNDLE_VERSION}); upgrade Execord")
    listed = manifest.get("files")
    ids = manifest.get("executions")
    if not isinstance(listed, dict) or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BundleUnusable("manifest.json lacks its files or executions lists")
    report = BundleReport()
    _files(members, listed, report)
    cp = _checkpoint(members, key, report)
    report.checkpoint = cp
    if pinned is not None and cp is not None:
        _pinned(members, pinned, key, cp, report)
    erasures = _erasures(members, report)
    seen_blobs: dict[str, bool] = {}
    named: set[str] = set()
    for eid in ids:
        _execution(members, eid, cp, erasures, seen_blobs, report, named)
    checked = set(_TOP) | named | {f"executions/{eid}/{f}" for eid in ids for f in _PER_EXECUTION}
    for name in sorted(set(members) - checked):
        if _content_addressed(name, members[name]):
            continue  # a blob or document no longer referenced (its events were cut) proves nothing either way
        if name in listed:  # unlisted ones are reported by _files already
            report.failures.append(Failure(name, "belongs to no execution of the manifest, so nothing checks it "
                                                 "(added after export)"))
    report.executions = len(ids)
    report.seconds = time.perf_counter() - t0
    return report


def _content_addressed(name: str, data: bytes) -> bool:
    digest = _sha256(data).hexdigest()
    return name == f"blobs/{digest}" or (name.startswith("governance/gv_") and name == f"governance/gv_{digest[:16]}.json")


def _files(members: dict[str, bytes], listed: dict[str, Any], report: BundleReport) -> None:
    for name in sorted(listed):
        if name not in members:
            report.failures.append(Failure(name, "listed in the manifest but missing from the bundle (removed)"))
        elif listed[name] != "sha256:" + _sha256(members[name]).hexdigest():
            report.failures.append(Failure(name, "changed after export: its SHA-256 is not the manifest's"))
    for name in sorted(members.keys() - listed.keys() - {"manifest.json"}):
        report.failures.append(Failure(name, "not listed in the manifest (added after export)"))


def _pinned(members: dict[str, bytes], pinned: bytes, key: Verifier | None, cp: Checkpoint,
            report: BundleReport) -> None:
    verifier = key
    if verifier is None:
        try:
            verifier = Verifier.parse(members.get("ledger.pub", b"").decode("utf-8", "replace"))
        except NoteError:
            return
    try:
        pin = open_checkpoint(pinned, verifier)
    except NoteError as exc:
        raise BundleUnusable(f"the pinned checkpoint does not verify with the key: {exc}") from None
    report.pinned = pin
    where = "consistency.json"
    if pin.origin != cp.origin:
        report.failures.append(Failure(where, f"the pinned checkpoint is of another log ({pin.origin!r})"))
    elif pin.size > cp.size:
        report.failures.append(Failure(where, f"the pinned checkpoint ({pin.size} leaves) is newer than the "
                                              f"bundle's ({cp.size}): the bundle's log is older or was cut back"))
    elif pin.size == cp.size:
        if pin.root != cp.root:
            report.failures.append(Failure(where, f"history was rewritten: the pinned checkpoint and the bundle's "
                                                  f"have the same size {cp.size} and different roots"))
    else:
        entry = (_json(members.get(where, b"{}"), where).get("from") or {}).get(str(pin.size))
        if not entry:
            report.failures.append(Failure(where, f"the bundle carries no consistency proof from the pinned size "
                                                  f"{pin.size} to {cp.size}, so it cannot show the log only grew"))
            return
        proof = _hashes(entry.get("proof"))
        if proof is None or not merkle.verify_consistency(pin.size, cp.size, pin.root, cp.root, proof):
            report.failures.append(Failure(where, f"history was rewritten: the checkpoint of {cp.size} leaves is not "
                                                  f"an append-only extension of the pinned one of {pin.size}"))


def _hashes(value: Any) -> list[bytes] | None:
    if not isinstance(value, list):
        return None
    try:
        return [bytes.fromhex(h) for h in value]
    except (TypeError, ValueError):
        return None


def _erasures(members: dict[str, bytes], report: BundleReport) -> dict[str, dict[str, Any]]:
    raw = members.get("erasures.json")
    if raw is None:
        return {}
    entries = _json(raw, "erasures.json")
    if not isinstance(entries, list):
        report.failures.append(Failure("erasures.json", "is not a list of erasure entries"))
        return {}
    report.erasures = [e for e in entries if isinstance(e, dict)]
    return {e.get("digest"): e for e in report.erasures}


def _execution(members: dict[str, bytes], eid: str, cp: Checkpoint | None, erasures: dict[str, dict[str, Any]],
               seen_blobs: dict[str, bool], report: BundleReport, named: set[str]) -> None:
    base = f"executions/{eid}/"
    events_file = base + "events.jsonl"
    raw = members.get(events_file)
    if raw is None:
        report.failures.append(Failure(events_file, "the execution's events are missing", eid))
        return
    bodies = raw.split(b"\n")
    if bodies[-1] != b"":
        report.failures.append(Failure(events_file, "the last line does not end in a newline (cut short?)", eid))
    else:
        bodies.pop()
    digests = sorted({m.decode() for b in bodies for m in _BLOB.findall(b)})
    versions = sorted({m.decode() for b in bodies for m in _GV.findall(b)})
    named.update(f"blobs/{d.removeprefix('sha256:')}" for d in digests)
    named.update(f"governance/{v}.json" for v in versions)
    hashes, problem = chain_from_bodies(eid, bodies)
    report.events += len(hashes)
    if problem is not None:
        report.failures.append(Failure(events_file, problem.message, eid, problem.seq))
        return
    if not bodies:
        report.failures.append(Failure(events_file, "the execution has no events", eid))
        return
    ended = [i for i, b in enumerate(bodies) if b.find(_ENDED, b.rfind(_TYPE)) >= 0]
    if not ended:
        report.failures.append(Failure(events_file, f"the execution stops at seq {len(bodies) - 1} without "
                                                    "execution.ended: it was truncated", eid, len(bodies) - 1))
        return
    if ended[0] != len(bodies) - 1:
        report.failures.append(Failure(events_file, f"seq {ended[0] + 1} follows the seal (execution.ended at seq "
                                                    f"{ended[0]}): nothing may follow a seal", eid, ended[0] + 1))
        return
    try:
        first = orjson.loads(bodies[0])
    except orjson.JSONDecodeError:
        report.failures.append(Failure(events_file, "seq 0 is not JSON (it was damaged)", eid, 0))
        return
    try:
        last = orjson.loads(bodies[-1])
    except orjson.JSONDecodeError:
        report.failures.append(Failure(events_file, f"seq {len(bodies) - 1} is not JSON (it was damaged)", eid,
                                       len(bodies) - 1))
        return
    if not isinstance(first.get("attrs"), dict) or not isinstance(last.get("attrs"), dict):
        report.failures.append(Failure(events_file, "an event has no attrs object (it was damaged)", eid))
        return
    root = root_from_leaf_hashes([_sha256(b"\x00" + h).digest() for h in hashes])
    entry = ledger_entry(
        execution_id=eid, status=last["attrs"].get("status"), event_count=len(bodies), events_root=root,
        last_hash=hashes[-1], governance_version=first["attrs"].get("governance_version"), sealed_at=last["ts"],
    )
    _record(members, eid, len(bodies), root, hashes[-1], report)
    _leaf(members, eid, entry, cp, report)
    for digest in digests:
        ok = seen_blobs.get(digest)
        if ok is None:
            ok = seen_blobs[digest] = _blob(members, digest, erasures, report)
        if not ok:
            report.failures.append(Failure(f"blobs/{digest.removeprefix('sha256:')}",
                                           f"blob {digest} is missing and no erasure of it is recorded", eid))
    for vid in versions:
        name = f"governance/{vid}.json"
        doc = members.get(name)
        if doc is None:
            report.failures.append(Failure(name, f"governance version {vid} the execution names is missing", eid))
        elif _sha256(doc).hexdigest()[:16] != vid[3:]:
            report.failures.append(Failure(name, f"governance document {vid} was edited: it hashes to "
                                                 f"gv_{_sha256(doc).hexdigest()[:16]}", eid))


def _blob(members: dict[str, bytes], digest: str, erasures: dict[str, dict[str, Any]], report: BundleReport) -> bool:
    name = f"blobs/{digest.removeprefix('sha256:')}"
    data = members.get(name)
    if data is None:
        return digest in erasures
    if "sha256:" + _sha256(data).hexdigest() != digest:
        report.failures.append(Failure(name, f"blob {digest} was changed: its bytes hash to something else"))
    return True


def _leaf(members: dict[str, bytes], eid: str, entry: bytes, cp: Checkpoint | None, report: BundleReport) -> None:
    name = f"executions/{eid}/proof.json"
    raw = members.get(name)
    if raw is None:
        report.failures.append(Failure(name, "the execution's inclusion proof is missing", eid))
        return
    try:
        proof = orjson.loads(raw)
        stated = proof["entry"].encode()
        index, size, path = proof["index"], proof["tree_size"], _hashes(proof["proof"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        report.failures.append(Failure(name, "the inclusion proof is malformed", eid))
        return
    if stated != entry:
        report.failures.append(Failure(name, f"the ledger leaf does not match the events: {_diff(stated, entry)}", eid))
    if cp is None:
        return
    if size != cp.size:
        report.failures.append(Failure(name, f"the proof is for a tree of {size} leaves, the checkpoint has {cp.size}",
                                       eid))
    elif path is None or not merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, path, cp.root):
        report.failures.append(Failure(name, "the execution's ledger leaf (rebuilt from its events) is not in the "
                                             "signed tree: its inclusion proof does not reach the checkpoint root",
                                       eid))


def _diff(stated: bytes, rebuilt: bytes) -> str:
    try:
        a, b = orjson.loads(stated), orjson.loads(rebuilt)
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return f"{', '.join(keys)} differ (the events were cut, extended or changed)"
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return "the stated leaf is not JSON"


def _record(members: dict[str, bytes], eid: str, count: int, root: bytes, last: bytes, report: BundleReport) -> None:
    name = f"executions/{eid}/record.json"
    raw = members.get(name)
    if raw is None:
        report.failures.append(Failure(name, "the execution's record is missing", eid))
        return
    try:
        seal = orjson.loads(raw)["seal"] or {}
    except (orjson.JSONDecodeError, KeyError, TypeError):
        report.failures.append(Failure(name, "the record is malformed", eid))
        return
    if seal.get("event_count") != count:
        report.failures.append(Failure(name, f"the seal counts {seal.get('event_count')} events, {count} are in "
                                             "events.jsonl (the execution was truncated or extended)", eid))
    elif seal.get("last_hash") != last.hex():
        report.failures.append(Failure(name, f"seq {count - 1} was changed: it does not hash to the seal's "
                                             "last_hash", eid, count - 1))
    elif seal.get("events_root") != root.hex():
        report.failures.append(Failure(name, "the seal's events_root is not the Merkle root of the events", eid))
