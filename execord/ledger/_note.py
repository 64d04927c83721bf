"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519, and C2SP checkpoints
(https://c2sp.org/tlog-checkpoint).

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key id ‖ signature)>``. The key id is the first four bytes of
SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key); 0x01 is the Ed25519 signature type. Keys are
written as the Go ``sumdb/note`` tools write them:

- verifier key: ``<name>+<hex key id>+<base64(0x01 ‖ 32-byte public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ 32-byte seed)>``

A checkpoint body is the origin line, the tree size in decimal, the base64 root hash, and
optional extension lines; Execord signs it with the key named as the origin.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# `cryptography.hazmat.primitives.serialization` (imported where a key is written) costs a
# verifier's start more than Ed25519 itself, and checking a signature never needs it.

ED25519 = 0x01
DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_NAME = re.compile(r"[^\s+]+")


class NoteError(ValueError):
    """A note, key or checkpoint that is malformed or does not verify; the message says which."""


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 note key (c2sp.org/signed-note)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > 256:
        raise NoteError(f"key name {name!r} is not usable: it must be non-empty, at most 256 "
                        "characters, with no spaces and no '+' (for example example.com/execord)")
    return name


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier key: checks the signature lines made by its `Signer`."""

    name: str
    public: bytes

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    @classmethod
    def parse(cls, text: str) -> Verifier:
        """Read ``<name>+<hex key id>+<base64(0x01 ‖ public key)>``."""
        text = text.strip()
        parts = text.split("+")
        if len(parts) < 3 or text.startswith("PRIVATE+KEY+"):
            raise NoteError("not a verifier key: expected <name>+<hex key id>+<base64 key> "
                            "(the .pub file `execord ledger keygen` writes)")
        name, hex_id, raw = parts[0], parts[1], "+".join(parts[2:])
        _check_name(name)
        key = _b64(raw, "the verifier key")
        if len(key) != 33 or key[0] != ED25519:
            raise NoteError("the verifier key is not an Ed25519 note key (type 0x01, 32 bytes)")
        v = cls(name, key[1:])
        if len(hex_id) != 8 or hex_id.lower() != v.key_id.hex():
            raise NoteError(f"the verifier key's id {hex_id} does not match its name and key "
                            f"(expected {v.key_id.hex()})")
        return v

    def text(self) -> str:
        """The verifier key in its one-line text form."""
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public).decode()}"

    def open(self, note: str | bytes, what: Literal["checkpoint", "erasure"] = "checkpoint") -> str:
        """The text of ``note`` once a signature line of this key verifies over it
        (``what`` the note is, for the error: a checkpoint, an erasure).

        Raises:
            NoteError: the note is malformed, carries no signature of this key, or the
                signature does not verify.
        """
        text, sigs = split_note(note)
        found = False
        for name, blob in sigs:
            if name != self.name or blob[:4] != self.key_id:
                continue
            found = True
            try:
                Ed25519PublicKey.from_public_bytes(self.public).verify(blob[4:], text.encode())
                return text
            except (InvalidSignature, ValueError):
                continue
        if found:
            why = ("the erasure was changed after signing, or signed by another key" if what == "erasure"
                   else "the checkpoint was changed after signing, or signed by another key")
            raise NoteError(f"the signature of {self.name} does not verify: {why}")
        raise NoteError(f"the note carries no signature by key {self.name} ({self.key_id.hex()})")


@dataclass(frozen=True)
class Signer:
    """An Ed25519 note signer key."""

    name: str
    seed: bytes

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new random key named ``name`` (conventionally the log's origin)."""
        _check_name(name)
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return cls(name, raw)

    @classmethod
    def parse(cls, text: str) -> Signer:
        """Read ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>``."""
        text = text.strip()
        parts = text.split("+")
        if len(parts) < 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteError("not a signer key: expected PRIVATE+KEY+<name>+<hex id>+<base64 key> "
                            "(the .key file `execord ledger keygen` writes)")
        name, hex_id, raw = parts[2], parts[3], "+".join(parts[4:])
        _check_name(name)
        key = _b64(raw, "the signer key")
        if len(key) != 33 or key[0] != ED25519:
            raise NoteError("the signer key is not an Ed25519 note key (type 0x01, 32 bytes)")
        s = cls(name, key[1:])
        if hex_id.lower() != s.verifier.key_id.hex():
            raise NoteError(f"the signer key's id {hex_id} does not match its name and key")
        return s

    @property
    def verifier(self) -> Verifier:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = self._key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, public)

    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def text(self) -> str:
        """The signer key in its one-line text form (keep it secret)."""
        return (f"PRIVATE+KEY+{self.name}+{self.verifier.key_id.hex()}+"
                f"{base64.b64encode(bytes([ED25519]) + self.seed).decode()}")

    def sign(self, text: str) -> str:
        """``text`` (ending in a newline) as a signed note."""
        if not text.endswith("\n") or "\n\n" in text or "\r" in text:
            raise NoteError("a note's text must end in a newline and hold no blank line")
        sig = self._key().sign(text.encode())
        blob = base64.b64encode(self.verifier.key_id + sig).decode()
        return f"{text}\n{DASH} {self.name} {blob}\n"


def split_note(note: str | bytes) -> tuple[str, list[tuple[str, bytes]]]:
    """(text, [(key name, key id ‖ signature)]) of a note; `NoteError` if malformed."""
    if isinstance(note, bytes | bytearray):
        if len(note) > MAX_NOTE_BYTES:
            raise NoteError(f"the note is larger than {MAX_NOTE_BYTES} bytes")
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("the note is not UTF-8 text") from None
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"the note is larger than {MAX_NOTE_BYTES} bytes")
    at = note.rfind("\n\n")
    if at < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note: no blank line between its text and signatures")
    text, block = note[: at + 1], note[at + 2 :]
    sigs = []
    for line in block[:-1].split("\n"):
        m = re.fullmatch(rf"{DASH} ([^\s+]+) ([A-Za-z0-9+/=]+)", line)
        if not m:
            raise NoteError(f"malformed signature line {line[:80]!r}")
        blob = _b64(m.group(2), "a signature")
        if len(blob) < 5:
            raise NoteError("a signature line is too short")
        sigs.append((m.group(1), blob))
    if not sigs or len(sigs) > MAX_SIGNATURES:
        raise NoteError("a note needs between 1 and 100 signature lines")
    return text, sigs


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP checkpoint: the log's origin, its size and its root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint text that is signed."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint body; `NoteError` when a line is malformed."""
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "":
            raise NoteError("a checkpoint has an origin, a size and a root hash line, each ending in a newline")
        origin, size, root, *ext = lines[:-1]
        if not origin or origin != origin.strip():
            raise NoteError("the checkpoint's origin line is empty or padded")
        if not re.fullmatch(r"0|[1-9][0-9]{0,19}", size):
            raise NoteError(f"the checkpoint's tree size {size[:30]!r} is not a decimal number")
        digest = _b64(root, "the checkpoint's root hash")
        if len(digest) != 32:
            raise NoteError("the checkpoint's root hash is not 32 bytes")
        if any(not e for e in ext):
            raise NoteError("a checkpoint extension line is empty")
        return cls(origin, int(size), digest, tuple(ext))


def open_checkpoint(note: str | bytes, verifier: Verifier) -> Checkpoint:
    """Verify a signed checkpoint with ``verifier`` and parse it.

    Raises:
        NoteError: the signature does not verify, the body is malformed, or its origin is
            not the key's name.
    """
    cp = Checkpoint.parse(verifier.open(note))
    if cp.origin != verifier.name:
        raise NoteError(f"the checkpoint's origin {cp.origin!r} is not the key's name {verifier.name!r}")
    return cp
