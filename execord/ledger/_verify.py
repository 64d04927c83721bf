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

import base64
import contextlib
import hashlib
import mmap
import multiprocessing
import os
import re
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..record import chain_from_bodies, ledger_entry
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


_TOP = ("manifest.json", "checkpoint.txt", "ledger.pub", "consistency.json", "erasures.json", "blobs.jsonl")
_PER_EXECUTION = ("events.jsonl", "record.json")


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


class Members(Mapping[str, bytes]):
    """A bundle's members by name, each inflated when first read, with limits (never extracted).

    `zipfile` parses the central directory (zip64 included) and every name is checked up
    front; a member is then inflated straight from a memory map of the file, which costs a
    fraction of `ZipFile.open`: in a bundle of 10,000 executions that overhead was half of
    the verification. Forked workers read their own share through the same map.
    """

    def __init__(self, infos: dict[str, zipfile.ZipInfo], view: Any):
        self.infos = infos
        self._view = view
        self._cache: dict[str, bytes] = {}
        self._total = 0

    def __getitem__(self, name: str) -> bytes:
        data = self._cache.get(name)
        if data is None:
            data = _inflate(self._view, self.infos[name], min(MAX_MEMBER_BYTES, MAX_TOTAL_BYTES - self._total))
            self._total += len(data)
            self._cache[name] = data
        return data

    def __contains__(self, name: object) -> bool:
        return name in self.infos

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)


@contextlib.contextmanager
def open_members(path: str) -> Iterator[Members]:
    """The members of a bundle zip; `BundleUnusable` when it is not a safe, readable zip."""
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise BundleUnusable(f"no file at {path}") from None
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise BundleUnusable(f"{path} is not a bundle (not a readable zip file: {exc})") from None
    with z, open(path, "rb") as fh:
        all_infos = z.infolist()
        if len(all_infos) > MAX_MEMBERS:
            raise BundleUnusable(f"the bundle has {len(all_infos):,} members, over the limit of {MAX_MEMBERS:,}")
        infos: dict[str, zipfile.ZipInfo] = {}
        for info in all_infos:
            name = info.filename
            if name.endswith("/"):
                continue  # a directory entry holds nothing
            _check_name(name)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BundleUnusable(f"the bundle member {name} is a symbolic link: refused")
            if name in infos:
                raise BundleUnusable(f"the bundle holds {name} twice: refused (which copy is the record?)")
            infos[name] = info
        if not os.fstat(fh.fileno()).st_size:
            yield Members(infos, b"")
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
            yield Members(infos, view)


def read_members(path: str) -> dict[str, bytes]:
    """Every member of a bundle zip, read into memory with the limits of `Members`."""
    with open_members(path) as members:
        return {name: members[name] for name in members}


def _inflate(view: Any, info: zipfile.ZipInfo, cap: int) -> bytes:
    """One member's bytes, refusing more than ``cap`` or a ratio past `MAX_RATIO`."""
    at = info.header_offset
    header = view[at:at + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise BundleUnusable(f"the bundle member {info.filename} has no local header where the directory says")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    start = at + 30 + name_len + extra_len
    raw = view[start:start + info.compress_size]
    if len(raw) != info.compress_size:
        raise BundleUnusable(f"the bundle member {info.filename} is cut short")
    if info.flag_bits & 0x1:
        raise BundleUnusable(f"the bundle member {info.filename} is encrypted: refused")
    declared = info.file_size
    if declared > cap or (declared > 8 << 20 and declared > MAX_RATIO * max(info.compress_size, 1)):
        raise BundleUnusable(f"the bundle member {info.filename} would expand to {declared:,} bytes from "
                             f"{info.compress_size:,} compressed (a decompression bomb?): refused")
    if info.compress_type == zipfile.ZIP_STORED:
        data = bytes(raw)
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        # Never more than the (checked) declared size plus one byte: a member whose header
        # understates what it inflates to stops there, and fails the size check below.
        d = zlib.decompressobj(-15)
        try:
            data = d.decompress(raw, declared + 1)
        except zlib.error as exc:
            raise BundleUnusable(f"the bundle member {info.filename} cannot be read: {exc}") from None
    else:
        raise BundleUnusable(f"the bundle member {info.filename} uses compression method {info.compress_type}; "
                             "bundles use deflate")
    n = len(data)
    if n != info.file_size or zlib.crc32(data) != info.CRC:
        raise BundleUnusable(f"the bundle member {info.filename} is damaged: its size or CRC is not the zip's")
    return data


def _json(data: bytes, name: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BundleUnusable(f"{name} is not JSON") from None


def _checkpoint(members: Mapping[str, bytes], key: Verifier | None, report: BundleReport) -> Checkpoint | None:
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
    with open_members(path) as members:
        report = _verify_members(path, members, key, pinned)
    report.seconds = time.perf_counter() - t0
    return report


def _verify_members(path: str, members: Members, key: Verifier | None, pinned: bytes | None) -> BundleReport:
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
    per_execution = {f"executions/{eid}/{f}" for eid in ids for f in _PER_EXECUTION}
    _files(members, listed, report, skip=per_execution)  # the workers check those as they read them
    cp = _checkpoint(members, key, report)
    report.checkpoint = cp
    if pinned is not None and cp is not None:
        _pinned(members, pinned, key, cp, report)
    erasures = _erasures(members, report)
    blobs = _blobs(members, report)
    _SHARED.update(members=members, checkpoint=cp, erasures=erasures, blobs=blobs, listed=listed)
    try:
        named = _check_executions(ids, report)
    finally:
        _SHARED.clear()
    for digest in sorted(blobs.keys() - {n[5:] for n in named if n.startswith("blob:")}):
        report.failures.append(Failure("blobs.jsonl", f"blob {digest[:80]} belongs to no execution of the manifest, "
                                                      "so nothing checks it (added after export)"))
    checked = set(_TOP) | named | per_execution
    for name in sorted(set(members) - checked):
        if _content_addressed(name, members[name]):
            continue  # a document no longer named (its events were cut) proves nothing either way
        if name in listed:  # unlisted ones are reported by _files already
            report.failures.append(Failure(name, "belongs to no execution of the manifest, so nothing checks it "
                                                 "(added after export)"))
    report.executions = len(ids)
    return report


def _content_addressed(name: str, data: bytes) -> bool:
    digest = _sha256(data).hexdigest()
    return name.startswith("governance/gv_") and name == f"governance/gv_{digest[:16]}.json"


def _files(members: Members, listed: dict[str, Any], report: BundleReport, *, skip: set[str]) -> None:
    """Missing and added files by name; the digest of every listed file not in ``skip``."""
    for name in sorted(listed):
        if name not in members:
            report.failures.append(Failure(name, "listed in the manifest but missing from the bundle (removed)"))
        elif name not in skip and not _digest_ok(listed[name], members[name]):
            report.failures.append(Failure(name, "changed after export: its SHA-256 is not the manifest's"))
    for name in sorted(members.keys() - listed.keys() - {"manifest.json"}):
        report.failures.append(Failure(name, "not listed in the manifest (added after export)"))


def _digest_ok(stated: Any, data: bytes) -> bool:
    return stated == "sha256:" + _sha256(data).hexdigest()


def _pinned(members: Mapping[str, bytes], pinned: bytes, key: Verifier | None, cp: Checkpoint,
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


def _erasures(members: Mapping[str, bytes], report: BundleReport) -> dict[str, dict[str, Any]]:
    raw = members.get("erasures.json")
    if raw is None:
        return {}
    entries = _json(raw, "erasures.json")
    if not isinstance(entries, list):
        report.failures.append(Failure("erasures.json", "is not a list of erasure entries"))
        return {}
    report.erasures = [e for e in entries if isinstance(e, dict)]
    return {e.get("digest"): e for e in report.erasures}


def _blobs(members: Mapping[str, bytes], report: BundleReport) -> dict[str, bytes | None]:
    """digest → bytes of each blob line in blobs.jsonl (None when the line is damaged)."""
    raw = members.get("blobs.jsonl")
    out: dict[str, bytes | None] = {}
    if not raw:
        return out
    for n, line in enumerate(raw.split(b"\n")[:-1] if raw.endswith(b"\n") else raw.split(b"\n")):
        try:
            item = orjson.loads(line)
            digest = item["digest"]
            data = item["data"].encode() if "data" in item else base64.b64decode(item["data_base64"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            report.failures.append(Failure("blobs.jsonl", f"line {n + 1} is not a blob entry (damaged)"))
            continue
        if not isinstance(digest, str) or "sha256:" + _sha256(data).hexdigest() != digest:
            report.failures.append(Failure("blobs.jsonl", f"line {n + 1}: blob {str(digest)[:80]} was changed: its "
                                                          "bytes hash to something else"))
            out[str(digest)] = None
            continue
        if item.get("size") != len(data) or item.get("type") not in ("json", "text"):
            report.failures.append(Failure("blobs.jsonl", f"line {n + 1}: blob {digest[:80]} states a size or "
                                                          "type that is not its data's"))
        out[digest] = data
    return out


# What the workers share (set before they fork, so nothing is copied or pickled).
_SHARED: dict[str, Any] = {}
_PARALLEL_MIN = 500  # executions: fewer are verified in this process


def _verify_ids(ids: list[str]) -> tuple[int, list[Failure], set[str]]:
    """Check these executions against `_SHARED`; (events verified, failures, files named)."""
    members, cp = _SHARED["members"], _SHARED["checkpoint"]
    erasures, blobs = _SHARED["erasures"], _SHARED["blobs"]
    failures: list[Failure] = []
    named: set[str] = set()
    events = 0
    for eid in ids:
        events += _execution(members, eid, cp, erasures, blobs, failures, named)
    return events, failures, named


def _check_executions(ids: list[str], report: BundleReport) -> set[str]:
    workers = min(os.cpu_count() or 1, 8)
    if len(ids) < _PARALLEL_MIN or workers < 2 or "fork" not in multiprocessing.get_all_start_methods() \
            or threading.active_count() > 1:
        parts = [_verify_ids(ids)]
    else:
        # Forked workers see the members in memory as they are; each checks a share of the
        # executions and sends back only counts and failures.
        chunks = [ids[k::workers] for k in range(workers)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            parts = list(pool.map(_verify_ids, chunks))
    named: set[str] = set()
    for events, failures, names in parts:
        report.events += events
        report.failures.extend(failures)
        named |= names
    order = {eid: n for n, eid in enumerate(ids)}
    report.failures.sort(key=lambda f: (f.execution_id is not None, order.get(f.execution_id or "", -1)))
    return named


def _execution(members: Mapping[str, bytes], eid: str, cp: Checkpoint | None, erasures: dict[str, dict[str, Any]],
               blobs: dict[str, bytes | None], failures: list[Failure], named: set[str]) -> int:
    """Check one execution; append what fails; return how many of its events chained."""
    base = f"executions/{eid}/"
    events_file = base + "events.jsonl"
    listed = _SHARED["listed"]
    for name in (events_file, base + "record.json"):
        if name in listed and name in members and not _digest_ok(listed[name], members[name]):
            failures.append(Failure(name, "changed after export: its SHA-256 is not the manifest's"))
    record = _parse_record(members, eid)
    if isinstance(record, dict) and isinstance(record.get("blobs"), list):
        named.update(f"blob:{d}" for d in record["blobs"] if isinstance(d, str))
    if events_file not in members:
        failures.append(Failure(events_file, "the execution's events are missing", eid))
        return 0
    raw = members[events_file]
    bodies = raw.split(b"\n")
    if bodies[-1] != b"":
        failures.append(Failure(events_file, "the last line does not end in a newline (cut short?)", eid))
    else:
        bodies.pop()
    digests = sorted({m.decode() for m in _BLOB.findall(raw)})
    versions = sorted({m.decode() for m in _GV.findall(raw)})
    named.update(f"governance/{v}.json" for v in versions)
    named.update(f"blob:{d}" for d in digests)
    hashes, problem = chain_from_bodies(eid, bodies)
    if problem is not None:
        failures.append(Failure(events_file, problem.message, eid, problem.seq))
        return len(hashes)
    n = len(bodies)
    if not n:
        failures.append(Failure(events_file, "the execution has no events", eid))
        return 0
    # execution.ended is the last event, and only the last: the type is the last key but "v".
    ended = [i for i, b in enumerate(bodies) if _ENDED in b[-60:]]
    if not ended:
        failures.append(Failure(events_file, f"the execution stops at seq {n - 1} without "
                                             "execution.ended: it was truncated", eid, n - 1))
        return n
    if ended[0] != n - 1:
        failures.append(Failure(events_file, f"seq {ended[0] + 1} follows the seal (execution.ended at seq "
                                             f"{ended[0]}): nothing may follow a seal", eid, ended[0] + 1))
        return n
    try:
        first, last = orjson.loads(bodies[0]), orjson.loads(bodies[-1])
        status, gv, sealed_at = last["attrs"].get("status"), first["attrs"].get("governance_version"), last["ts"]
    except orjson.JSONDecodeError:
        failures.append(Failure(events_file, f"seq {0 if _not_json(bodies[0]) else n - 1} is not JSON (it was "
                                             "damaged)", eid, 0 if _not_json(bodies[0]) else n - 1))
        return n
    except (KeyError, TypeError, AttributeError):
        failures.append(Failure(events_file, "an event has no attrs object or ts (it was damaged)", eid))
        return n
    level = [_sha256(b"\x00" + h).digest() for h in hashes]  # RFC 6962, inline: this runs per execution
    while len(level) > 1:
        odd = [level[-1]] if len(level) & 1 else []
        level = [_sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)] + odd
    root = level[0]
    entry = ledger_entry(execution_id=eid, status=status, event_count=n, events_root=root, last_hash=hashes[-1],
                         governance_version=gv, sealed_at=sealed_at)
    _record(record, eid, n, root, hashes[-1], entry, cp, failures)
    for digest in digests:
        if digest in blobs:
            continue  # present (a changed one is reported once, from blobs.jsonl)
        if digest not in erasures:
            failures.append(Failure("blobs.jsonl", f"blob {digest} is missing and no erasure of it is recorded", eid))
    for vid in versions:
        name = f"governance/{vid}.json"
        doc = members.get(name)
        if doc is None:
            failures.append(Failure(name, f"governance version {vid} the execution names is missing", eid))
        elif _sha256(doc).hexdigest()[:16] != vid[3:]:
            failures.append(Failure(name, f"governance document {vid} was edited: it hashes to "
                                          f"gv_{_sha256(doc).hexdigest()[:16]}", eid))
    return n


def _not_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
        return False
    except orjson.JSONDecodeError:
        return True


def _diff(stated: bytes, rebuilt: bytes) -> str:
    try:
        a, b = orjson.loads(stated), orjson.loads(rebuilt)
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return f"{', '.join(keys)} differ (the events were cut, extended or changed)"
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return "the stated leaf is not JSON"


def _parse_record(members: Mapping[str, bytes], eid: str) -> Any:
    """record.json of an execution: its parsed object, None when missing, ... when not JSON."""
    raw = members.get(f"executions/{eid}/record.json")
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ...


def _record(record: Any, eid: str, count: int, root: bytes, last: bytes, entry: bytes,
            cp: Checkpoint | None, failures: list[Failure]) -> None:
    """The seal and the ledger leaf in record.json against the events, and the leaf's inclusion proof."""
    name = f"executions/{eid}/record.json"
    if record is None:
        failures.append(Failure(name, "the execution's record (its seal and inclusion proof) is missing", eid))
        return
    try:
        seal = record["seal"] or {}
        ledger = record["ledger"]
        stated = ledger["entry"].encode()
        index, size, path = ledger["index"], ledger["tree_size"], _hashes(ledger["proof"])
    except (KeyError, TypeError, AttributeError):
        failures.append(Failure(name, "the record is malformed (no seal, or no ledger leaf and proof)", eid))
        return
    if seal.get("event_count") != count:
        failures.append(Failure(name, f"the seal counts {seal.get('event_count')} events, {count} are in "
                                      "events.jsonl (the execution was truncated or extended)", eid))
    elif seal.get("last_hash") != last.hex():
        failures.append(Failure(name, f"seq {count - 1} was changed: it does not hash to the seal's last_hash",
                                eid, count - 1))
    elif seal.get("events_root") != root.hex():
        failures.append(Failure(name, "the seal's events_root is not the Merkle root of the events", eid))
    if stated != entry:
        failures.append(Failure(name, f"the ledger leaf does not match the events: {_diff(stated, entry)}", eid))
    if cp is None:
        return
    if size != cp.size:
        failures.append(Failure(name, f"the proof is for a tree of {size} leaves, the checkpoint has {cp.size}", eid))
    elif path is None or not isinstance(index, int) or \
            not merkle.verify_inclusion(merkle.leaf_hash(entry), index, cp.size, path, cp.root):
        failures.append(Failure(name, "the execution's ledger leaf (rebuilt from its events) is not in the signed "
                                      "tree: its inclusion proof does not reach the checkpoint root", eid))
