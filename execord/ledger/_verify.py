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
import os
import pickle
import re
import signal
import stat
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ..record import ledger_entry
from ..record._verify import chain_from_jsonl
from . import merkle
from ._bundle import BUNDLE_FORMAT, BUNDLE_VERSION
from ._erasure import check_erasure
from ._note import Checkpoint, NoteError, Verifier, open_checkpoint, split_note

MAX_MEMBERS = 2_000_000
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 8 << 30
MAX_RATIO = 200  # uncompressed : compressed, past 8 MiB: beyond it a member is taken for a decompression bomb
_BLOB = re.compile(rb'"\$blob":"(sha256:[0-9a-f]{64})"')
_GV = re.compile(rb'"governance_version":"(gv_[0-9a-f]{16})"')
_BLOB_KEY = b'"$blob":"'
_GV_KEY = b'"governance_version":"gv_'
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


class _Entry(NamedTuple):
    """What the verifier reads of a member's central directory entry (`zipfile.ZipInfo`'s names)."""

    filename: str
    header_offset: int
    compress_size: int
    file_size: int
    CRC: int  # noqa: N815 - ZipInfo's name
    compress_type: int
    flag_bits: int


_CD_ENTRY = struct.Struct("<4s4x2H4x3L3H4xLL")  # 46 bytes: the fields below, in order
_EOCD = struct.Struct("<4s4H2LH")  # 22 bytes
_NAMES_OK = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_DOT_PART = re.compile(r"(?:^|/)\.\.?(?:/|$)", re.M)


def _plain_directory(view: Any, size: int) -> dict[str, _Entry] | None:
    """The members of a plain zip (what `write_bundle` writes), from its central directory.

    None unless every check the reference path makes would pass: no archive comment, no
    zip64, no data before the first member, no directory entries, every name safe, no link,
    no name twice. `open_members` then reads it with `zipfile` and checks member by member,
    so an unusual zip gets exactly the verdict and message it got before; parsing 20,000
    entries here costs a fifth of what `zipfile` does.
    """
    if size < 22:
        return None
    sig, disk, cd_disk, here, total, cd_size, cd_offset, comment = _EOCD.unpack_from(view, size - 22)
    if (sig != b"PK\x05\x06" or comment or disk or cd_disk or here != total or total == 0xFFFF
            or cd_offset + cd_size != size - 22 or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF
            or total > MAX_MEMBERS or (size >= 42 and view[size - 42:size - 38] == b"PK\x06\x07")):
        return None
    infos: dict[str, _Entry] = {}
    unpack, at, end = _CD_ENTRY.unpack_from, cd_offset, size - 22
    for _ in range(total):
        if at + 46 > end:
            return None
        sig, flags, method, crc, csize, usize, nlen, xlen, clen, attr, offset = unpack(view, at)
        if sig != b"PK\x01\x02" or 0xFFFFFFFF in (csize, usize, offset) or stat.S_ISLNK(attr >> 16):
            return None
        raw = view[at + 46:at + 46 + nlen]
        at += 46 + nlen + xlen + clen
        if not raw.isascii():
            return None
        name = raw.decode("ascii")
        if name in infos:
            return None
        infos[name] = _Entry(name, offset, csize, usize, crc, method, flags)
    if at != end:
        return None
    names = "\n".join(infos)
    if not all(_NAMES_OK.fullmatch(line) for line in names.split("\n")) or _DOT_PART.search(names):
        return None
    return infos


class Members(Mapping[str, bytes]):
    """A bundle's members by name, each inflated when first read, with limits (never extracted).

    The central directory is read by `_plain_directory` (or by `zipfile`, zip64 included,
    for any other zip) and every name is checked up front; a member is then inflated (or,
    stored, copied) straight from a memory map of the file, which costs a fraction of
    `ZipFile.open`. Forked workers read their own share through the same map.
    """

    def __init__(self, infos: Mapping[str, Any], view: Any):
        self.infos = infos
        self._view = view
        self._cache: dict[str, bytes] = {}
        self._total = 0

    def __getitem__(self, name: str) -> bytes:
        data = self._cache.get(name)
        if data is None:
            data = self._cache[name] = self.read(name)
        return data

    def read(self, name: str) -> bytes:
        """A member's bytes, not kept (each execution's files are read once)."""
        data = _inflate(self._view, self.infos[name], min(MAX_MEMBER_BYTES, MAX_TOTAL_BYTES - self._total))
        self._total += len(data)
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
        fh = open(path, "rb")  # noqa: SIM115 - closed below, or handed to the reference path
    except FileNotFoundError:
        raise BundleUnusable(f"no file at {path}") from None
    except OSError:
        fh = None  # the reference path says what is wrong with it
    if fh is not None:
        with fh:
            size = os.fstat(fh.fileno()).st_size
            if size:
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    infos = _plain_directory(view, size)
                    if infos is not None:
                        yield Members(infos, view)
                        return
    with _open_with_zipfile(path) as members:
        yield members


@contextlib.contextmanager
def _open_with_zipfile(path: str) -> Iterator[Members]:
    """`open_members` for any zip: `zipfile` reads the directory, each member is checked in turn."""
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
    lines = _blob_lines(members.get("blobs.jsonl"))
    _SHARED.update(members=members, checkpoint=cp, erasures=erasures, listed=listed, lines=lines)
    try:
        parts = _check_executions(ids, len(lines))
    finally:
        _SHARED.clear()
    # Blob lines first, in line order (each share checked a stretch of them), then what the
    # executions found, in the manifest's order: top-level files before any execution, and
    # within one execution in the order it was checked.
    present: set[str] = set()
    keyed: list[tuple[tuple[int, int, int], Failure]] = []
    gov_named: set[str] = set()
    named_blobs: set[str] = set()
    all_refs: set[bytes] = set()
    reached_refs: set[bytes] = set()
    unreached: set[int] = set()
    for part in parts:
        report.failures.extend(part.blob_failures)
        present |= part.present
        keyed += part.failures
        report.events += part.events
        gov_named |= part.gov_named
        named_blobs |= part.blob_named
        all_refs |= part.all_refs
        reached_refs |= part.reached_refs
        unreached |= part.unreached
    named_blobs |= {d.decode() for d in all_refs}
    missing = {d for d in (r.decode() for r in reached_refs) if d not in present and d not in erasures}
    if missing:
        keyed += _missing_blobs(members, ids, unreached, missing)
    keyed.sort(key=lambda kf: kf[0])
    report.failures.extend(f for _, f in keyed)
    for digest in sorted(present - named_blobs):
        report.failures.append(Failure("blobs.jsonl", f"blob {digest[:80]} belongs to no execution of the manifest, "
                                                      "so nothing checks it (added after export)"))
    for digest in sorted(set(erasures) - named_blobs):
        report.failures.append(Failure("erasures.json", f"the erasure of blob {digest[:80]} belongs to no execution "
                                                        "of the manifest (added after export)"))
    checked = set(_TOP) | gov_named | per_execution
    for name in sorted(set(members.infos) - checked):
        if _content_addressed(name, members[name]):
            continue  # a document no longer named (its events were cut) proves nothing either way
        if name in listed:  # unlisted ones are reported by _files already
            report.failures.append(Failure(name, "belongs to no execution of the manifest, so nothing checks it "
                                                 "(added after export)"))
    report.executions = len(ids)
    return report


def _missing_blobs(members: Members, ids: list[str], unreached: set[int],
                   missing: set[str]) -> list[tuple[tuple[int, int, int], Failure]]:
    """Each referenced blob that is neither in blobs.jsonl nor erased, at the executions that
    refer to it (only when there is one: the shares report the digests, not who named them)."""
    out = []
    for i, eid in enumerate(ids):
        name = f"executions/{eid}/events.jsonl"
        if i in unreached or name not in members:
            continue
        for digest in sorted({m.decode() for m in _BLOB.findall(members.read(name))} & missing):
            out.append(((1, i, 1), Failure("blobs.jsonl", f"blob {digest} is missing and no erasure of it is "
                                                          "recorded", eid)))
    return out


def _content_addressed(name: str, data: bytes) -> bool:
    digest = _sha256(data).hexdigest()
    return name.startswith("governance/gv_") and name == f"governance/gv_{digest[:16]}.json"


def _files(members: Members, listed: dict[str, Any], report: BundleReport, *, skip: set[str]) -> None:
    """Missing and added files by name; the digest of every listed file not in ``skip``."""
    present = members.infos.keys()
    for name in sorted((listed.keys() - present) | ((listed.keys() - skip) & present)):
        if name not in present:
            report.failures.append(Failure(name, "listed in the manifest but missing from the bundle (removed)"))
        elif not _digest_ok(listed[name], members[name]):
            report.failures.append(Failure(name, "changed after export: its SHA-256 is not the manifest's"))
    for name in sorted(present - listed.keys() - {"manifest.json"}):
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
    usable = [e for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)]
    if len(usable) != len(entries):
        report.failures.append(Failure("erasures.json", "holds something that is not an erasure entry"))
    verifier = Verifier.parse(report.key) if report.key else None
    seen: dict[str, dict[str, Any]] = {}
    for e in usable:
        digest = e["digest"]
        if digest in seen:
            report.failures.append(Failure("erasures.json", f"lists blob {digest[:80]} twice"))
            continue
        seen[digest] = e  # even a failing entry: its blob is reported once, as this entry
        problem = check_erasure(e, verifier) if verifier is not None else None  # else the checkpoint failed
        if problem:
            report.failures.append(Failure("erasures.json", problem))
        else:
            report.erasures.append(e)  # listed as erased only once its signature holds
    return seen


def _blob_lines(raw: bytes | None) -> list[bytes]:
    if not raw:
        return []
    return raw.split(b"\n")[:-1] if raw.endswith(b"\n") else raw.split(b"\n")


def _blobs(lines: list[bytes], start: int, stop: int) -> tuple[set[str], list[Failure]]:
    """The digests of the blob lines [start, stop) that are blob entries (a changed blob is one
    too: it is reported here, once), and what is wrong with those lines."""
    present: set[str] = set()
    failures: list[Failure] = []
    for n in range(start, stop):
        try:
            item = orjson.loads(lines[n])
            digest = item["digest"]
            data = item["data"].encode() if "data" in item else base64.b64decode(item["data_base64"], validate=True)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            failures.append(Failure("blobs.jsonl", f"line {n + 1} is not a blob entry (damaged)"))
            continue
        if not isinstance(digest, str) or "sha256:" + _sha256(data).hexdigest() != digest:
            failures.append(Failure("blobs.jsonl", f"line {n + 1}: blob {str(digest)[:80]} was changed: its "
                                                   "bytes hash to something else"))
            present.add(str(digest))
            continue
        if item.get("size") != len(data) or item.get("type") not in ("json", "text"):
            failures.append(Failure("blobs.jsonl", f"line {n + 1}: blob {digest[:80]} states a size or "
                                                   "type that is not its data's"))
        present.add(digest)
    return present, failures


# What the workers share (set before they fork, so nothing is copied or pickled).
_SHARED: dict[str, Any] = {}
_PARALLEL_MIN = 500  # executions: fewer are verified in this process
_MEMO_MAX = 1 << 20  # node hashes kept per process for the inclusion proofs


@dataclass
class _Part:
    """What one share of the work found (sent back from a forked worker as one pickle)."""

    events: int = 0
    failures: list[tuple[tuple[int, int, int], Failure]] = field(default_factory=list)
    gov_named: set[str] = field(default_factory=set)
    blob_named: set[str] = field(default_factory=set)  # blobs the records name
    all_refs: set[bytes] = field(default_factory=set)  # blobs the events name
    reached_refs: set[bytes] = field(default_factory=set)  # ... of executions checked up to their blobs
    unreached: set[int] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    blob_failures: list[Failure] = field(default_factory=list)


def _verify_share(first: int, ids: list[str], lines: tuple[int, int]) -> _Part:
    """Check executions ``first``… (``ids``) and the blob lines in ``lines`` against `_SHARED`."""
    members, cp, erasures, listed = _SHARED["members"], _SHARED["checkpoint"], _SHARED["erasures"], _SHARED["listed"]
    part = _Part()
    part.present, part.blob_failures = _blobs(_SHARED["lines"], *lines)
    memo: dict[bytes, bytes] = {}
    docs: dict[str, str | None] = {}
    for i, eid in enumerate(ids, first):
        part.events += _execution(members, i, eid, cp, erasures, listed, part, memo, docs)
    return part


def _workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


def _check_executions(ids: list[str], lines: int) -> list[_Part]:
    workers = _workers()
    if len(ids) < _PARALLEL_MIN or workers < 2 or not hasattr(os, "fork") or threading.active_count() > 1:
        return [_verify_share(0, ids, (0, lines))]
    # Forked workers see the members in memory as they are. Each checks a run of consecutive
    # executions of about equal size (neighbours share the upper nodes of their inclusion
    # proofs) and a run of the blob lines; this process checks the first share itself.
    infos = _SHARED["members"].infos
    sizes = []
    for eid in ids:
        base = f"executions/{eid}/"
        sizes.append(sum(infos[n].file_size for n in (base + "events.jsonl", base + "record.json") if n in infos) + 64)
    total, cuts, acc = sum(sizes), [0], 0
    for i, size in enumerate(sizes):
        acc += size
        if acc * workers >= total * len(cuts) and len(cuts) < workers:
            cuts.append(i + 1)
    cuts += [len(ids)] * (workers + 1 - len(cuts))
    shares = [(cuts[k], ids[cuts[k]:cuts[k + 1]], (lines * k // workers, lines * (k + 1) // workers))
              for k in range(workers)]
    children = [_fork(share) for share in shares[1:]]
    try:
        parts = [_verify_share(*shares[0])]
        for share, child in zip(shares[1:], children, strict=True):
            parts.append(_collect(child, share))
    finally:
        for pid, fd in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return parts


def _fork(share: tuple[int, list[str], tuple[int, int]]) -> tuple[int, int]:
    """A forked worker checking ``share``: (its pid, the pipe its result comes through)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write)
        return pid, read
    try:  # the worker: send ("ok", part) or ("error", exception), then leave without cleanup
        os.close(read)
        try:
            result: tuple[str, Any] = ("ok", _verify_share(*share))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
            result = ("error", exc)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            data = pickle.dumps(("error", RuntimeError(f"a verifier worker failed: {exc}")))
        view = memoryview(data)
        while view:
            view = view[os.write(write, view):]
    finally:
        os._exit(0)


def _collect(child: tuple[int, int], share: tuple[int, list[str], tuple[int, int]]) -> _Part:
    """A worker's result; a worker that died without one has its share checked here."""
    pid, fd = child
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    if not chunks:
        return _verify_share(*share)
    status, value = pickle.loads(b"".join(chunks))
    if status == "error":
        raise value
    return value


def _execution(members: Members, i: int, eid: str, cp: Checkpoint | None, erasures: dict[str, dict[str, Any]],
               listed: dict[str, Any], part: _Part, memo: dict[bytes, bytes], docs: dict[str, str | None]) -> int:
    """Check execution number ``i``; record what fails in ``part``; return how many of its events chained."""
    out = part.failures

    def fail(file: str, message: str, seq: int | None = None, phase: int = 0) -> None:
        out.append(((1, i, phase), Failure(file, message, eid, seq)))

    base = f"executions/{eid}/"
    events_file, record_file = base + "events.jsonl", base + "record.json"
    infos = members.infos
    read: dict[str, bytes] = {}
    for name in (events_file, record_file):  # the listed ones first, in this order, as ever
        if name in listed and name in infos:
            data = read[name] = members.read(name)
            if listed[name] != "sha256:" + _sha256(data).hexdigest():
                out.append(((0, i, 0), Failure(name, "changed after export: its SHA-256 is not the manifest's")))
    for name in (record_file, events_file):
        if name not in read and name in infos:
            read[name] = members.read(name)
    record = _parse_record(read.get(record_file))
    if isinstance(record, dict) and isinstance(record.get("blobs"), list):
        part.blob_named.update(d for d in record["blobs"] if isinstance(d, str))
    raw = read.get(events_file)
    if raw is None:
        fail(events_file, "the execution's events are missing")
        part.unreached.add(i)
        return 0
    if raw and not raw.endswith(b"\n"):
        fail(events_file, "the last line does not end in a newline (cut short?)")
    found = set(_BLOB.findall(raw)) if _BLOB_KEY in raw else set()
    versions = sorted({m.decode() for m in _GV.findall(raw)}) if _GV_KEY in raw else []
    part.gov_named.update(f"governance/{v}.json" for v in versions)
    part.all_refs |= found
    bodies, hashes, problem = chain_from_jsonl(eid, raw)
    n = len(bodies)
    if problem is not None or not n:
        part.unreached.add(i)
        if problem is not None:
            fail(events_file, problem.message, problem.seq)
            return len(hashes)
        fail(events_file, "the execution has no events")
        return 0
    # execution.ended is the last event, and only the last: the type is the last key but "v".
    last = bodies[-1]
    if raw.count(_ENDED) == 1 and _ENDED in last[-60:]:
        ended = [n - 1]
    else:
        ended = [k for k, b in enumerate(bodies) if _ENDED in b[-60:]]
    if not ended or ended[0] != n - 1:
        part.unreached.add(i)
        if not ended:
            fail(events_file, f"the execution stops at seq {n - 1} without execution.ended: it was truncated", n - 1)
        else:
            fail(events_file, f"seq {ended[0] + 1} follows the seal (execution.ended at seq {ended[0]}): nothing "
                              "may follow a seal", ended[0] + 1)
        return n
    try:
        first, end = orjson.loads(bodies[0]), orjson.loads(last)
        status, gv, sealed_at = end["attrs"].get("status"), first["attrs"].get("governance_version"), end["ts"]
    except orjson.JSONDecodeError:
        at = 0 if _not_json(bodies[0]) else n - 1
        fail(events_file, f"seq {at} is not JSON (it was damaged)", at)
        part.unreached.add(i)
        return n
    except (KeyError, TypeError, AttributeError):
        fail(events_file, "an event has no attrs object or ts (it was damaged)")
        part.unreached.add(i)
        return n
    sha = _sha256
    level = [sha(b"\x00" + h).digest() for h in hashes]  # RFC 6962, inline: this runs per execution
    while len(level) > 1:
        pairs = [sha(b"\x01" + level[k] + level[k + 1]).digest() for k in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            pairs.append(level[-1])
        level = pairs
    root = level[0]
    entry = ledger_entry(execution_id=eid, status=status, event_count=n, events_root=root, last_hash=hashes[-1],
                         governance_version=gv, sealed_at=sealed_at)
    _record(record, eid, n, root, hashes[-1], entry, cp, fail, memo)
    # Each referenced blob must be in blobs.jsonl or erased: checked by `_verify_members` once
    # every share has read its blob lines (phase 1, before the governance documents).
    part.reached_refs |= found
    for vid in versions:
        name = f"governance/{vid}.json"
        if name not in docs:
            doc = members.get(name)
            docs[name] = None if doc is None else _sha256(doc).hexdigest()
        digest = docs[name]
        if digest is None:
            fail(name, f"governance version {vid} the execution names is missing", phase=2)
        elif digest[:16] != vid[3:]:
            fail(name, f"governance document {vid} was edited: it hashes to gv_{digest[:16]}", phase=2)
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


def _parse_record(raw: bytes | None) -> Any:
    """record.json of an execution: its parsed object, None when missing, ... when not JSON."""
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ...


def _record(record: Any, eid: str, count: int, root: bytes, last: bytes, entry: bytes,
            cp: Checkpoint | None, fail: Any, memo: dict[bytes, bytes]) -> None:
    """The seal and the ledger leaf in record.json against the events, and the leaf's inclusion proof."""
    name = f"executions/{eid}/record.json"
    if record is None:
        fail(name, "the execution's record (its seal and inclusion proof) is missing")
        return
    try:
        seal = record["seal"] or {}
        ledger = record["ledger"]
        stated = ledger["entry"].encode()
        index, size, path = ledger["index"], ledger["tree_size"], _hashes(ledger["proof"])
    except (KeyError, TypeError, AttributeError):
        fail(name, "the record is malformed (no seal, or no ledger leaf and proof)")
        return
    if seal.get("event_count") != count:
        fail(name, f"the seal counts {seal.get('event_count')} events, {count} are in "
                   "events.jsonl (the execution was truncated or extended)")
    elif seal.get("last_hash") != last.hex():
        fail(name, f"seq {count - 1} was changed: it does not hash to the seal's last_hash", count - 1)
    elif seal.get("events_root") != root.hex():
        fail(name, "the seal's events_root is not the Merkle root of the events")
    if stated != entry:
        fail(name, f"the ledger leaf does not match the events: {_diff(stated, entry)}")
    if cp is None:
        return
    if size != cp.size:
        fail(name, f"the proof is for a tree of {size} leaves, the checkpoint has {cp.size}")
    elif path is None or not _included(_sha256(b"\x00" + entry).digest(), index, cp.size, path, cp.root, memo):
        fail(name, "the execution's ledger leaf (rebuilt from its events) is not in the signed "
                   "tree: its inclusion proof does not reach the checkpoint root")


def _included(leaf: bytes, index: Any, size: int, proof: list[bytes], root: bytes, memo: dict[bytes, bytes]) -> bool:
    """`merkle.verify_inclusion`, with each node hash kept in ``memo``.

    The proofs of neighbouring leaves climb through the same upper nodes, so in a bundle of
    many executions most of their hashes are ones another proof computed already. A cached
    hash is the SHA-256 of exactly the same 65 bytes: what is checked does not change.
    """
    if (type(index) is not int or type(size) is not int or not 0 <= index < size or len(leaf) != 32
            or len(root) != 32 or any(len(p) != 32 for p in proof)):
        return False
    if len(memo) > _MEMO_MAX:
        memo.clear()
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = b"\x01" + p + r
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            node = b"\x01" + r + p
        r = memo.get(node)  # type: ignore[assignment]
        if r is None:
            r = memo[node] = _sha256(node).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
