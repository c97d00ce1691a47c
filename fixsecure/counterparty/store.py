"""Where a FIX session keeps its sequence numbers and every message it sent.

A FIX session must survive a crash without lying about sequence numbers: after a restart it has to
know the next number to send, the next one to expect, and be able to resend (or gap-fill) anything
the peer missed. :class:`FileStore` keeps all of that in one append-only log per session:

``MAGIC`` then records of ``[u32 length][u32 crc32(length bytes + payload)][payload]``, the payload
starting with a type byte:

- ``H`` creation time (f64), next sender and next target sequence numbers (u64, u64)
- ``M`` sequence number (u64) and a sent message; the next sender number becomes seq + 1
- ``S`` / ``T`` a new next sender / next target sequence number (u64)

Every record is self-checking, so a crash at any instant leaves a prefix of valid records followed
by at most one torn record, which :meth:`FileStore.open` detects and truncates: the state is then
exactly what it was after the last complete record. A reset writes a fresh file beside the old one
and renames it over it (after fsync), so a crash during a reset leaves either the old or the new
session, never a mix.

The fsync policy trades durability for speed:

- ``"always"`` (default): every record is written and fsynced before the call returns;
- ``"commit"``: records are buffered and written with one fsync per :meth:`commit` (the session
  commits once per call, before it hands back anything to send, so nothing is sent that a power
  failure could make the store forget);
- ``"never"``: as ``"commit"`` without fsync: safe against a process crash, not a power failure
  (benchmarks).

:class:`MemoryStore` has the same interface and keeps everything in memory (tests, PersistMessages
off, throwaway sessions).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Protocol, get_args

from fixsecure.errors import ConfigError

__all__ = [
    "FileStore",
    "FsyncPolicy",
    "MemoryStore",
    "MessageStore",
    "Recovery",
    "store_name",
]

FsyncPolicy = Literal["always", "commit", "never"]

MAGIC: Final = b"fixsecure message store v1\n"
_RECORD_HEADER: Final = struct.Struct("<II")
_U64: Final = struct.Struct("<Q")
_HEADER_BODY: Final = struct.Struct("<dQQ")
_MAX_RECORD: Final = 1 << 30


class MessageStore(Protocol):
    """What a session needs from its store. Sequence numbers start at 1."""

    @property
    def next_sender_seq(self) -> int: ...

    @property
    def next_target_seq(self) -> int: ...

    @property
    def creation_time(self) -> float:
        """POSIX time of the last reset (or creation): the runner compares it to StartTime."""
        ...

    def set_next_sender_seq(self, seq: int) -> None: ...

    def set_next_target_seq(self, seq: int) -> None: ...

    def save(self, seq: int, data: bytes) -> None:
        """Keep a sent message under ``seq`` and make the next sender number ``seq + 1``."""
        ...

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        """Stored messages with ``begin <= seq <= end``, in sequence order."""
        ...

    def reset(self, now: float) -> None:
        """Forget every message; both sequence numbers back to 1; creation time ``now``."""
        ...

    def commit(self) -> None:
        """Make everything saved so far durable (per the fsync policy)."""
        ...

    def close(self) -> None: ...


def store_name(begin_string: str, sender_comp_id: str, target_comp_id: str) -> str:
    """A file name for a session, like QuickFIX's ``FIX.4.4-SENDER-TARGET`` (unsafe chars -> _)."""
    raw = f"{begin_string}-{sender_comp_id}-{target_comp_id}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


class _Counters:
    """The read side of a store's session state, shared by both stores."""

    _next_sender: int
    _next_target: int
    _creation_time: float

    @property
    def next_sender_seq(self) -> int:
        return self._next_sender

    @property
    def next_target_seq(self) -> int:
        return self._next_target

    @property
    def creation_time(self) -> float:
        return self._creation_time


class MemoryStore(_Counters):
    """A :class:`MessageStore` in memory: nothing survives the process."""

    def __init__(self, now: float = 0.0) -> None:
        self._messages: dict[int, bytes] = {}
        self._next_sender = 1
        self._next_target = 1
        self._creation_time = now

    def set_next_sender_seq(self, seq: int) -> None:
        self._next_sender = seq

    def set_next_target_seq(self, seq: int) -> None:
        self._next_target = seq

    def save(self, seq: int, data: bytes) -> None:
        self._messages[seq] = data
        self._next_sender = seq + 1

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        return _collect(self._messages, begin, end, self._messages.__getitem__)

    def reset(self, now: float) -> None:
        self._messages.clear()
        self._next_sender = 1
        self._next_target = 1
        self._creation_time = now

    def commit(self) -> None:
        return None

    def close(self) -> None:
        return None


def _collect(
    index: Collection[int], begin: int, end: int, load: Callable[[int], bytes]
) -> list[tuple[int, bytes]]:
    """Messages of ``index`` in [begin, end]; walks whichever is smaller, range or index."""
    begin = max(begin, 1)
    if end < begin:
        return []
    if end - begin < len(index):
        seqs = [seq for seq in range(begin, end + 1) if seq in index]
    else:
        seqs = sorted(seq for seq in index if begin <= seq <= end)
    return [(seq, load(seq)) for seq in seqs]


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`FileStore.open` found: records replayed and bytes of torn tail cut off."""

    records: int
    truncated_bytes: int
    created: bool


class FileStore(_Counters):
    """A crash-safe, file-backed :class:`MessageStore` (see the module docstring for the format).

    Open it with :meth:`open`; one process at a time (an exclusive ``flock`` guards the file).
    """

    def __init__(
        self, path: Path, fd: int, fsync: FsyncPolicy, state: _Replayed, recovery: Recovery
    ) -> None:
        self.path = path
        self.recovery = recovery
        self._fd = fd
        self._fsync = fsync
        self._creation_time = state.creation_time
        self._next_sender = state.next_sender
        self._next_target = state.next_target
        self._index = state.index  # seq -> (offset of message bytes in the file, length)
        self._size = state.size  # file size including buffered records
        self._buffer: list[bytes] = []

    @classmethod
    def open(
        cls, directory: Path | str, name: str, now: float, fsync: FsyncPolicy = "always"
    ) -> FileStore:
        """Open (or create) the store ``name`` under ``directory``, repairing a torn tail."""
        if fsync not in get_args(FsyncPolicy):
            raise ValueError(f"fsync policy must be one of {get_args(FsyncPolicy)}, not {fsync!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.store"
        created = not path.exists()
        if created:
            _write_fresh(path, now)
        fd = _open_locked(path)
        try:
            data = _read_all(fd)
            if not data.startswith(MAGIC):
                raise ConfigError("not a fixsecure message store (bad magic)", path=path)
            state = _replay(data)
            truncated = len(data) - state.size
            if truncated:
                os.ftruncate(fd, state.size)
                os.fsync(fd)
            if state.records == 0:  # only possible if someone cut the file by hand
                raise ConfigError("message store has no header record", path=path)
            os.lseek(fd, 0, os.SEEK_END)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, fsync, state, Recovery(state.records, truncated, created))

    # --- MessageStore ------------------------------------------------------------------------

    def set_next_sender_seq(self, seq: int) -> None:
        if seq != self._next_sender:
            self._append(b"S" + _U64.pack(seq))
            self._next_sender = seq

    def set_next_target_seq(self, seq: int) -> None:
        if seq != self._next_target:
            self._append(b"T" + _U64.pack(seq))
            self._next_target = seq

    def save(self, seq: int, data: bytes) -> None:
        payload_prefix = b"M" + _U64.pack(seq)
        offset = self._append(payload_prefix + data) + _RECORD_HEADER.size + len(payload_prefix)
        self._index[seq] = (offset, len(data))
        self._next_sender = seq + 1

    def get(self, begin: int, end: int) -> list[tuple[int, bytes]]:
        self._flush()
        return _collect(self._index, begin, end, self._load)

    def reset(self, now: float) -> None:
        self._buffer.clear()
        _write_fresh(self.path, now)
        fd = _open_locked(self.path)
        os.close(self._fd)
        self._fd = fd
        self._size = os.lseek(fd, 0, os.SEEK_END)
        self._index = {}
        self._creation_time = now
        self._next_sender = 1
        self._next_target = 1

    def commit(self) -> None:
        if self._buffer:
            self._flush()
            if self._fsync == "commit":
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                self.commit()
            finally:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> FileStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------

    def _append(self, payload: bytes) -> int:
        """Write (or buffer) one record; returns its offset in the file."""
        if self._fd < 0:
            raise ValueError("message store is closed")
        record = _frame(payload)
        offset = self._size
        self._size += len(record)
        if self._fsync == "always":
            _write_all(self._fd, record)
            os.fsync(self._fd)
        else:
            self._buffer.append(record)
        return offset

    def _flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            _write_all(self._fd, data)

    def _load(self, seq: int) -> bytes:
        offset, length = self._index[seq]
        return os.pread(self._fd, length, offset)


@dataclass(slots=True)
class _Replayed:
    creation_time: float
    next_sender: int
    next_target: int
    index: dict[int, tuple[int, int]]
    size: int
    records: int


def _frame(payload: bytes) -> bytes:
    length = len(payload).to_bytes(4, "little")
    return length + (zlib.crc32(length + payload)).to_bytes(4, "little") + payload


def _replay(data: bytes) -> _Replayed:
    """Apply every intact record; stop at the first torn or corrupt one."""
    state = _Replayed(0.0, 1, 1, {}, len(MAGIC), 0)
    pos = len(MAGIC)
    end = len(data)
    header = _RECORD_HEADER.size
    while pos + header <= end:  # each pass advances pos by at least header + 1
        length, crc = _RECORD_HEADER.unpack_from(data, pos)
        start = pos + header
        if length == 0 or length > _MAX_RECORD or start + length > end:
            break
        payload = data[start : start + length]
        if zlib.crc32(data[pos : pos + 4] + payload) != crc or not _apply(state, payload, start):
            break
        pos = start + length
        state.size = pos
        state.records += 1
    return state


def _apply(state: _Replayed, payload: bytes, offset: int) -> bool:
    kind = payload[:1]
    if kind == b"M" and len(payload) >= 9:
        (seq,) = _U64.unpack_from(payload, 1)
        state.index[seq] = (offset + 9, len(payload) - 9)
        state.next_sender = seq + 1
    elif kind == b"S" and len(payload) == 9:
        (state.next_sender,) = _U64.unpack_from(payload, 1)
    elif kind == b"T" and len(payload) == 9:
        (state.next_target,) = _U64.unpack_from(payload, 1)
    elif kind == b"H" and len(payload) == 1 + _HEADER_BODY.size:
        state.creation_time, state.next_sender, state.next_target = _HEADER_BODY.unpack_from(
            payload, 1
        )
        state.index.clear()
    else:
        return False
    return True


def _write_fresh(path: Path, now: float) -> None:
    """Atomically replace ``path`` by an empty store: temp file, fsync, rename, fsync dir."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        _write_all(fd, MAGIC + _frame(b"H" + _HEADER_BODY.pack(now, 1, 1)))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_locked(path: Path) -> int:
    """``path`` opened read-write under an exclusive lock: one process per store."""
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError("message store is in use by another process", path=path) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks: list[bytes] = []
    offset = 0
    while offset < size:  # pread returns > 0 bytes until EOF
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # os.write returns > 0 or raises
        written = os.write(fd, view)
        view = view[written:]
