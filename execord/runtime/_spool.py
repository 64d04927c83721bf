"""The local spool of server mode: every event is appended here and fsynced before the
governed action runs (DESIGN §6), then shipped in the background.

One file per process, ``<dir>/<host>-<pid>-<start>.spool``, held with an exclusive
``flock`` while the process lives. A file nobody holds belongs to a process that died: the
next process on the host ships it and removes it. Each record is framed
(magic, length, CRC-32) so a write torn by a crash is recognised and ignored; how far a file
was shipped is kept beside it in ``.ack`` (re-shipping is harmless: ingest is idempotent on
(execution_id, seq)).
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("execord")

_MAGIC = b"ES"
_HEAD = struct.Struct(">2sII")  # magic, payload length, crc32
WARN_FRACTION = 0.8


class SpoolFull(Exception):
    """The spool reached its size bound: the server has been unreachable too long."""


def read_records(path: str | os.PathLike[str], offset: int, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """The whole records of a spool file after ``offset``: (end offset, payload), at most
    ``max_bytes`` of payload (always at least one record); a torn tail is skipped."""
    with open(path, "rb") as f:
        f.seek(offset)
        used = 0
        while used < max_bytes:
            head = f.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return
            magic, length, crc = _HEAD.unpack(head)
            payload = f.read(length)
            if magic != _MAGIC or len(payload) < length or zlib.crc32(payload) != crc:
                return  # torn or foreign: nothing after it is trusted
            offset += _HEAD.size + length
            used += length
            yield offset, payload


def read_ack(path: str | os.PathLike[str]) -> int:
    """How far a spool file was shipped (0 when never)."""
    try:
        return int(Path(f"{path}.ack").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_ack(path: str | os.PathLike[str], offset: int) -> None:
    tmp = f"{path}.ack.tmp"
    with open(tmp, "w") as f:
        f.write(str(offset))
    os.replace(tmp, f"{path}.ack")


class Spool:
    """This process's spool file.

    Args:
        directory: where spool files of this server and key live.
        max_bytes: the bound; an append past it raises `SpoolFull`.
        name: the file's name (``<host>-<pid>-<start>``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, max_bytes: int, name: str):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.dir / f"{name}.spool"
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        if self.path.exists():
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            # Locked under a temporary name, then renamed: no other process can ever see
            # this file unlocked and take it for an orphan.
            tmp = self.dir / f".{name}.new"
            self._fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, self.path)
        self.size = os.fstat(self._fd).st_size
        self.shipped = min(read_ack(self.path), self.size)
        self._warned = False
        self._unsynced = False
        self.changed = threading.Event()

    def sync(self) -> None:
        """fdatasync what was appended without it (``spool_fsync="interval"``)."""
        with self.lock:
            if self._unsynced:
                os.fdatasync(self._fd)
                self._unsynced = False

    def append(self, payload: bytes, *, sync: bool = True) -> None:
        """Append one record; with ``sync`` (the default) fdatasync it first, so that when
        this returns it survives a crash of the machine. Without, it survives a crash of the
        process (the bytes are in the kernel) and `sync` makes it durable later."""
        record = _HEAD.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload
        with self.lock:
            if self.size + len(record) - self.shipped > self.max_bytes:
                raise SpoolFull(
                    f"the spool {self.path} holds {self.size - self.shipped} unshipped bytes, its bound is "
                    f"{self.max_bytes} (EXECORD_SPOOL_MAX_BYTES): the server has been unreachable too long"
                )
            os.write(self._fd, record)
            if sync:
                os.fdatasync(self._fd)
            else:
                self._unsynced = True
            self.size += len(record)
            pending = self.size - self.shipped
        if not self._warned and pending > WARN_FRACTION * self.max_bytes:
            self._warned = True
            log.warning("execord spool %s is %d%% full (%d of %d bytes unshipped); is the server reachable?",
                        self.path, 100 * pending // self.max_bytes, pending, self.max_bytes)
        self.changed.set()

    def pending(self) -> int:
        """Bytes appended but not yet shipped."""
        with self.lock:
            return self.size - self.shipped

    def ack(self, offset: int) -> None:
        """Everything up to ``offset`` reached the server; reclaim the file once all did."""
        with self.lock:
            self.shipped = max(self.shipped, offset)
            if self.shipped >= self.size:
                # Nothing unshipped: start the file over so it never grows past one outage.
                os.ftruncate(self._fd, 0)
                self.size = self.shipped = 0
                self._warned = False
            write_ack(self.path, self.shipped)

    def records(self, max_bytes: int) -> Iterator[tuple[int, bytes]]:
        """The unshipped records, up to ``max_bytes``."""
        with self.lock:
            start, end = self.shipped, self.size
        for offset, payload in read_records(self.path, start, max_bytes):
            if offset > end:
                return
            yield offset, payload

    def close(self) -> None:
        """Release the file (what is unshipped stays for the next process)."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        except OSError:
            pass


def orphans(directory: str | os.PathLike[str], own: Path | None) -> list[Path]:
    """Spool files in ``directory`` that no live process holds, oldest first."""
    found = []
    for path in sorted(Path(directory).glob("*.spool"), key=lambda p: p.stat().st_mtime):
        if own is not None and path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its process is alive
        found.append(path)
        # Keep holding it (the fd stays open) so two processes never ship one orphan twice.
        _HELD[str(path)] = fd
    return found


_HELD: dict[str, int] = {}


def release_orphan(path: Path) -> None:
    """An orphan fully shipped: remove it and its ack."""
    for p in (path, Path(f"{path}.ack")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    fd = _HELD.pop(str(path), None)
    if fd is not None:
        os.close(fd)
